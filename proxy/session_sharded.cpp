// session_core: slots mode, commands split over several backends or fanned out to all.

#include "proxy/errors.hpp"
#include "proxy/session_core.hpp"
#include "proxy/session_internal.hpp"

namespace respfence::proxy {

bool session_core::dispatch_sharded(entry& e, const routing::arg_source&,
                                    const policy::command_entry*, routing::route) {
  answer_local(e, err::not_supported_sharded);
  return true;
}

void session_core::on_part_reply(entry& e, uint16_t, std::string_view reply) {
  deliver(e, reply);
}

void session_core::retry_merge(entry& e, size_t) { deliver(e, err::backend_lost); }

}  // namespace respfence::proxy

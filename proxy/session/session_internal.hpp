#pragma once
// Helpers shared by the session_core translation units. Not part of any interface.

#include <charconv>
#include <cstdint>
#include <string_view>
#include <vector>

#include "policy/loading_policy.hpp"
#include "policy/text.hpp"
#include "proxy/resp/errors.hpp"
#include "proxy/resp/request_framer.hpp"
#include "proxy/resp/resp_writer.hpp"
#include "routing/keys.hpp"

namespace respfence::proxy::detail {

inline constexpr size_t min_read = 16 * 1024;  // the server's PROTO_IOBUF_LEN
inline constexpr size_t big_buffer = 1u << 20;  // buffers above this are released when idle

template <typename Buffer>
void release_if_big(Buffer& b) {
  if (b.capacity() > big_buffer) Buffer().swap(b);
}

// What a link's in-flight item stands for.
inline constexpr uint8_t item_reply = 0;    // an entry's reply
inline constexpr uint8_t item_swallow = 1;  // the proxy's own command; reply dropped
inline constexpr uint8_t item_replay = 2;   // state replayed on a new connection
inline constexpr uint8_t item_part = 3;     // one part of a split/fan-out command

// A write of no effect that the server propagates to its replicas (SPUBLISH to a channel
// of the proxy's; shard channels have no patterns, so only a subscriber of this very
// channel hears it): sent before a WAIT on a connection that did not carry the client's
// writes, it brings that connection's replication offset past them.
inline constexpr uint16_t tag_wait_sync = 1;  // its inflight_item's `part`
inline constexpr std::string_view wait_sync =
    "*3\r\n$8\r\nSPUBLISH\r\n$18\r\n__respfence__:wait\r\n$0\r\n\r\n";

int64_t now_us();
// A whole decimal integer, as the server's string2ll reads one (no spaces, no '+').
inline bool parse_i64(std::string_view s, int64_t& v) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size();
}
bool is_subscribe_kind(policy::command_kind k);

// The command (or container|subcommand) entry; null when the table does not know it.
const policy::command_entry* lookup(const policy::policy_table& pol,
                                    const routing::arg_source& args);

// PING while its backend loads: the ECHO sent instead (its answer is PING's for
// "PING msg"; a bare PING echoes "PONG"), and PING's answer when the proxy gives it.
template <typename Buffer>
void write_echo_for_ping(Buffer& out, bool has_msg, std::string_view msg) {
  write_to(out).array(2).bulk("ECHO").bulk(has_msg ? msg : std::string_view("PONG"));
}
inline std::string ping_answer(bool has_msg, std::string_view msg) {
  if (!has_msg) return std::string(rep::pong);
  std::string s;
  write_to(s).bulk(msg);
  return s;
}

// The arguments of a framed request, for routing.
class framed_args final : public routing::arg_source {
 public:
  framed_args(const request_framer& f, std::string_view buf) : f_(f), buf_(buf) {}
  size_t argc() const override { return f_.argc(); }
  std::string_view arg(size_t i) const override { return f_.arg(buf_, i); }

 private:
  const request_framer& f_;
  std::string_view buf_;
};

// HELLO's arguments without its SETNAME option; false if it has none.
inline bool hello_without_setname(const routing::arg_source& a, std::vector<std::string_view>& out) {
  out.clear();
  bool found = false;
  for (size_t i = 0; i < a.argc(); ++i) {
    if (i >= 2 && policy::iequals_lower(a.arg(i), "setname") && i + 1 < a.argc()) {
      found = true;
      ++i;
      continue;
    }
    out.push_back(a.arg(i));
  }
  return found;
}

// A request's arguments re-encoded as multibulk (an inline request cannot be replayed or
// split as it is).
template <typename Buffer>
void encode_args(Buffer& out, const routing::arg_source& a, size_t from = 0) {
  write_to(out).array(static_cast<int64_t>(a.argc() - from));
  for (size_t i = from; i < a.argc(); ++i) write_to(out).bulk(a.arg(i));
}

}  // namespace respfence::proxy::detail

// libFuzzer: a session core driven by arbitrary client bytes, backend bytes, state
// changes, link failures, clock ticks and buffer releases, in any order. It must not
// crash or trip the sanitizers, and when the client goes away every queue admission
// must have been given back and every flush fence it raised lowered.

#define REQUIRE(x) \
  do {             \
    if (!(x)) return; \
  } while (0)
#include "../unit/session_fixture.hpp"

#include <cstdint>
#include <cstdlib>

using namespace respfence;
using namespace respfence::test;

namespace {
void feed(session_fixture& f, const uint8_t* data, size_t size) {
  size_t i = 0;
  auto take = [&](size_t n) {
    std::string s(reinterpret_cast<const char*>(data) + i, std::min(n, size - i));
    i += s.size();
    return s;
  };
  while (i < size && !f.core.finished()) {
    const uint8_t op = data[i++];
    const size_t n = i < size ? data[i++] % 64 : 0;
    switch (op % 8) {
      case 0:
      case 1: {
        const std::string bytes = take(n);
        if (f.core.wants_client_read()) f.client(bytes);
        break;
      }
      case 2:
        (void)f.written((op & 1) % f.core.link_count());
        break;
      case 3: {
        const std::string bytes = take(n);
        const size_t b = ((op >> 3) & 1) % f.core.link_count();
        if (f.core.link_open(b) && f.core.link_wants_read(b)) f.reply(bytes, b);
        break;
      }
      case 4: {
        // A state change, or the prober's verdict (a probe that began after every
        // LOADING answer so far); busy included.
        const size_t b = (op >> 3) & 1;
        const auto s = static_cast<policy::backend_state>((op >> 4) % 5);
        if (op & 128) {
          f.env.set_state(b, s);
        } else {
          f.env.verdict(b, s);
        }
        f.core.resume();
        break;
      }
      case 5:
        f.env.now += n * 50;
        f.core.tick(f.env.now);
        break;
      case 6:
        if (op & 16) {
          const size_t b = ((op >> 3) & 1) % f.core.link_count();
          f.core.on_link_failed(b, f.core.link_open(b));
        } else {
          (void)f.output();
        }
        break;
      case 7:
        if (op & 16) {
          f.core.fence_ready(f.env.next_fence);  // the newest flush may go
        } else if (op & 32) {
          f.core.on_client_closed();  // may linger for a flush on the wire
        } else {
          f.core.release_buffers();
        }
        break;
    }
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Half the inputs run in slots mode over two backends.
  const bool sharded = size > 0 && (data[0] & 1);
  auto router = sharded ? routing::router::slots(routing::slot_map::even(2))
                        : routing::router::single();
  session_fixture f(2, {}, router);
  feed(f, data, size);
  f.core.on_client_closed();
  f.core.on_client_closed(true);        // the shell closes for good
  if (f.env.queued != 0) std::abort();  // every queue admission was given back
  for (const auto& v : f.env.views) {
    if (v.fence_level != 0) std::abort();  // every fence this session raised was lowered
  }
  return 0;
}

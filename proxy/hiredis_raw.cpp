#include "proxy/hiredis_raw.hpp"

#include <hiredis/hiredis.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>

#include "proxy/resp/reply_framer.hpp"

namespace respfence::proxy {

std::optional<resp_value> raw_command(redisContext* ctx, const std::vector<std::string>& argv,
                                      uint32_t timeout_ms, std::string* why) {
  auto fail = [&](const char* msg) -> std::optional<resp_value> {
    if (why) *why = msg;
    return std::nullopt;
  };
  std::vector<const char*> args;
  std::vector<size_t> lens;
  for (const auto& a : argv) {
    args.push_back(a.data());
    lens.push_back(a.size());
  }
  if (redisAppendCommandArgv(ctx, static_cast<int>(args.size()), args.data(), lens.data()) !=
      REDIS_OK) {
    return fail("cannot format the command");
  }
  int done = 0;
  while (!done) {
    if (redisBufferWrite(ctx, &done) != REDIS_OK) return fail("write failed");
  }
  std::string buf;
  reply_framer f;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  char chunk[65536];
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return fail("timed out");
    pollfd p{ctx->fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return fail("timed out");
    const ssize_t n = ::read(ctx->fd, chunk, sizeof(chunk));
    if (n <= 0) return fail("connection closed");
    buf.append(chunk, static_cast<size_t>(n));
    const frame_status st = f.next(buf);
    if (st == frame_status::need_more) continue;
    if (st != frame_status::complete || f.consumed() != buf.size()) return fail("bad reply");
    auto v = parse_resp(buf);
    if (!v) return fail("bad reply");
    return v;
  }
}

}  // namespace respfence::proxy

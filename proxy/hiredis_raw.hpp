#pragma once
// One command over a hiredis connection, with the reply read by respfence's own framer.
// hiredis 0.14 reads at most 7 levels of nesting; COMMAND and CLUSTER SHARDS go deeper
// or close to it, so the cold paths that need them (prober, cluster topology) use this.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "proxy/resp/resp_value.hpp"

struct redisContext;

namespace respfence::proxy {

// Sends argv on `ctx` and returns the parsed reply, or nullopt (with `why`) on a timeout
// or a broken connection. After nullopt the connection is out of step: drop it.
std::optional<resp_value> raw_command(redisContext* ctx, const std::vector<std::string>& argv,
                                      uint32_t timeout_ms, std::string* why = nullptr);

}  // namespace respfence::proxy

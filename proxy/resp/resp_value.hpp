#pragma once
// A parsed RESP value, for the proxy's cold paths (the prober reading COMMAND and INFO,
// cluster topology) and for tests. The hot path never builds these.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace respfence::proxy {

struct resp_value {
  resp_value() = default;
  resp_value(const resp_value&) = default;
  resp_value(resp_value&&) noexcept = default;
  resp_value& operator=(const resp_value&) = default;
  resp_value& operator=(resp_value&&) noexcept = default;
  ~resp_value();

  char type = 0;        // RESP type byte
  std::string str;      // string-like payloads, and doubles/big numbers as text
  int64_t integer = 0;  // ':' and '#' (1/0)
  std::vector<resp_value> elems;  // aggregates; maps as key, value, key, value...
  bool is_null() const { return type == '_' || ((type == '$' || type == '*') && integer == -1); }
  bool is_error() const { return type == '-' || type == '!'; }
};

// Parses one complete reply (as framed by reply_framer); nullopt if it is not one.
std::optional<resp_value> parse_resp(std::string_view reply);

}  // namespace respfence::proxy

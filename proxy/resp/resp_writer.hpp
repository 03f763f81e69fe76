#pragma once
// Appends RESP to a byte buffer: the proxy's own replies (merged, rewritten) and the
// commands it generates (ECHO for PING, per-shard parts of a split command).

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace respfence::proxy {

template <typename Buffer>
class resp_writer {
 public:
  explicit resp_writer(Buffer& out) : out_(out) {}

  resp_writer& raw(std::string_view s) {
    out_.insert(out_.end(), s.begin(), s.end());
    return *this;
  }
  resp_writer& header(char type, int64_t n) {
    char tmp[24];
    tmp[0] = type;
    auto r = std::to_chars(tmp + 1, tmp + sizeof(tmp) - 2, n);
    *r.ptr++ = '\r';
    *r.ptr++ = '\n';
    out_.insert(out_.end(), tmp, r.ptr);
    return *this;
  }
  resp_writer& array(int64_t n) { return header('*', n); }
  resp_writer& integer(int64_t v) { return header(':', v); }
  resp_writer& bulk(std::string_view s) {
    header('$', static_cast<int64_t>(s.size()));
    out_.insert(out_.end(), s.begin(), s.end());
    out_.push_back('\r');
    out_.push_back('\n');
    return *this;
  }
  resp_writer& simple(std::string_view s) {
    out_.push_back('+');
    raw(s);
    out_.push_back('\r');
    out_.push_back('\n');
    return *this;
  }
  // A whole command: *N then N bulks.
  template <typename Range>
  resp_writer& command(const Range& args) {
    array(static_cast<int64_t>(std::size(args)));
    for (const auto& a : args) bulk(std::string_view(a));
    return *this;
  }

 private:
  Buffer& out_;
};

template <typename Buffer>
resp_writer<Buffer> write_to(Buffer& b) {
  return resp_writer<Buffer>(b);
}

// Convenience for tests and cold paths.
inline std::string resp_command(std::initializer_list<std::string_view> args) {
  std::string s;
  write_to(s).command(args);
  return s;
}

}  // namespace respfence::proxy

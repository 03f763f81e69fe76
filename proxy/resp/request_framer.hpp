#pragma once
// Incremental, zero-copy framing of client requests: RESP multibulk and inline commands,
// with the server's own limits and protocol errors (Redis 7.0 networking.c). Arguments of
// a multibulk request are (offset, length) pairs into the caller's buffer; nothing is
// copied. Inline arguments need unquoting, so they live in a scratch string.
//
// Contract: next() is called with the bytes from the start of the current request to the
// end of what has been read. After need_more, the caller calls again with the same start
// (it may have moved in memory) and more bytes; parsing resumes where it stopped.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace respfence::proxy {

enum class frame_status : uint8_t { need_more, complete, empty, error };
const char* to_string(frame_status s);
std::ostream& operator<<(std::ostream& os, frame_status s);

enum class proto_error : uint8_t {
  none,
  invalid_multibulk_length,
  invalid_bulk_length,
  expected_dollar,
  too_big_mbulk_count,
  too_big_bulk_count,
  too_big_inline,
  unbalanced_quotes,
  unauth_multibulk_length,
  unauth_bulk_length,
  // Reply framing only: the backend sent something that is not RESP.
  bad_reply,
  too_deep,
};
const char* to_string(proto_error e);
std::ostream& operator<<(std::ostream& os, proto_error e);

struct arg_ref {
  size_t off = 0;
  size_t len = 0;
};

struct request_limits {
  size_t max_bulk = 512ull * 1024 * 1024;  // proto-max-bulk-len
  size_t max_inline = 64 * 1024;           // PROTO_INLINE_MAX_SIZE
  // A client that is not authenticated where the server wants a password (authRequired):
  // at most this many arguments, each at most this long, checked as each header arrives.
  size_t unauth_max_args = 10;
  size_t unauth_max_bulk = 16384;
};

class request_framer {
 public:
  explicit request_framer(request_limits lim = {}) : lim_(lim) {}

  frame_status next(std::string_view buf);

  // After complete/empty: the request's size in bytes.
  size_t consumed() const { return consumed_; }
  bool is_inline() const { return inline_; }
  size_t argc() const { return args_.size(); }
  std::string_view arg(std::string_view buf, size_t i) const {
    const arg_ref& a = args_[i];
    return inline_ ? std::string_view(scratch_).substr(a.off, a.len) : buf.substr(a.off, a.len);
  }
  const std::vector<arg_ref>& args() const { return args_; }

  // After error: which one, and the offending byte for "expected '$', got '%c'".
  proto_error error() const { return error_; }
  char bad_byte() const { return bad_byte_; }
  // The exact reply the server sends for the last error, "-ERR Protocol error: ...\r\n".
  std::string error_reply() const;

  // Bytes of the current, incomplete request already known to belong to it: lets the
  // caller size its buffer for a big bulk instead of growing it step by step.
  size_t bytes_needed_hint() const { return need_hint_; }

  // Forget a partial request (the caller dropped its bytes).
  void reset();

  // Whether the server would take the client as unauthenticated (its stricter limits),
  // from the next header read on.
  void set_unauthenticated(bool v) { unauth_ = v; }

 private:
  frame_status fail(proto_error e);
  frame_status multibulk(std::string_view buf);
  frame_status inline_request(std::string_view buf);

  request_limits lim_;
  bool unauth_ = false;
  std::vector<arg_ref> args_;
  std::string scratch_;
  size_t consumed_ = 0;
  // Resume state.
  bool started_ = false;
  bool inline_ = false;
  int64_t remaining_ = 0;   // multibulk: arguments still to read
  int64_t bulk_len_ = -1;   // length of the argument being read, -1 = header not read
  size_t pos_ = 0;          // where parsing continues
  size_t need_hint_ = 0;
  proto_error error_ = proto_error::none;
  char bad_byte_ = 0;
};

// Redis's string2ll: strict decimal, no '+', no leading zeros, at most 20 characters.
bool redis_string2ll(std::string_view s, long long& out);

// A header line is a few bytes ("*3", "$5", ":1"), and two in three lines of a GET's
// request and reply are headers: a byte loop over a short prefix finds the line's end
// before a library call has started (memchr was 4 % of the proxy's CPU at pipeline 16).
// Past the prefix, memchr. scan_prefix is that prefix's length.
inline constexpr size_t scan_prefix = 16;

// memchr, quicker on short lines.
inline const char* find_byte(const char* p, size_t n, char c) {
  const size_t k = n < scan_prefix ? n : scan_prefix;
  for (size_t i = 0; i < k; ++i) {
    if (p[i] == c) return p + i;
  }
  if (n <= scan_prefix) return nullptr;
  return static_cast<const char*>(std::memchr(p + scan_prefix, c, n - scan_prefix));
}

// memchr that stops at a NUL byte, like the server's strchr over its query buffer
// (c is never NUL).
inline const char* find_stop_at_nul(const char* p, size_t n, char c) {
  const size_t k = n < scan_prefix ? n : scan_prefix;
  for (size_t i = 0; i < k; ++i) {
    if (p[i] == c) return p + i;
    if (p[i] == '\0') return nullptr;
  }
  if (n <= scan_prefix) return nullptr;
  const char* rest = p + scan_prefix;
  const void* hit = std::memchr(rest, c, n - scan_prefix);
  if (hit == nullptr) return nullptr;
  const char* h = static_cast<const char*>(hit);
  // The server searches a C string: a NUL before the byte hides it.
  if (std::memchr(rest, '\0', static_cast<size_t>(h - rest)) != nullptr) return nullptr;
  return h;
}

}  // namespace respfence::proxy

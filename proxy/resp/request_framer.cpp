#include "proxy/resp/request_framer.hpp"

#include <climits>
#include <cstring>

#include "proxy/resp/errors.hpp"

namespace respfence::proxy {

const char* to_string(frame_status s) {
  switch (s) {
    case frame_status::need_more:
      return "need_more";
    case frame_status::complete:
      return "complete";
    case frame_status::empty:
      return "empty";
    case frame_status::error:
      return "error";
  }
  return "?";
}
std::ostream& operator<<(std::ostream& os, frame_status s) { return os << to_string(s); }

const char* to_string(proto_error e) {
  switch (e) {
    case proto_error::none:
      return "none";
    case proto_error::invalid_multibulk_length:
      return "invalid_multibulk_length";
    case proto_error::invalid_bulk_length:
      return "invalid_bulk_length";
    case proto_error::expected_dollar:
      return "expected_dollar";
    case proto_error::too_big_mbulk_count:
      return "too_big_mbulk_count";
    case proto_error::too_big_bulk_count:
      return "too_big_bulk_count";
    case proto_error::too_big_inline:
      return "too_big_inline";
    case proto_error::unbalanced_quotes:
      return "unbalanced_quotes";
    case proto_error::unauth_multibulk_length:
      return "unauth_multibulk_length";
    case proto_error::unauth_bulk_length:
      return "unauth_bulk_length";
    case proto_error::bad_reply:
      return "bad_reply";
    case proto_error::too_deep:
      return "too_deep";
  }
  return "?";
}
std::ostream& operator<<(std::ostream& os, proto_error e) { return os << to_string(e); }

bool redis_string2ll(std::string_view s, long long& out) {
  // LONG_STR_SIZE is 21: anything that long cannot be a long long.
  if (s.empty() || s.size() >= 21) return false;
  if (s.size() == 1 && s[0] == '0') {
    out = 0;
    return true;
  }
  size_t i = 0;
  bool negative = false;
  if (s[0] == '-') {
    negative = true;
    if (++i == s.size()) return false;
  }
  if (s[i] < '1' || s[i] > '9') return false;
  unsigned long long v = static_cast<unsigned long long>(s[i++] - '0');
  for (; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    const unsigned d = static_cast<unsigned>(s[i] - '0');
    if (v > ULLONG_MAX / 10) return false;
    v *= 10;
    if (v > ULLONG_MAX - d) return false;
    v += d;
  }
  if (negative) {
    if (v > static_cast<unsigned long long>(LLONG_MAX) + 1) return false;
    out = v == static_cast<unsigned long long>(LLONG_MAX) + 1 ? LLONG_MIN
                                                               : -static_cast<long long>(v);
  } else {
    if (v > static_cast<unsigned long long>(LLONG_MAX)) return false;
    out = static_cast<long long>(v);
  }
  return true;
}

void request_framer::reset() {
  args_.clear();
  consumed_ = 0;
  started_ = false;
  inline_ = false;
  remaining_ = 0;
  bulk_len_ = -1;
  pos_ = 0;
  need_hint_ = 0;
  error_ = proto_error::none;
}

frame_status request_framer::fail(proto_error e) {
  error_ = e;
  return frame_status::error;
}

frame_status request_framer::next(std::string_view buf) {
  if (!started_) {
    if (buf.empty()) return frame_status::need_more;
    args_.clear();
    scratch_.clear();
    started_ = true;
    inline_ = buf[0] != '*';
    remaining_ = 0;
    bulk_len_ = -1;
    pos_ = 0;
    need_hint_ = 0;
    error_ = proto_error::none;
  }
  const frame_status s = inline_ ? inline_request(buf) : multibulk(buf);
  if (s != frame_status::need_more) started_ = false;
  return s;
}

frame_status request_framer::multibulk(std::string_view buf) {
  const char* base = buf.data();
  if (remaining_ == 0) {
    const char* nl = find_stop_at_nul(base, buf.size(), '\r');
    if (nl == nullptr) {
      if (buf.size() > lim_.max_inline) return fail(proto_error::too_big_mbulk_count);
      return frame_status::need_more;
    }
    const size_t nlpos = static_cast<size_t>(nl - base);
    // The server wants one more byte after '\r' and skips it unseen.
    if (nlpos + 1 >= buf.size()) return frame_status::need_more;
    long long count = 0;
    if (!redis_string2ll(buf.substr(1, nlpos - 1), count) || count > INT_MAX) {
      return fail(proto_error::invalid_multibulk_length);
    }
    if (unauth_ && count > 0 && static_cast<unsigned long long>(count) > lim_.unauth_max_args) {
      return fail(proto_error::unauth_multibulk_length);
    }
    pos_ = nlpos + 2;
    if (count <= 0) {
      consumed_ = pos_;
      return frame_status::empty;
    }
    remaining_ = count;
    // Reserve for what a normal command needs; a huge count grows as arguments arrive.
    args_.reserve(static_cast<size_t>(count < 1024 ? count : 1024));
  }
  while (remaining_ > 0) {
    if (bulk_len_ < 0) {
      const char* nl = find_stop_at_nul(base + pos_, buf.size() - pos_, '\r');
      if (nl == nullptr) {
        if (buf.size() - pos_ > lim_.max_inline) return fail(proto_error::too_big_bulk_count);
        return frame_status::need_more;
      }
      const size_t nlpos = static_cast<size_t>(nl - base);
      if (nlpos + 1 >= buf.size()) return frame_status::need_more;
      if (buf[pos_] != '$') {
        bad_byte_ = buf[pos_];
        return fail(proto_error::expected_dollar);
      }
      long long len = 0;
      if (!redis_string2ll(buf.substr(pos_ + 1, nlpos - pos_ - 1), len) || len < 0 ||
          static_cast<unsigned long long>(len) > lim_.max_bulk) {
        return fail(proto_error::invalid_bulk_length);
      }
      if (unauth_ && static_cast<unsigned long long>(len) > lim_.unauth_max_bulk) {
        return fail(proto_error::unauth_bulk_length);
      }
      pos_ = nlpos + 2;
      bulk_len_ = len;
    }
    const size_t need = static_cast<size_t>(bulk_len_) + 2;  // the CRLF is skipped, not checked
    if (buf.size() - pos_ < need) {
      need_hint_ = pos_ + need;
      return frame_status::need_more;
    }
    args_.push_back(arg_ref{pos_, static_cast<size_t>(bulk_len_)});
    pos_ += need;
    bulk_len_ = -1;
    --remaining_;
  }
  consumed_ = pos_;
  need_hint_ = 0;
  return frame_status::complete;
}

namespace {
bool c_isspace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}
bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
int hex_val(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return c - 'A' + 10;
}
}  // namespace

frame_status request_framer::inline_request(std::string_view buf) {
  // pos_ is how far '\n' has been searched; a NUL found on the way makes the line
  // unterminated for good, as for the server's strchr.
  const char* base = buf.data();
  const char* nl = nullptr;
  if (bulk_len_ < 0) {  // reused as "no NUL seen yet"
    const void* hit = std::memchr(base + pos_, '\n', buf.size() - pos_);
    const size_t end = hit ? static_cast<size_t>(static_cast<const char*>(hit) - base) : buf.size();
    if (std::memchr(base + pos_, '\0', end - pos_) != nullptr) {
      bulk_len_ = 0;
    } else if (hit != nullptr) {
      nl = static_cast<const char*>(hit);
    }
    pos_ = end;
  }
  if (nl == nullptr) {
    if (buf.size() > lim_.max_inline) return fail(proto_error::too_big_inline);
    return frame_status::need_more;
  }
  size_t nlpos = static_cast<size_t>(nl - base);
  consumed_ = nlpos + 1;
  if (nlpos > 0 && buf[nlpos - 1] == '\r') --nlpos;
  const std::string_view line = buf.substr(0, nlpos);

  // sdssplitargs(), over a line that holds no NUL.
  auto at = [&](size_t i) -> char { return i < line.size() ? line[i] : '\0'; };
  size_t p = 0;
  while (true) {
    while (p < line.size() && c_isspace(line[p])) ++p;
    if (p >= line.size()) break;
    const size_t start = scratch_.size();
    bool inq = false;
    bool insq = false;
    bool done = false;
    while (!done) {
      const char c = at(p);
      if (inq) {
        if (c == '\\' && at(p + 1) == 'x' && is_hex(at(p + 2)) && is_hex(at(p + 3))) {
          scratch_.push_back(static_cast<char>(hex_val(at(p + 2)) * 16 + hex_val(at(p + 3))));
          p += 3;
        } else if (c == '\\' && at(p + 1) != '\0') {
          ++p;
          switch (at(p)) {
            case 'n':
              scratch_.push_back('\n');
              break;
            case 'r':
              scratch_.push_back('\r');
              break;
            case 't':
              scratch_.push_back('\t');
              break;
            case 'b':
              scratch_.push_back('\b');
              break;
            case 'a':
              scratch_.push_back('\a');
              break;
            default:
              scratch_.push_back(at(p));
              break;
          }
        } else if (c == '"') {
          if (at(p + 1) != '\0' && !c_isspace(at(p + 1))) return fail(proto_error::unbalanced_quotes);
          done = true;
        } else if (c == '\0') {
          return fail(proto_error::unbalanced_quotes);
        } else {
          scratch_.push_back(c);
        }
      } else if (insq) {
        if (c == '\\' && at(p + 1) == '\'') {
          ++p;
          scratch_.push_back('\'');
        } else if (c == '\'') {
          if (at(p + 1) != '\0' && !c_isspace(at(p + 1))) return fail(proto_error::unbalanced_quotes);
          done = true;
        } else if (c == '\0') {
          return fail(proto_error::unbalanced_quotes);
        } else {
          scratch_.push_back(c);
        }
      } else {
        switch (c) {
          case ' ':
          case '\n':
          case '\r':
          case '\t':
          case '\0':
            done = true;
            break;
          case '"':
            inq = true;
            break;
          case '\'':
            insq = true;
            break;
          default:
            scratch_.push_back(c);
            break;
        }
      }
      if (at(p) != '\0') ++p;
    }
    args_.push_back(arg_ref{start, scratch_.size() - start});
  }
  return args_.empty() ? frame_status::empty : frame_status::complete;
}

std::string request_framer::error_reply() const {
  switch (error_) {
    case proto_error::invalid_multibulk_length:
      return std::string(err::proto_invalid_multibulk_length);
    case proto_error::invalid_bulk_length:
      return std::string(err::proto_invalid_bulk_length);
    case proto_error::expected_dollar:
    {
      // The server maps CR/LF inside an error to spaces (addReplyErrorFormat).
      const char c = (bad_byte_ == '\r' || bad_byte_ == '\n') ? ' ' : bad_byte_;
      return std::string(err::proto_expected_dollar_prefix) + c + "'\r\n";
    }
    case proto_error::too_big_mbulk_count:
      return std::string(err::proto_too_big_mbulk_count);
    case proto_error::too_big_bulk_count:
      return std::string(err::proto_too_big_bulk_count);
    case proto_error::too_big_inline:
      return std::string(err::proto_too_big_inline);
    case proto_error::unbalanced_quotes:
      return std::string(err::proto_unbalanced_quotes);
    case proto_error::unauth_multibulk_length:
      return std::string(err::proto_unauth_multibulk_length);
    case proto_error::unauth_bulk_length:
      return std::string(err::proto_unauth_bulk_length);
    default:
      return {};
  }
}

}  // namespace respfence::proxy

#include "proxy/resp_value.hpp"

#include "proxy/request_framer.hpp"

namespace respfence::proxy {

namespace {

class parser {
 public:
  explicit parser(std::string_view s) : s_(s) {}

  bool value(resp_value& out, int depth) {
    // An attribute annotates the value after it at the same depth, as the framer counts it;
    // a loop rather than recursion, so a long chain of attributes cannot nest the parser.
    while (true) {
      if (depth > 512 || pos_ >= s_.size()) return false;
      if (s_[pos_] != '|') return plain_value(out, depth);
      resp_value attribute;
      if (!plain_value(attribute, depth)) return false;
    }
  }

  bool done() const { return pos_ == s_.size(); }

 private:
  bool plain_value(resp_value& out, int depth) {
    const size_t cr = s_.find("\r\n", pos_);
    if (cr == std::string_view::npos) return false;
    out.type = s_[pos_];
    const std::string_view line = s_.substr(pos_ + 1, cr - pos_ - 1);
    pos_ = cr + 2;
    long long n = 0;
    switch (out.type) {
      case '+':
      case '-':
      case ',':
      case '(':
        out.str = std::string(line);
        return true;
      case '_':
        return true;
      case '#':
        out.integer = line == "t" ? 1 : 0;
        return true;
      case ':':
        if (!redis_string2ll(line, n)) return false;
        out.integer = n;
        return true;
      case '$':
      case '!':
      case '=':
        if (line == "?") return streamed_string(out);
        if (!redis_string2ll(line, n) || n < -1) return false;
        out.integer = n;
        if (n < 0) return true;
        if (pos_ + static_cast<size_t>(n) + 2 > s_.size()) return false;
        out.str = std::string(s_.substr(pos_, static_cast<size_t>(n)));
        pos_ += static_cast<size_t>(n) + 2;
        return true;
      case '*':
      case '~':
      case '%':
      case '>':
      case '|': {
        if (line == "?") return streamed_aggregate(out, depth);
        // Every element takes at least three bytes, so a count past the input is a lie.
        if (!redis_string2ll(line, n) || n < -1 || n > static_cast<long long>(s_.size())) return false;
        out.integer = n;
        const long long count = (out.type == '%' || out.type == '|') ? n * 2 : n;
        for (long long i = 0; i < count; ++i) {
          resp_value v;
          if (!value(v, depth + 1)) return false;
          out.elems.push_back(std::move(v));
        }
        return true;
      }
      default:
        return false;
    }
  }

  bool streamed_string(resp_value& out) {
    out.type = '$';
    while (true) {
      const size_t cr = s_.find("\r\n", pos_);
      if (cr == std::string_view::npos || s_[pos_] != ';') return false;
      long long n = 0;
      if (!redis_string2ll(s_.substr(pos_ + 1, cr - pos_ - 1), n) || n < 0) return false;
      pos_ = cr + 2;
      if (n == 0) return true;
      if (pos_ + static_cast<size_t>(n) + 2 > s_.size()) return false;
      out.str.append(s_.substr(pos_, static_cast<size_t>(n)));
      pos_ += static_cast<size_t>(n) + 2;
    }
  }
  bool streamed_aggregate(resp_value& out, int depth) {
    while (true) {
      if (s_.substr(pos_, 3) == ".\r\n") {
        pos_ += 3;
        return true;
      }
      resp_value v;
      if (!value(v, depth + 1)) return false;
      out.elems.push_back(std::move(v));
    }
  }

  std::string_view s_;
  size_t pos_ = 0;
};

}  // namespace

std::optional<resp_value> parse_resp(std::string_view reply) {
  parser p(reply);
  resp_value v;
  if (!p.value(v, 0) || !p.done()) return std::nullopt;
  return v;
}

}  // namespace respfence::proxy

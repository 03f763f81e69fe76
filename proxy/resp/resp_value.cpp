#include "proxy/resp/resp_value.hpp"

#include "proxy/resp/request_framer.hpp"

namespace respfence::proxy {

resp_value::~resp_value() {
  // Children are destroyed from a list, not by recursion: a reply may nest thousands of
  // levels deep (a script's recursive table), and recursion would exhaust the stack.
  if (elems.empty()) return;
  std::vector<resp_value> pending;
  pending.swap(elems);
  while (!pending.empty()) {
    resp_value v = std::move(pending.back());
    pending.pop_back();
    for (resp_value& c : v.elems) pending.push_back(std::move(c));
    v.elems.clear();
  }
}

namespace {

// An aggregate being built, on the parser's own stack (no recursion: any depth).
struct frame {
  resp_value value;
  long long remaining = 0;  // elements still expected; -1: streamed, until '.'
  bool attribute = false;   // an attribute: discarded once complete
};

class parser {
 public:
  explicit parser(std::string_view s) : s_(s) {}

  std::optional<resp_value> run() {
    while (true) {
      if (pos_ >= s_.size()) return std::nullopt;
      if (!stack_.empty() && stack_.back().remaining == -1 && s_.substr(pos_, 3) == ".\r\n") {
        // An attribute annotates a value: one right before the end marker annotates nothing.
        if (attribute_pending_) return std::nullopt;
        pos_ += 3;
        resp_value v = std::move(stack_.back().value);
        stack_.pop_back();
        if (deliver(std::move(v))) break;
        continue;
      }
      const size_t cr = s_.find("\r\n", pos_);
      if (cr == std::string_view::npos) return std::nullopt;
      attribute_pending_ = false;
      resp_value v;
      v.type = s_[pos_];
      const std::string_view line = s_.substr(pos_ + 1, cr - pos_ - 1);
      pos_ = cr + 2;
      long long n = 0;
      switch (v.type) {
        case '+':
        case '-':
        case ',':
        case '(':
          v.str = std::string(line);
          break;
        case '_':
          break;
        case '#':
          v.integer = line == "t" ? 1 : 0;
          break;
        case ':':
          if (!redis_string2ll(line, n)) return std::nullopt;
          v.integer = n;
          break;
        case '$':
        case '!':
        case '=':
          if (line == "?") {
            if (!streamed_string(v)) return std::nullopt;
            break;
          }
          if (!redis_string2ll(line, n) || n < -1) return std::nullopt;
          v.integer = n;
          if (n < 0) break;
          if (pos_ + static_cast<size_t>(n) + 2 > s_.size()) return std::nullopt;
          v.str = std::string(s_.substr(pos_, static_cast<size_t>(n)));
          pos_ += static_cast<size_t>(n) + 2;
          break;
        case '*':
        case '~':
        case '%':
        case '>':
        case '|': {
          if (line == "?") {
            stack_.push_back(frame{std::move(v), -1, false});
            continue;
          }
          // Every element takes at least three bytes, so a count past the input is a lie.
          if (!redis_string2ll(line, n) || n < -1 || n > static_cast<long long>(s_.size())) {
            return std::nullopt;
          }
          v.integer = n;
          const long long count = (v.type == '%' || v.type == '|') ? n * 2 : n;
          if (count > 0) {
            const bool attribute = v.type == '|';
            stack_.push_back(frame{std::move(v), count, attribute});
            continue;
          }
          // An empty attribute annotates the value after it: nothing to keep.
          if (v.type == '|') {
            attribute_pending_ = true;
            continue;
          }
          break;
        }
        default:
          return std::nullopt;
      }
      if (deliver(std::move(v))) break;
    }
    if (pos_ != s_.size()) return std::nullopt;
    return std::move(result_);
  }

 private:
  // A value is complete: it becomes an element of the aggregate being built (which may
  // complete in turn), or the result. True once the result is known.
  bool deliver(resp_value v) {
    while (true) {
      if (stack_.empty()) {
        result_ = std::move(v);
        return true;
      }
      frame& f = stack_.back();
      f.value.elems.push_back(std::move(v));
      if (f.remaining < 0 || --f.remaining > 0) return false;
      frame done = std::move(f);
      stack_.pop_back();
      // An attribute annotates the value after it, at the same depth: it is dropped, and
      // that value takes its place.
      if (done.attribute) {
        attribute_pending_ = true;
        return false;
      }
      v = std::move(done.value);
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

  std::string_view s_;
  size_t pos_ = 0;
  std::vector<frame> stack_;
  resp_value result_;
  bool attribute_pending_ = false;  // an attribute just ended: a value must follow
};

}  // namespace

std::optional<resp_value> parse_resp(std::string_view reply) { return parser(reply).run(); }

}  // namespace respfence::proxy

#include "proxy/resp/reply_framer.hpp"

#include <cstring>

namespace respfence::proxy {

namespace {
// A line longer than this without CRLF is not a reply (a server's lines are short; the
// bound keeps a broken backend from growing the buffer without limit).
constexpr size_t max_line = 512ull * 1024 * 1024 + 64;
}  // namespace

void reply_framer::reset() {
  stack_.clear();
  pos_ = 0;
  started_ = false;
  in_streamed_string_ = false;
  attribute_pending_ = false;
  consumed_ = 0;
  info_ = reply_info{};
  error_ = proto_error::none;
}

frame_status reply_framer::fail(proto_error e) {
  error_ = e;
  started_ = false;
  return frame_status::error;
}

void reply_framer::record_element(char type, size_t off, size_t len, int64_t integer) {
  if (stack_.empty()) {
    if (type == '|') {
      info_.attribute = true;
      return;
    }
    info_.type = type;
    info_.payload_off = off;
    info_.payload_len = len;
    info_.count = integer;
    return;
  }
  if (stack_.size() == 1 && !stack_[0].attribute && type != '|' && info_.n_el < 3) {
    info_.el[info_.n_el++] = reply_element{type, off, len, integer};
  }
}

bool reply_framer::element_done() {
  while (!stack_.empty()) {
    frame& f = stack_.back();
    if (f.remaining < 0) return false;  // streamed: ends with '.'
    if (--f.remaining > 0) return false;
    const bool was_attribute = f.attribute;
    stack_.pop_back();
    // An attribute is not an element: the value it annotates still has to come.
    if (was_attribute) {
      attribute_pending_ = true;
      return false;
    }
  }
  return true;
}

frame_status reply_framer::next(std::string_view buf) {
  if (!started_) {
    stack_.clear();
    pos_ = 0;
    in_streamed_string_ = false;
    attribute_pending_ = false;
    info_ = reply_info{};
    error_ = proto_error::none;
    started_ = true;
  }
  const char* base = buf.data();
  while (true) {
    if (pos_ >= buf.size()) return frame_status::need_more;
    const char* cr_hit = find_byte(base + pos_, buf.size() - pos_, '\r');
    if (cr_hit == nullptr) {
      if (buf.size() - pos_ > max_line) return fail(proto_error::bad_reply);
      return frame_status::need_more;
    }
    const size_t cr = static_cast<size_t>(cr_hit - base);
    if (cr + 1 >= buf.size()) return frame_status::need_more;
    if (buf[cr + 1] != '\n') return fail(proto_error::bad_reply);
    const char type = buf[pos_];
    const std::string_view line = buf.substr(pos_ + 1, cr - pos_ - 1);
    const size_t body = cr + 2;

    if (in_streamed_string_) {
      long long len = 0;
      if (type != ';' || !redis_string2ll(line, len) || len < 0) return fail(proto_error::bad_reply);
      if (len == 0) {
        in_streamed_string_ = false;
        pos_ = body;
        if (element_done()) break;
        continue;
      }
      const size_t end = body + static_cast<size_t>(len) + 2;
      if (end > buf.size()) return frame_status::need_more;
      if (buf[end - 2] != '\r' || buf[end - 1] != '\n') return fail(proto_error::bad_reply);
      pos_ = end;
      continue;
    }

    const bool after_attribute = attribute_pending_;
    attribute_pending_ = false;
    switch (type) {
      case '+':
      case '-':
      case '_':
      case ',':
      case '#':
      case '(': {
        record_element(type, pos_ + 1, line.size(), 0);
        pos_ = body;
        if (element_done()) goto complete;
        break;
      }
      case ':': {
        long long v = 0;
        if (!redis_string2ll(line, v)) return fail(proto_error::bad_reply);
        record_element(type, pos_ + 1, line.size(), v);
        pos_ = body;
        if (element_done()) goto complete;
        break;
      }
      case '$':
      case '!':
      case '=': {
        if (type == '$' && line == "?") {
          record_element(type, body, 0, -2);
          pos_ = body;
          in_streamed_string_ = true;
          break;
        }
        long long len = 0;
        if (!redis_string2ll(line, len) || len < -1 || (len == -1 && type != '$')) {
          return fail(proto_error::bad_reply);
        }
        if (len == -1) {
          record_element(type, body, 0, -1);
          pos_ = body;
          if (element_done()) goto complete;
          break;
        }
        const size_t end = body + static_cast<size_t>(len) + 2;
        if (end > buf.size()) return frame_status::need_more;
        if (buf[end - 2] != '\r' || buf[end - 1] != '\n') return fail(proto_error::bad_reply);
        record_element(type, body, static_cast<size_t>(len), len);
        pos_ = end;
        if (element_done()) goto complete;
        break;
      }
      case '*':
      case '~':
      case '%':
      case '>':
      case '|': {
        if (line == "?" && type != '>' && type != '|') {
          record_element(type, body, 0, -2);
          stack_.push_back(frame{-1, false});
          pos_ = body;
          break;
        }
        long long n = 0;
        // A count past 2^62 would overflow when doubled for a map; no server sends one.
        if (!redis_string2ll(line, n) || n < -1 || (n == -1 && type != '*') ||
            n > (int64_t{1} << 62)) {
          return fail(proto_error::bad_reply);
        }
        record_element(type, body, 0, n);
        pos_ = body;
        if (n <= 0) {
          // An empty attribute annotates nothing; the value still follows.
          if (type == '|') {
            attribute_pending_ = true;
            break;
          }
          if (element_done()) goto complete;
          break;
        }
        const int64_t mult = (type == '%' || type == '|') ? 2 : 1;
        stack_.push_back(frame{n * mult, type == '|'});
        break;
      }
      case '.': {
        // An attribute annotates a value; one right before the end marker annotates nothing.
        if (stack_.empty() || stack_.back().remaining != -1 || !line.empty() || after_attribute) {
          return fail(proto_error::bad_reply);
        }
        stack_.pop_back();
        pos_ = body;
        if (element_done()) goto complete;
        break;
      }
      default:
        return fail(proto_error::bad_reply);
    }
  }
complete:
  consumed_ = pos_;
  started_ = false;
  return frame_status::complete;
}

}  // namespace respfence::proxy

#pragma once
// Incremental framing of server replies, RESP2 and RESP3: + - : $ * _ , # ! = ( % ~ | >,
// attributes, pushes, and the streamed forms ($? with ;chunks, *? ~? %? ending in '.').
// It finds where one reply ends without copying it, and remembers enough about the top
// level (type, first elements) for the proxy to recognise pub/sub traffic.
//
// Contract as for request_framer: call next() with the bytes from the start of the
// current reply; after need_more, call again with the same start and more bytes.

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "proxy/resp/request_framer.hpp"

namespace respfence::proxy {

struct reply_element {
  char type = 0;     // RESP type byte
  size_t off = 0;    // payload of a string-like element (relative to the reply start)
  size_t len = 0;
  int64_t integer = 0;  // ':' value, or aggregate count
};

struct reply_info {
  char type = 0;           // top-level type, after any attribute
  bool attribute = false;  // the reply was preceded by an attribute (|)
  int64_t count = 0;       // top-level aggregate element count, -1 for null, -2 streamed
  size_t payload_off = 0;  // top-level string-like payload
  size_t payload_len = 0;
  reply_element el[3];     // the first three top-level elements of an aggregate
  uint8_t n_el = 0;

  bool is_error() const { return type == '-' || type == '!'; }
  bool is_push() const { return type == '>'; }
  std::string_view payload(std::string_view reply) const {
    return reply.substr(payload_off, payload_len);
  }
  std::string_view element(std::string_view reply, size_t i) const {
    return reply.substr(el[i].off, el[i].len);
  }
};

// Any nesting depth the server can produce is framed (a script's recursive table comes
// back about 8,000 levels deep): the stack is a vector, not recursion, and every level
// costs at least four bytes of the reply, so its memory is bounded by the reply's size.
class reply_framer {
 public:
  frame_status next(std::string_view buf);
  size_t consumed() const { return consumed_; }
  const reply_info& info() const { return info_; }
  proto_error error() const { return error_; }
  void reset();

 private:
  struct frame {
    int64_t remaining;  // elements still expected; -1 = streamed, until '.'
    bool attribute;
  };
  frame_status fail(proto_error e);
  // One element finished at depth `stack_.size()`: pop completed frames.
  bool element_done();
  void record_element(char type, size_t off, size_t len, int64_t integer);

  std::vector<frame> stack_;
  size_t pos_ = 0;
  bool started_ = false;
  bool in_streamed_string_ = false;
  // An attribute just ended: the value it annotates must come next, not a '.' end marker.
  bool attribute_pending_ = false;
  size_t consumed_ = 0;
  reply_info info_;
  proto_error error_ = proto_error::none;
};

}  // namespace respfence::proxy

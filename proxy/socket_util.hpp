#pragma once
// Small helpers the Asio shells share (client_session, upstream): non-blocking sockets,
// and gathered writes that may stop part-way.

#include <asio.hpp>

#include <cstddef>
#include <vector>

namespace respfence::proxy {

// Non-blocking, and no Nagle (Unix sockets have none: the error is expected there).
template <typename Socket>
void tune_socket(Socket& s) {
  asio::error_code ignored;
  s.non_blocking(true, ignored);
  s.set_option(asio::ip::tcp::no_delay(true), ignored);
}

inline bool would_block(const asio::error_code& ec) {
  return ec == asio::error::would_block || ec == asio::error::try_again;
}

// `n` bytes of bufs[first..] were written: drop what was written whole, trim the rest.
inline void advance_buffers(std::vector<asio::const_buffer>& bufs, size_t& first, size_t n) {
  while (n > 0) {
    asio::const_buffer& front = bufs[first];
    if (n >= front.size()) {
      n -= front.size();
      ++first;
    } else {
      front = asio::const_buffer(static_cast<const char*>(front.data()) + n, front.size() - n);
      n = 0;
    }
  }
}

}  // namespace respfence::proxy

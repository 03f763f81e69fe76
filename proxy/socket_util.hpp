#pragma once
// Small helpers the Asio shells share (client_session, upstream): non-blocking sockets,
// and gathered writes that may stop part-way.

#include <asio.hpp>

#include <cerrno>
#include <cstddef>
#include <vector>

#include <sys/socket.h>

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

// Raw descriptors (client sockets and shared connections, out of Asio: socket_poller):
// recv, send and sendmsg retried on EINTR (never SIGPIPE). After -1, would_block_now()
// tells a socket with nothing to read (or no room) from a failed one.
template <typename Call>
ssize_t retry_eintr(Call call) {
  ssize_t r;
  do {
    r = call();
  } while (r < 0 && errno == EINTR);
  return r;
}

inline ssize_t recv_some(int fd, void* p, size_t n, int flags = 0) {
  return retry_eintr([&] { return ::recv(fd, p, n, flags); });
}

inline ssize_t send_some(int fd, const void* p, size_t n) {
  return retry_eintr([&] { return ::send(fd, p, n, MSG_NOSIGNAL); });
}

inline ssize_t sendmsg_some(int fd, const msghdr& m) {
  return retry_eintr([&] { return ::sendmsg(fd, &m, MSG_NOSIGNAL); });
}

inline bool would_block_now() {
  return errno == EAGAIN || errno == EWOULDBLOCK;
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

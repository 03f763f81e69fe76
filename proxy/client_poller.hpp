#pragma once
// Readiness of a worker's client sockets, from an epoll set of the worker's own.
//
// Why not Asio's reactor: arming `async_wait(wait_read)` costs an epoll_ctl(MOD) every
// time (Asio 1.22's start_op re-registers a descriptor for each non-speculative wait), so
// a request at pipeline 1 cost recv + send + epoll_ctl. Here a client socket is
// registered once, edge-triggered, and never touched again until it closes: a request
// costs recv + send, plus a share of one epoll_wait per batch of ready clients. The set's
// own descriptor is what Asio waits on (one wait per batch), so the worker still runs
// one io_context and everything stays on its thread.
//
// Client sockets are taken out of Asio entirely (release()): with the socket still in
// Asio's set too, every event was seen twice, and an earlier try that did so was slower
// than Asio alone.

#include <array>
#include <cstdint>

#include <sys/epoll.h>

#include <asio.hpp>

namespace respfence::proxy {

// Who hears a client socket's events.
class client_ready_target {
 public:
  virtual void on_ready(uint32_t events) = 0;

 protected:
  ~client_ready_target() = default;
};

class client_poller {
 public:
  explicit client_poller(asio::io_context& io);
  ~client_poller();
  client_poller(const client_poller&) = delete;
  client_poller& operator=(const client_poller&) = delete;

  // Edge-triggered readability (and hang-up) of fd, reported to t until fd is closed.
  // Bytes already queued are reported at once. False if the kernel refused.
  bool add(int fd, client_ready_target* t);
  // Writability too, from now on (after a write found the socket full). Left in place
  // afterwards: for TCP an EPOLLOUT edge comes only after the send buffer was full.
  void want_write(int fd, client_ready_target* t);

 private:
  void arm();
  void drain();

  int epfd_ = -1;
  asio::posix::stream_descriptor desc_;  // epfd_, as Asio sees it
  std::array<epoll_event, 256> events_{};
};

}  // namespace respfence::proxy

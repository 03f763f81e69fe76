#pragma once
// Readiness of a worker's client sockets and shared backend connections, from an epoll
// set of the worker's own.
//
// Why not Asio's reactor: arming `async_wait(wait_read)` costs an epoll_ctl(MOD) every
// time (Asio 1.22's start_op re-registers a descriptor for each non-speculative wait), so
// a request at pipeline 1 cost recv + send + epoll_ctl. Here a socket is registered
// once, edge-triggered, and never touched again until it closes: a request costs recv +
// send, plus a share of one epoll_wait and one epoll_ctl per batch of ready sockets. The
// set's own descriptor is what Asio waits on (one wait per batch), so the worker still
// runs one io_context and everything stays on its thread.
//
// Sockets are taken out of Asio entirely (release()): with a socket still in Asio's set
// too, every event was seen twice, and an earlier try that did so was slower than Asio
// alone.
//
// After each batch the poller runs its `after_batch` hook: the shared connections write
// what the batch's clients sent then, one write for all of them (upstream::flush).

#include <array>
#include <cstdint>
#include <functional>

#include <sys/epoll.h>

#include <asio.hpp>

namespace respfence::proxy {

// Who hears a socket's events. A target outlives its registration: it closes (or
// remove()s) its descriptor before it is freed, and it is not freed during a batch.
class ready_target {
 public:
  virtual void on_ready(uint32_t events) = 0;

 protected:
  ~ready_target() = default;
};

class socket_poller {
 public:
  explicit socket_poller(asio::io_context& io);
  ~socket_poller();
  socket_poller(const socket_poller&) = delete;
  socket_poller& operator=(const socket_poller&) = delete;

  // Edge-triggered readability (and hang-up) of fd, reported to t until fd is closed or
  // removed; with `writable`, writability too. Bytes already queued are reported at once.
  // False if the kernel refused.
  bool add(int fd, ready_target* t, bool writable = false);
  // Writability too, from now on (after a write found the socket full). Left in place
  // afterwards: for TCP an EPOLLOUT edge comes only after the send buffer was full.
  void want_write(int fd, ready_target* t);
  // fd leaves the set but stays open (it goes back to Asio).
  void remove(int fd);
  void set_after_batch(std::function<void()> f) { after_batch_ = std::move(f); }
  // True while a batch's events are being handled (work can wait for after_batch).
  bool in_batch() const { return in_batch_; }

 private:
  void arm();
  void drain();

  int epfd_ = -1;
  asio::posix::stream_descriptor desc_;  // epfd_, as Asio sees it
  std::array<epoll_event, 256> events_{};
  std::function<void()> after_batch_;
  bool in_batch_ = false;
};

}  // namespace respfence::proxy

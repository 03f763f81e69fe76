#include "proxy/socket_poller.hpp"

#include <cerrno>

#include <unistd.h>

namespace respfence::proxy {

namespace {
// Every registration: edge-triggered readability and hang-up, writability on request.
uint32_t mask(bool writable) {
  return EPOLLIN | EPOLLRDHUP | EPOLLET | (writable ? EPOLLOUT : 0u);
}
}  // namespace

socket_poller::socket_poller(asio::io_context& io)
    : epfd_(::epoll_create1(EPOLL_CLOEXEC)), desc_(io) {
  if (epfd_ < 0) return;
  asio::error_code ec;
  desc_.assign(epfd_, ec);
  if (ec) {
    ::close(epfd_);
    epfd_ = -1;
    return;
  }
  arm();
}

socket_poller::~socket_poller() {
  asio::error_code ignored;
  desc_.close(ignored);  // closes epfd_
}

bool socket_poller::add(int fd, ready_target* t, bool writable) {
  if (epfd_ < 0) return false;
  epoll_event ev{};
  ev.events = mask(writable);
  ev.data.ptr = t;
  return ::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) == 0;
}

void socket_poller::want_write(int fd, ready_target* t) {
  epoll_event ev{};
  ev.events = mask(true);
  ev.data.ptr = t;
  ::epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev);
}

void socket_poller::remove(int fd) {
  epoll_event ev{};  // (ignored by EPOLL_CTL_DEL; kernels before 2.6.9 wanted it)
  ::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, &ev);
}

void socket_poller::arm() {
  // Arming re-evaluates the set's readiness, so events left over by a full drain() are
  // seen again at once.
  desc_.async_wait(asio::posix::stream_descriptor::wait_read, [this](const asio::error_code& ec) {
    if (ec) return;  // closed: the worker is going away
    drain();
    arm();
  });
}

void socket_poller::drain() {
  // A target is a client_session or a shared backend connection: each closes its socket
  // (which leaves the set) before it can be freed, and neither is freed during this loop
  // (a session only from a posted handler; a connection only with its worker). An event
  // of a socket closed earlier in this loop reaches a target that checks it is open.
  int n;
  do {
    n = ::epoll_wait(epfd_, events_.data(), static_cast<int>(events_.size()), 0);
  } while (n < 0 && errno == EINTR);
  in_batch_ = true;
  for (int i = 0; i < n; ++i) {
    static_cast<ready_target*>(events_[i].data.ptr)->on_ready(events_[i].events);
  }
  in_batch_ = false;
  if (after_batch_) after_batch_();
}

}  // namespace respfence::proxy

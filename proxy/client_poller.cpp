#include "proxy/client_poller.hpp"

#include <cerrno>

#include <unistd.h>

namespace respfence::proxy {

client_poller::client_poller(asio::io_context& io)
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

client_poller::~client_poller() {
  asio::error_code ignored;
  desc_.close(ignored);  // closes epfd_
}

bool client_poller::add(int fd, client_ready_target* t) {
  if (epfd_ < 0) return false;
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = t;
  return ::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) == 0;
}

void client_poller::want_write(int fd, client_ready_target* t) {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = t;
  ::epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev);
}

void client_poller::arm() {
  // Arming re-evaluates the set's readiness, so events left over by a full drain() are
  // seen again at once.
  desc_.async_wait(asio::posix::stream_descriptor::wait_read, [this](const asio::error_code& ec) {
    if (ec) return;  // closed: the worker is going away
    drain();
    arm();
  });
}

void client_poller::drain() {
  // A target is a client_session: it closes its socket (which leaves the set) before it
  // can be freed, and it is freed only from a posted handler, never during this loop.
  int n;
  do {
    n = ::epoll_wait(epfd_, events_.data(), static_cast<int>(events_.size()), 0);
  } while (n < 0 && errno == EINTR);
  for (int i = 0; i < n; ++i) {
    static_cast<client_ready_target*>(events_[i].data.ptr)->on_ready(events_[i].events);
  }
}

}  // namespace respfence::proxy

// The floor for any proxy that keeps one backend connection per client: a bare byte
// relay with no parsing, no policy, no allocation, level-triggered epoll registered once,
// and nothing but recv/send per readiness event. scripts/bench runs it next to respfence:
// whatever throughput it cannot reach, no design with respfence's connection model can.
// It is a measuring stick, not a proxy (it blocks on writes and handles nothing else).
//
//   floor_forwarder LISTEN_PORT BACKEND_PORT [THREADS]

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/bench/bench_net.hpp"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

namespace {

using bench::connect_backend;
using bench::nodelay;
using bench::send_all;

struct pair_end {
  int fd;
  int peer;
};

void run(int epfd) {
  std::vector<char> buf(64 * 1024);
  epoll_event evs[128];
  while (true) {
    const int n = ::epoll_wait(epfd, evs, 128, -1);
    for (int i = 0; i < n; ++i) {
      auto* e = static_cast<pair_end*>(evs[i].data.ptr);
      if (e->fd < 0) continue;
      const ssize_t r = ::recv(e->fd, buf.data(), buf.size(), MSG_DONTWAIT);
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (r <= 0 || !send_all(e->peer, buf.data(), static_cast<size_t>(r))) {
        // Closing both ends removes them from the epoll set; the pair_end objects leak,
        // which a benchmark run of a few thousand connections does not notice.
        ::close(e->fd);
        ::close(e->peer);
        e->fd = -1;
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: floor_forwarder LISTEN_PORT BACKEND_PORT [THREADS]\n");
    return 2;
  }
  const int listen_port = std::atoi(argv[1]);
  const int backend_port = std::atoi(argv[2]);
  const int threads = argc > 3 ? std::atoi(argv[3]) : 2;
  const int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(listen_port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(lfd, 1024) != 0) {
    std::perror("floor_forwarder: listen");
    return 1;
  }
  std::vector<int> eps;
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    eps.push_back(::epoll_create1(EPOLL_CLOEXEC));
    ts.emplace_back(run, eps.back());
  }
  for (size_t next = 0;; ++next) {
    const int c = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    const int b = connect_backend(backend_port);
    if (b < 0) {
      ::close(c);
      continue;
    }
    nodelay(c);
    nodelay(b);
    const int ep = eps[next % eps.size()];
    for (auto* e : {new pair_end{c, b}, new pair_end{b, c}}) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.ptr = e;
      ::epoll_ctl(ep, EPOLL_CTL_ADD, e->fd, &ev);
    }
  }
}

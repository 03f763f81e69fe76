// The floor for any proxy that multiplexes its clients onto one shared backend connection
// (respfence's default model, and twemproxy's): one thread, one backend connection, and the
// least such a proxy must do per request. It frames each client's requests so that only
// whole ones go upstream, frames each reply to hand it to the client whose request is the
// oldest unanswered, and batches: everything read in one epoll round goes upstream in one
// send, every reply read from one backend recv goes to each client in one send. No policy,
// no state, no allocation in the steady state. scripts/bench runs it next to respfence:
// whatever throughput it cannot reach, no proxy with that connection model can.
// It is a measuring stick, not a proxy: it blocks on writes, knows RESP2 multibulk
// requests only, and handles nothing else (a client that leaves with replies due is
// simply skipped).
//
//   shared_floor LISTEN_PORT BACKEND_PORT

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
#include <cstring>
#include <deque>
#include <string>
#include <vector>

namespace {

using bench::connect_backend;
using bench::nodelay;
using bench::send_all;

struct client {
  int fd = -1;
  std::string in;   // a request not yet whole
  std::string out;  // replies to send after this backend read
  bool touched = false;
};

// Reads "<digits>\r\n" at p; returns the position after it, or nullptr if not all there.
const char* read_int(const char* p, const char* end, long long& v) {
  const void* cr = std::memchr(p, '\r', static_cast<size_t>(end - p));
  if (cr == nullptr) return nullptr;
  const char* q = static_cast<const char*>(cr);
  if (q + 1 >= end) return nullptr;
  bool neg = false;
  if (p < q && *p == '-') {
    neg = true;
    ++p;
  }
  v = 0;
  for (; p < q; ++p) v = v * 10 + (*p - '0');
  if (neg) v = -v;
  return q + 2;
}

// The length of the whole multibulk request at p, or 0 if it is not all there.
size_t request_len(const char* p, const char* end) {
  const char* s = p;
  long long argc = 0;
  if (p >= end || *p != '*' || (p = read_int(p + 1, end, argc)) == nullptr) return 0;
  for (long long i = 0; i < argc; ++i) {
    long long n = 0;
    if (p >= end || (p = read_int(p + 1, end, n)) == nullptr) return 0;
    if (end - p < n + 2) return 0;
    p += n + 2;
  }
  return static_cast<size_t>(p - s);
}

// The length of the whole reply at p, or 0 if it is not all there.
size_t reply_len(const char* p, const char* end) {
  const char* s = p;
  long long due = 1;  // values still to read, arrays' elements included
  while (due > 0) {
    if (p >= end) return 0;
    const char t = *p;
    long long n = 0;
    if ((p = read_int(p + 1, end, n)) == nullptr) return 0;
    --due;
    if (t == '$' && n >= 0) {
      if (end - p < n + 2) return 0;
      p += n + 2;
    } else if (t == '*' && n > 0) {
      due += n;
    }
  }
  return static_cast<size_t>(p - s);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: shared_floor LISTEN_PORT BACKEND_PORT\n");
    return 2;
  }
  const int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  const int one = 1;
  ::setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(std::atoi(argv[1])));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(lfd, 1024) != 0) {
    std::perror("shared_floor: listen");
    return 1;
  }
  const int up = connect_backend(std::atoi(argv[2]));
  if (up < 0) {
    std::perror("shared_floor: backend");
    return 1;
  }
  nodelay(up);
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = UINT64_MAX;  // the listener
  ::epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  ev.data.u64 = UINT64_MAX - 1;  // the backend
  ::epoll_ctl(ep, EPOLL_CTL_ADD, up, &ev);

  std::vector<client> clients;
  std::deque<uint32_t> owners;  // per request in flight, the client that sent it
  std::string upstream_out;
  std::string upstream_in;
  std::vector<uint32_t> touched;
  std::vector<char> buf(256 * 1024);
  epoll_event evs[256];
  while (true) {
    const int n = ::epoll_wait(ep, evs, 256, -1);
    for (int i = 0; i < n; ++i) {
      const uint64_t id = evs[i].data.u64;
      if (id == UINT64_MAX) {
        const int c = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (c < 0) continue;
        nodelay(c);
        clients.emplace_back();
        clients.back().fd = c;
        ev.events = EPOLLIN;
        ev.data.u64 = clients.size() - 1;
        ::epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
        continue;
      }
      if (id == UINT64_MAX - 1) {
        const ssize_t r = ::recv(up, buf.data(), buf.size(), MSG_DONTWAIT);
        if (r <= 0) {
          if (r < 0 && errno == EAGAIN) continue;
          std::fprintf(stderr, "shared_floor: backend closed\n");
          return 1;
        }
        upstream_in.append(buf.data(), static_cast<size_t>(r));
        const char* p = upstream_in.data();
        const char* end = p + upstream_in.size();
        while (!owners.empty()) {
          const size_t len = reply_len(p, end);
          if (len == 0) break;
          client& cl = clients[owners.front()];
          owners.pop_front();
          if (cl.fd >= 0) {
            cl.out.append(p, len);
            if (!cl.touched) {
              cl.touched = true;
              touched.push_back(static_cast<uint32_t>(&cl - clients.data()));
            }
          }
          p += len;
        }
        upstream_in.erase(0, static_cast<size_t>(p - upstream_in.data()));
        for (const uint32_t t : touched) {
          client& cl = clients[t];
          cl.touched = false;
          if (cl.fd >= 0 && !send_all(cl.fd, cl.out.data(), cl.out.size())) {
            ::close(cl.fd);
            cl.fd = -1;
          }
          cl.out.clear();
        }
        touched.clear();
        continue;
      }
      client& cl = clients[id];
      if (cl.fd < 0) continue;
      const ssize_t r = ::recv(cl.fd, buf.data(), buf.size(), MSG_DONTWAIT);
      if (r <= 0) {
        if (r < 0 && errno == EAGAIN) continue;
        ::close(cl.fd);
        cl.fd = -1;
        continue;
      }
      // Whole requests go upstream; a partial one waits in the client's own buffer.
      const char* p = buf.data();
      size_t avail = static_cast<size_t>(r);
      if (!cl.in.empty()) {
        cl.in.append(p, avail);
        p = cl.in.data();
        avail = cl.in.size();
      }
      const char* end = p + avail;
      const char* start = p;
      while (p < end) {
        const size_t len = request_len(p, end);
        if (len == 0) break;
        owners.push_back(static_cast<uint32_t>(id));
        p += len;
      }
      upstream_out.append(start, static_cast<size_t>(p - start));
      std::string rest(p, end);
      cl.in.swap(rest);
    }
    if (!upstream_out.empty()) {
      if (!send_all(up, upstream_out.data(), upstream_out.size())) {
        std::fprintf(stderr, "shared_floor: backend write failed\n");
        return 1;
      }
      upstream_out.clear();
    }
  }
}

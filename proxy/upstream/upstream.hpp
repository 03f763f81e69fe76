#pragma once
// A worker's shared backend connections (docs/design.md §12): a few per backend and
// connection key, carrying the commands of every session of this worker whose link is
// shared. The shell around shared_link: it owns the sockets and moves the bytes, with
// the same non-blocking discipline as client_session (write at once, wait only when the
// socket is full; read until a short read, then wait for readiness).
//
// Batching is the point: sessions hand their bytes over as they come (submit), and the
// upstream writes once per turn of the event loop, after every ready client has been
// read. One write and one read then carry many clients' commands, for the proxy and for
// redis-server alike.

#include <memory>
#include <utility>
#include <vector>

#include <sys/uio.h>

#include <asio.hpp>

#include "proxy/session/pool_key.hpp"
#include "proxy/socket_poller.hpp"
#include "proxy/upstream/shared_link.hpp"

namespace respfence::proxy {

class worker;
class client_session;

class upstream {
 public:
  upstream(worker& w, size_t per_key, uint32_t connect_timeout_ms);
  ~upstream();
  upstream(const upstream&) = delete;
  upstream& operator=(const upstream&) = delete;

  // Session s has bytes to send on its shared link b.
  void submit(client_session* s, size_t b);
  // Session s is being freed: its replies still due are dropped.
  void forget(client_session* s);
  // A session pins backend b: an idle open shared connection of `key`, if there is one,
  // becomes its own (moved into `out`); false if none is idle.
  bool adopt(size_t b, const pool_key& key, asio::generic::stream_protocol::socket& out);
  // Open shared connections to backend b (for /metrics).
  size_t open_connections(size_t b) const;
  void set_connect_timeout(uint32_t ms) { connect_timeout_ms_ = ms; }
  void close_all();
  // The poller's batch is over: what its clients submitted is written now (see schedule).
  void after_batch();
  // About once a second: extra connections (opened because the usual ones were held by a
  // script, a pause or a slow command) that have been idle a while are closed.
  void sweep(int64_t now_ms);

 private:
  // One shared connection. Connecting, its socket is Asio's; once open, the descriptor
  // leaves Asio for the worker's socket_poller (see socket_poller.hpp), which reports
  // its edges here, and bytes move with plain sendmsg/recv.
  struct conn final : ready_target {
    conn(upstream& u, asio::io_context& io, size_t b, pool_key key, size_t i)
        : up(u), sock(io), timer(io), backend(b), index(i), core(std::move(key)) {}
    void on_ready(uint32_t events) override { up.on_ready(*this, events); }
    upstream& up;
    asio::generic::stream_protocol::socket sock;  // while connecting
    int fd = -1;                                  // once open: in the poller
    asio::steady_timer timer;
    size_t backend;
    size_t index;
    shared_link core;
    std::vector<asio::const_buffer> bufs;
    size_t first = 0;
    bool open = false;
    bool connecting = false;
    bool write_blocked = false;  // a write found the socket full: the next EPOLLOUT resumes it
    bool writing = false;
    bool delivering = false;  // read_now is handing replies to their sessions (adopt waits)
    bool maybe_ready = true;
    bool peer_closed = false;  // the poller reported the server's hang-up: read on to EOF
    // When replies last came, or the connection last went from idle to busy: a connection
    // with replies due and no progress for a while is stalled (a slow command, a pause).
    int64_t progress_ms = 0;
    int64_t used_ms = 0;  // when it last carried anything (sweep)
    // Sessions whose bytes wait for this connection to open.
    std::vector<std::pair<client_session*, size_t>> waiting;
  };
  std::vector<client_session*> touched_;  // read_now's, kept for its capacity
  conn& conn_for(size_t b, const pool_key& key, size_t index);
  // The connection session s's bytes for backend b go on (see flush()).
  conn& pick(client_session* s, size_t b, int64_t now, bool paused);
  bool joinable(const conn& c, int64_t now, bool paused) const;
  void schedule();
  void flush();
  void take(conn& c, client_session* s, size_t b);
  void write_now(conn& c);
  void read_now(conn& c);
  void on_ready(conn& c, uint32_t events);
  void close_fd(conn& c);
  void connect(conn& c);
  // False when the server has closed c (a FIN or a reset waiting to be read).
  static bool alive(const conn& c);
  void fail(conn& c, bool was_open);
  void written(conn& c);

  worker& w_;
  size_t per_key_;
  // Extra connections per backend and key, beyond per_key_ (a bound: past it, a session
  // waits behind whatever holds the usual connection, as it did before they existed).
  static constexpr size_t max_extra = 256;
  static constexpr int64_t stall_ms = 50;
  static constexpr int64_t idle_check_ms = 10;  // see flush()
  static constexpr int64_t extra_idle_ms = 2000;
  uint32_t connect_timeout_ms_;
  std::vector<std::unique_ptr<conn>> conns_;
  std::vector<std::pair<client_session*, size_t>> dirty_;
  std::vector<iovec> iov_;  // write_now's scratch
  bool posted_ = false;
  bool closed_ = false;
};

}  // namespace respfence::proxy

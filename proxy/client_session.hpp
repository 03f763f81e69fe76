#pragma once
// The Asio shell around a session_core: it owns the client socket and one socket per
// backend link, and does whatever I/O the core asks for after each event (pump()).
// All of it runs on one worker thread; no locks.
//
// I/O is done directly on non-blocking sockets; readiness comes from the worker's
// socket_poller for the client socket, and from Asio for backend links:
//  - a write is attempted at once (one sendmsg for the whole gathered batch); only if
//    the socket is full does the shell wait for it to become writable;
//  - a read that comes back short has drained the socket, so the next one waits for
//    readiness instead of trying (and failing with EAGAIN) first. Both reactors are
//    edge-triggered: a socket is "maybe ready" from an event until a read comes back
//    short, and read directly while it is, so that no edge is ever lost.
// This saves three syscalls and an allocation per request over async_read_some/async_write.

#include <memory>
#include <vector>

#include <asio.hpp>

#include "proxy/socket_poller.hpp"
#include "proxy/session/session_core.hpp"

namespace respfence::proxy {

class worker;

class client_session final : public ready_target {
 public:
  using socket = asio::generic::stream_protocol::socket;

  // fd: a connected, non-blocking client socket; the session owns it, and the worker
  // adds it to its poller once the session exists.
  client_session(worker& w, int fd, session_core::limits lim, uint32_t connect_timeout_ms,
                 uint64_t id);
  ~client_session();
  client_session(const client_session&) = delete;
  client_session& operator=(const client_session&) = delete;

  void start();
  // The client socket's events, from the worker's socket_poller.
  void on_ready(uint32_t events) override;
  // Do whatever reads, writes and connects the core wants now.
  void pump();
  session_core& core() { return core_; }
  size_t slot = 0;  // index in the worker's session list

  // ---- for the worker's upstream (shared links) ----
  uint64_t id() const { return id_; }
  int fd() const { return fd_; }
  bool closing() const { return closing_; }
  // The upstream holds this session's buffers in a batch: it is not freed meanwhile.
  void hold_op() { ++ops_; }
  void release_op() { op_done(); }
  void shared_submitted(size_t b, bool v) {
    if (b < submitted_.size()) submitted_[b] = v;
  }
  // The upstream's connection that last took this session's bytes for backend b.
  void* shared_conn(size_t b) const { return b < shared_conn_.size() ? shared_conn_[b] : nullptr; }
  void set_shared_conn(size_t b, void* c) {
    if (shared_conn_.size() <= b) shared_conn_.resize(b + 1, nullptr);
    shared_conn_[b] = c;
  }

 private:
  struct link_io {
    explicit link_io(asio::io_context& io) : sock(io), timer(io) {}
    socket sock;
    asio::steady_timer timer;
    std::vector<asio::const_buffer> bufs;  // the batch being written
    size_t first = 0;                      // bufs[first..] are still to go
    uint32_t gen = 0;  // bumped when the socket closes: older waits are stale
    bool open = false;
    bool connecting = false;
    bool read_armed = false;   // waiting for readability
    bool maybe_ready = true;   // may hold unread bytes: read directly
    bool write_armed = false;  // waiting for writability
    bool writing = false;      // a batch is (partly) unwritten
  };

  bool read_client_now();
  bool write_client_now();
  bool read_link_now(size_t b);
  bool write_link_now(size_t b);
  void arm_client_write();
  void arm_link_read(size_t b);
  void arm_link_write(size_t b);
  void connect_link(size_t b);
  void close_link(size_t b, bool was_open);
  void drop_link(size_t b);
  void close();
  void op_done();

  worker& w_;
  int fd_;  // the client socket: out of Asio, in the worker's socket_poller
  session_core core_;
  uint32_t connect_timeout_ms_;
  std::vector<std::unique_ptr<link_io>> links_;
  std::string_view out_;      // client output being written
  size_t out_done_ = 0;       // bytes of out_ already written
  // A new connection waits for its first event (adding it to the poller reports bytes
  // already there) instead of allocating a buffer to try a read.
  bool maybe_ready_ = false;
  bool want_write_ = false;  // the poller reports writability too
  bool peer_closed_ = false;  // the poller reported the client's hang-up (see on_ready)
  bool write_armed_ = false;
  bool writing_ = false;
  bool closing_ = false;
  // The client socket is closed, but the session lingers for its flush's reply.
  bool client_closed_ = false;
  bool in_pump_ = false;
  bool pump_again_ = false;
  bool repump_posted_ = false;  // a pump cut short by its pass limit comes back by post
  int ops_ = 0;  // handlers still to run; the session is freed at zero once closing
  uint64_t id_;
  std::vector<bool> submitted_;  // shared link b's bytes are handed to the upstream
  std::vector<void*> shared_conn_;  // per backend: see shared_conn()
};

}  // namespace respfence::proxy

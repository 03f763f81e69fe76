#pragma once
// The Asio shell around a session_core: it owns the client socket and one socket per
// backend link, and does whatever I/O the core asks for after each event (pump()).
// All of it runs on one worker thread; no locks.

#include <memory>
#include <vector>

#include <asio.hpp>

#include "proxy/session_core.hpp"

namespace respfence::proxy {

class worker;

class client_session {
 public:
  using socket = asio::generic::stream_protocol::socket;

  client_session(worker& w, socket s, std::shared_ptr<const routing::router> router,
                 session_core::limits lim, const std::vector<asio::generic::stream_protocol::endpoint>& backends,
                 uint32_t connect_timeout_ms);
  ~client_session();
  client_session(const client_session&) = delete;
  client_session& operator=(const client_session&) = delete;

  void start();
  // Issue whatever reads, writes and connects the core wants now.
  void pump();
  session_core& core() { return core_; }
  size_t slot = 0;  // index in the worker's session list

 private:
  struct link_io {
    explicit link_io(asio::io_context& io) : sock(io), timer(io) {}
    socket sock;
    asio::steady_timer timer;
    std::vector<asio::const_buffer> bufs;
    bool open = false;
    bool connecting = false;
    bool reading = false;
    bool writing = false;
  };

  void read_client();
  void write_client();
  void connect_link(size_t b);
  void read_link(size_t b);
  void write_link(size_t b);
  void close_link(size_t b, bool was_open);
  void close();
  void op_done();

  worker& w_;
  socket sock_;
  session_core core_;
  const std::vector<asio::generic::stream_protocol::endpoint>& endpoints_;
  uint32_t connect_timeout_ms_;
  std::vector<std::unique_ptr<link_io>> links_;
  bool reading_ = false;
  bool writing_ = false;
  bool closing_ = false;
  bool in_pump_ = false;
  int ops_ = 0;  // handlers still to run; the session is freed at zero once closing
};

}  // namespace respfence::proxy

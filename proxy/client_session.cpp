#include "proxy/client_session.hpp"

#include <span>

#include <sys/socket.h>
#include <unistd.h>

#include "proxy/socket_util.hpp"
#include "proxy/worker.hpp"

namespace respfence::proxy {

client_session::client_session(worker& w, int fd, session_core::limits lim,
                               uint32_t connect_timeout_ms, uint64_t id)
    : w_(w), fd_(fd), core_(w, lim), connect_timeout_ms_(connect_timeout_ms), id_(id) {
  core_.set_user(this);
}

client_session::~client_session() {
  if (fd_ >= 0) ::close(fd_);
}

void client_session::on_ready(uint32_t events) {
  if (closing_ || client_closed_) return;
  bool act = false;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    maybe_ready_ = true;
    act = true;
  }
  // A hang-up or error is what a read returns after the bytes before it: keep reading
  // until then (edge-triggered, nothing would report it again).
  if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) peer_closed_ = true;
  if (write_armed_ && (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))) {
    write_armed_ = false;
    act = true;
  }
  if (act) pump();
}

void client_session::start() { pump(); }

void client_session::pump() {
  if (closing_) return;
  if (in_pump_) {
    pump_again_ = true;
    return;
  }
  in_pump_ = true;
  // Each pass moves whatever can move without waiting; stop when nothing did.
  bool progress = false;
  for (int pass = 0; pass < 32 && !closing_; ++pass) {
    pump_again_ = false;
    progress = false;
    // The core opens links as backends appear (cluster mode: a -MOVED to a node first
    // seen during this very pump); the shell follows on every pass.
    while (links_.size() < core_.link_count()) {
      links_.push_back(std::make_unique<link_io>(w_.io()));
      submitted_.push_back(false);
      progress = true;
    }
    if (client_closed_) {
      // Lingering: replies have nobody to go to.
      if (core_.has_client_output()) {
        core_.take_client_output();
        core_.client_output_done();
      }
    } else {
      if (!writing_ && core_.has_client_output()) {
        out_ = core_.take_client_output();
        out_done_ = 0;
        writing_ = true;
      }
      if (writing_ && !write_armed_) progress |= write_client_now();
    }
    for (size_t b = 0; b < links_.size() && !closing_; ++b) {
      link_io& l = *links_[b];
      if (core_.link_shared(b)) {
        // Its bytes ride a shared connection: the worker's upstream writes them, with
        // every other client's, once this turn of the event loop is done.
        if (l.open) drop_link(b);  // unpinned: its own connection is not needed now
        if (!submitted_[b] && core_.link_has_output(b)) {
          submitted_[b] = true;
          w_.shared().submit(this, b);
        }
        continue;
      }
      if (!l.open) {
        if (!l.connecting && core_.link_needs_connect(b)) connect_link(b);
        continue;
      }
      if (!l.writing && core_.link_has_output(b)) {
        l.bufs.clear();
        for (const out_span& s : core_.take_link_output(b)) l.bufs.emplace_back(s.data, s.size);
        l.first = 0;
        l.writing = true;
      }
      if (l.writing && !l.write_armed) progress |= write_link_now(b);
      if (l.open && !l.read_armed && l.maybe_ready && core_.link_wants_read(b)) {
        progress |= read_link_now(b);
      }
    }
    if (!closing_ && !client_closed_ && maybe_ready_ && core_.wants_client_read()) {
      progress |= read_client_now();
    }
    if (closing_) break;
    if (core_.finished() && (client_closed_ || (!writing_ && !core_.has_client_output()))) {
      close();
      break;
    }
    if (!progress && !pump_again_) break;
  }
  if (!closing_ && (progress || pump_again_) && !repump_posted_) {
    // The pass limit stopped a pump that was still moving bytes (a long pipeline in both
    // directions). Sockets left "maybe ready" are waited on by nobody: come back at once,
    // after the other sessions of this thread had their turn.
    repump_posted_ = true;
    ++ops_;
    asio::post(w_.io(), [this] {
      repump_posted_ = false;
      if (!closing_) pump();
      op_done();
    });
  }
  if (!closing_) {
    // Wait for whatever would block. A socket not waited on now keeps "maybe ready":
    // an edge that arrives meanwhile is not seen again, so it is read directly later.
    // (The client socket needs no wait: the poller reports every edge.)
    for (size_t b = 0; b < links_.size(); ++b) {
      link_io& l = *links_[b];
      if (!l.open || l.read_armed || core_.link_shared(b)) continue;
      if (!l.maybe_ready && core_.link_wants_read(b)) {
        arm_link_read(b);
      } else {
        l.maybe_ready = true;
      }
    }
  }
  in_pump_ = false;
}

// ---------------------------------------------------------------- client socket

bool client_session::read_client_now() {
  auto [p, n] = core_.client_read_buffer();
  if (n == 0) return false;
  const ssize_t r = recv_some(fd_, p, n);
  if (r < 0 && would_block_now()) {
    maybe_ready_ = false;
    return false;
  }
  if (r == 0 && core_.on_client_eof()) {
    // End of file: what came before it is answered first (pump() closes once done).
    maybe_ready_ = false;
    return true;
  }
  if (r <= 0) {  // the client is gone (or nothing it sent may outlive it)
    close();
    return true;
  }
  const size_t got = static_cast<size_t>(r);
  core_.on_client_data(got);
  // A short read drained the socket, unless the peer's end of file came with the same
  // event: then the next read returns it, and no further edge would announce it.
  if (got < n && !peer_closed_) maybe_ready_ = false;
  return true;
}

bool client_session::write_client_now() {
  const ssize_t r = send_some(fd_, out_.data() + out_done_, out_.size() - out_done_);
  if (r < 0 && would_block_now()) {
    arm_client_write();
    return false;
  }
  if (r < 0) {
    close();
    return true;
  }
  out_done_ += static_cast<size_t>(r);
  if (out_done_ < out_.size()) {
    arm_client_write();
    return true;
  }
  writing_ = false;
  core_.client_output_done();
  return true;
}

void client_session::arm_client_write() {
  // The poller's EPOLLOUT edge (or a hang-up) clears it; see on_ready.
  write_armed_ = true;
  if (!want_write_) {
    want_write_ = true;
    w_.poller().want_write(fd_, this);
  }
}

// ---------------------------------------------------------------- backend links

void client_session::connect_link(size_t b) {
  link_io& l = *links_[b];
  if (pool_key key; core_.adopt_key(b, key) && w_.shared().adopt(b, key, l.sock)) {
    // Pinned onto an idle shared connection: open already, in the client's state.
    core_.on_link_connecting(b);
    l.open = true;
    l.maybe_ready = true;
    w_.dedicated_opened(b);
    core_.on_link_connected(b, true);
    pump_again_ = true;
    return;
  }
  l.connecting = true;
  core_.on_link_connecting(b);
  l.sock = socket(w_.io());
  ++ops_;
  l.timer.expires_after(std::chrono::milliseconds(connect_timeout_ms_));
  l.timer.async_wait([this, b](const asio::error_code& ec) {
    link_io& lk = *links_[b];
    // A connect that takes too long is abandoned like a refused one.
    if (!ec && lk.connecting) {
      asio::error_code ignored;
      lk.sock.close(ignored);
    }
    op_done();
  });
  ++ops_;
  l.sock.async_connect(w_.endpoint(b), [this, b](const asio::error_code& ec) {
    link_io& lk = *links_[b];
    lk.connecting = false;
    lk.timer.cancel();
    if (!closing_) {
      if (ec) {
        asio::error_code ignored;
        lk.sock.close(ignored);
        core_.on_link_failed(b, false);
      } else {
        lk.open = true;
        lk.maybe_ready = true;
        w_.dedicated_opened(b);
        tune_socket(lk.sock);
        core_.on_link_connected(b);
      }
      pump();
    }
    op_done();
  });
}

bool client_session::read_link_now(size_t b) {
  link_io& l = *links_[b];
  auto [p, n] = core_.link_read_buffer(b);
  asio::error_code ec;
  const size_t got = l.sock.read_some(asio::buffer(p, n), ec);
  if (would_block(ec)) {
    l.maybe_ready = false;
    return false;
  }
  if (ec) {
    close_link(b, true);
    return true;
  }
  core_.on_link_data(b, got);
  if (!core_.link_open(b)) {
    // The core gave up on this connection (a reply that is not RESP).
    close_link(b, true);
    return true;
  }
  if (got < n) l.maybe_ready = false;
  return true;
}

bool client_session::write_link_now(size_t b) {
  link_io& l = *links_[b];
  asio::error_code ec;
  size_t n = l.sock.write_some(
      std::span<const asio::const_buffer>(l.bufs.data() + l.first, l.bufs.size() - l.first), ec);
  if (would_block(ec)) {
    arm_link_write(b);
    return false;
  }
  if (ec) {
    // The server is gone (it refused a request at its header and closed, most likely).
    // Replies it sent before may still be queued here, its refusal among them: read them
    // out first, so that they reach the client and only what is truly in flight fails
    // (read_link_now closes the link at EOF or an error).
    while (l.open && read_link_now(b)) {
    }
    if (l.open) close_link(b, true);
    return true;
  }
  advance_buffers(l.bufs, l.first, n);
  if (l.first < l.bufs.size()) {
    arm_link_write(b);
    return true;
  }
  l.writing = false;
  core_.link_output_done(b);
  return true;
}

void client_session::arm_link_read(size_t b) {
  link_io& l = *links_[b];
  l.read_armed = true;
  ++ops_;
  l.sock.async_wait(socket::wait_read, [this, b, gen = l.gen](const asio::error_code& ec) {
    link_io& lk = *links_[b];
    // A wait on a socket that has since been closed (and maybe reopened) means nothing.
    if (gen == lk.gen) {
      lk.read_armed = false;
      if (!closing_ && !ec && lk.open) {
        lk.maybe_ready = true;
        pump();
      }
    }
    op_done();
  });
}

void client_session::arm_link_write(size_t b) {
  link_io& l = *links_[b];
  l.write_armed = true;
  ++ops_;
  l.sock.async_wait(socket::wait_write, [this, b, gen = l.gen](const asio::error_code& ec) {
    link_io& lk = *links_[b];
    if (gen == lk.gen) {
      lk.write_armed = false;
      if (!closing_ && !ec && lk.open) pump();
    }
    op_done();
  });
}

void client_session::drop_link(size_t b) {
  // A link gone back to shared: its connection closes quietly (nothing is on it).
  link_io& l = *links_[b];
  l.open = false;
  ++l.gen;
  l.read_armed = false;
  l.write_armed = false;
  l.writing = false;
  l.bufs.clear();
  l.first = 0;
  asio::error_code ignored;
  l.sock.close(ignored);
  w_.dedicated_closed(b);
}

void client_session::close_link(size_t b, bool was_open) {
  link_io& l = *links_[b];
  if (l.open) w_.dedicated_closed(b);
  l.open = false;
  ++l.gen;
  l.read_armed = false;
  l.write_armed = false;
  asio::error_code ignored;
  l.sock.close(ignored);  // pending waits complete with operation_aborted, and are stale
  if (l.writing) {
    l.writing = false;
    core_.link_output_done(b);
  }
  l.bufs.clear();
  l.first = 0;
  core_.on_link_failed(b, was_open);
}

// ---------------------------------------------------------------- lifetime

void client_session::close() {
  if (closing_) return;
  asio::error_code ignored;
  if (!client_closed_) {
    client_closed_ = true;
    if (writing_) {
      writing_ = false;
      core_.client_output_done();
    }
    core_.on_client_closed();
    ::close(fd_);  // leaves the poller's set with it
    fd_ = -1;
    if (core_.lingering()) {
      // Its flush is on the wire; the fence holds every other client until the backend
      // answers it, so the links stay open for that reply. pump() closes the rest then.
      pump();
      return;
    }
  } else {
    core_.on_client_closed(true);  // the lingering flush was answered, or is let go now
  }
  closing_ = true;
  for (size_t b = 0; b < links_.size(); ++b) {
    link_io& l = *links_[b];
    if (l.open) w_.dedicated_closed(b);
    l.open = false;
    l.timer.cancel();
    l.sock.close(ignored);
  }
  ++ops_;
  op_done();
}

void client_session::op_done() {
  if (--ops_ == 0 && closing_) {
    // Freed from a fresh handler, never from inside one of its own.
    asio::post(w_.io(), [w = &w_, self = this] { w->remove(self); });
  }
}

}  // namespace respfence::proxy

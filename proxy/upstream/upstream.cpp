#include "proxy/upstream/upstream.hpp"

#include <algorithm>
#include <chrono>
#include <climits>  // IOV_MAX

#include <unistd.h>

#include "proxy/client_session.hpp"
#include "proxy/socket_util.hpp"
#include "proxy/worker.hpp"

namespace respfence::proxy {

static_assert(session_core::mark_solo == shared_link::mark_solo);

namespace {
client_session* session_of(shared_link::owner o) { return static_cast<client_session*>(o); }
}  // namespace

upstream::upstream(worker& w, size_t per_key, uint32_t connect_timeout_ms)
    : w_(w), per_key_(std::max<size_t>(1, per_key)), connect_timeout_ms_(connect_timeout_ms) {}

upstream::~upstream() { close_all(); }

void upstream::close_all() {
  closed_ = true;
  for (auto& c : conns_) {
    asio::error_code ignored;
    c->timer.cancel();
    c->sock.close(ignored);
    close_fd(*c);
  }
}

void upstream::close_fd(conn& c) {
  if (c.fd < 0) return;
  ::close(c.fd);  // leaves the poller's set with it
  c.fd = -1;
}

size_t upstream::open_connections(size_t b) const {
  return static_cast<size_t>(std::count_if(conns_.begin(), conns_.end(), [b](const auto& c) {
    return c->backend == b && c->open;
  }));
}

upstream::conn& upstream::conn_for(size_t b, const pool_key& key, size_t index) {
  for (auto& c : conns_) {
    if (c->backend == b && c->index == index && c->core.key() == key) return *c;
  }
  conns_.push_back(std::make_unique<conn>(*this, w_.io(), b, key, index));
  return *conns_.back();
}

void upstream::submit(client_session* s, size_t b) {
  dirty_.emplace_back(s, b);
  schedule();
}

void upstream::schedule() {
  if (posted_ || closed_) return;
  posted_ = true;
  // One write carries every client that sent meanwhile. Inside the poller's batch, the
  // batch's end writes (after_batch); elsewhere (a timer, a pinned link's reply), after
  // the handlers already queued.
  if (w_.poller().in_batch()) return;
  asio::post(w_.io(), [this] { after_batch(); });
}

void upstream::after_batch() {
  if (!posted_) return;  // written already (a post that came after the batch's end)
  posted_ = false;
  flush();
}

void upstream::forget(client_session* s) {
  bool named = false;
  for (auto& c : conns_) {
    if (c->core.named_by() == s) named = true;
    c->core.forget(s);
    auto& wt = c->waiting;
    wt.erase(std::remove_if(wt.begin(), wt.end(), [s](const auto& p) { return p.first == s; }),
             wt.end());
  }
  dirty_.erase(std::remove_if(dirty_.begin(), dirty_.end(),
                              [s](const auto& p) { return p.first == s; }),
               dirty_.end());
  if (named) schedule();  // the name it gave a connection is cleared (shared_link::forget)
}

void upstream::take(conn& c, client_session* s, size_t b) {
  session_core& core = s->core();
  if (!core.link_shared(b) || !core.link_has_output(b)) return;
  if (c.core.idle()) c.progress_ms = w_.now_ms();
  const std::vector<out_span>& spans = core.take_link_output(b);
  const size_t replies = core.take_link_items(b);
  c.core.add(s, spans, replies, core.take_link_marks(b));
  s->hold_op();  // its buffers are in this connection's batch until it is written
}

bool upstream::joinable(const conn& c, int64_t now, bool paused) const {
  if (c.core.idle() && c.waiting.empty()) return true;
  // Busy with other sessions' commands. Joining means waiting behind them, which is what
  // batching is for, unless one of them can hold the server's answer back for long:
  // - a script (the server answers -BUSY to everyone else, on their own connections);
  // - a CLIENT PAUSE in force (a paused write would hold back the reads behind it);
  // - no reply for stall_ms (a slow command, or a pause the proxy did not see).
  if (paused || c.core.solo_due()) return false;
  return !(c.core.replies_due() > 0 && now - c.progress_ms > stall_ms);
}

upstream::conn& upstream::pick(client_session* s, size_t b, int64_t now, bool paused) {
  const pool_key& key = s->core().link_key();
  // Replies due (or bytes waiting for the connect): the session stays where they are, so
  // that its commands run in the order it sent them.
  if (auto* cur = static_cast<conn*>(s->shared_conn(b));
      cur != nullptr && cur->backend == b && cur->core.key() == key &&
      (s->core().link_due(b) ||
       std::find(cur->waiting.begin(), cur->waiting.end(), std::make_pair(s, b)) !=
           cur->waiting.end())) {
    return *cur;
  }
  // Otherwise: its usual connection, another of the usual ones, an extra one, a new extra
  // one; failing all, its usual one anyway.
  const size_t first = s->id() % per_key_;
  conn* chosen = nullptr;
  for (size_t i = 0; i < per_key_ && chosen == nullptr; ++i) {
    conn& c = conn_for(b, key, (first + i) % per_key_);
    if (joinable(c, now, paused)) chosen = &c;
  }
  if (chosen == nullptr) {
    size_t extras = 0;
    for (auto& c : conns_) {
      if (c->backend != b || c->index < per_key_ || !(c->core.key() == key)) continue;
      ++extras;
      if (joinable(*c, now, paused)) {
        chosen = c.get();
        break;
      }
    }
    if (chosen == nullptr && extras < max_extra) chosen = &conn_for(b, key, per_key_ + extras);
  }
  if (chosen == nullptr) chosen = &conn_for(b, key, first);
  s->set_shared_conn(b, chosen);
  return *chosen;
}

bool upstream::adopt(size_t b, const pool_key& key, asio::generic::stream_protocol::socket& out) {
  if (closed_) return false;
  conn* best = nullptr;
  for (auto& c : conns_) {
    // Not a named one: its name might not be this client's (another client's, or one
    // this client has since dropped with RESET or HELLO ... SETNAME "").
    if (c->backend != b || !c->open || c->peer_closed || c->delivering || c->writing ||
        !c->core.idle() || c->core.bad() || !c->waiting.empty() || !(c->core.key() == key) ||
        c->core.named_by() != nullptr) {
      continue;
    }
    // An extra one first: the usual ones stay for the clients that share.
    if (best == nullptr || (best->index < per_key_ && c->index >= per_key_)) best = c.get();
  }
  if (best == nullptr) return false;
  conn& c = *best;
  // The descriptor goes back to Asio, as the session's own link.
  w_.poller().remove(c.fd);
  asio::generic::stream_protocol::socket s(w_.io());
  asio::error_code ec;
  s.assign(w_.endpoint(b).protocol(), c.fd, ec);
  if (ec) {
    if (!w_.poller().add(c.fd, &c, true)) fail(c, true);  // idle: nobody is told anything
    return false;
  }
  tune_socket(s);  // Asio's own record of it: non-blocking (its sync writes must not block)
  out = std::move(s);
  c.fd = -1;
  c.write_blocked = false;
  c.open = false;
  (void)c.core.on_failed();  // idle: nobody to tell; resets its framer and buffers
  w_.shared_closed(b);
  return true;
}

void upstream::sweep(int64_t now_ms) {
  for (auto& c : conns_) {
    if (c->index < per_key_ || !c->open || c->writing || !c->core.idle() || !c->waiting.empty()) {
      continue;
    }
    if (now_ms - c->used_ms < extra_idle_ms) continue;
    fail(*c, true);  // idle: nobody is told anything
  }
}

void upstream::flush() {
  if (closed_) return;
  std::vector<std::pair<client_session*, size_t>> batch;
  batch.swap(dirty_);
  const int64_t now = w_.now_ms();
  const bool paused = w_.pause_active(now);
  for (auto [s, b] : batch) {
    s->shared_submitted(b, false);
    if (s->closing() || !s->core().link_shared(b) || !s->core().link_has_output(b)) continue;
    conn& c = pick(s, b, now, paused);
    // A connection idle a while may have been closed by the server meanwhile (its
    // `timeout`, CLIENT KILL, a restart) with the FIN not read yet: its event can sit
    // behind a burst of ready clients, which would be written onto the dead connection and
    // answered "may or may not have run". One peek when it goes from idle to busy.
    if (c.open && c.core.idle() && now - c.used_ms >= idle_check_ms && !alive(c)) {
      fail(c, true);  // idle: nobody is told anything
    }
    c.used_ms = now;
    if (!c.open) {
      if (std::find(c.waiting.begin(), c.waiting.end(), std::make_pair(s, b)) == c.waiting.end()) {
        c.waiting.emplace_back(s, b);
      }
      if (!c.connecting) connect(c);
      continue;
    }
    take(c, s, b);
  }
  for (auto& c : conns_) {
    if (c->open && !c->writing && c->core.has_output()) {
      c->bufs.clear();
      for (const out_span& sp : c->core.take_output()) c->bufs.emplace_back(sp.data, sp.size);
      c->first = 0;
      c->writing = true;
      write_now(*c);
    }
  }
}

bool upstream::alive(const conn& c) {
  char byte;
  const ssize_t r = recv_some(c.fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return r > 0 || (r < 0 && would_block_now());
}

void upstream::connect(conn& c) {
  c.connecting = true;
  c.sock = asio::generic::stream_protocol::socket(w_.io());
  c.timer.expires_after(std::chrono::milliseconds(connect_timeout_ms_));
  c.timer.async_wait([&c](const asio::error_code& ec) {
    if (!ec && c.connecting) {
      asio::error_code ignored;
      c.sock.close(ignored);  // a connect that takes too long is abandoned like a refused one
    }
  });
  c.sock.async_connect(w_.endpoint(c.backend), [this, &c](const asio::error_code& ec) {
    c.connecting = false;
    c.timer.cancel();
    if (closed_) return;
    if (ec) {
      asio::error_code ignored;
      c.sock.close(ignored);
      fail(c, false);
      return;
    }
    // Out of Asio, into the poller (registered writable too: a write that finds the
    // socket full resumes on its EPOLLOUT edge).
    tune_socket(c.sock);
    asio::error_code rel;
    c.fd = c.sock.release(rel);
    if (rel || !w_.poller().add(c.fd, &c, true)) {
      if (!rel) ::close(c.fd);
      c.fd = -1;
      fail(c, false);
      return;
    }
    c.open = true;
    c.maybe_ready = true;
    c.peer_closed = false;
    c.progress_ms = w_.now_ms();
    w_.shared_opened(c.backend);
    c.core.on_connected();
    for (auto [s, b] : c.waiting) dirty_.emplace_back(s, b);
    c.waiting.clear();
    flush();  // the handshake, and what waited for the connection
  });
}

void upstream::on_ready(conn& c, uint32_t events) {
  if (!c.open || closed_) return;  // an event of a descriptor closed earlier in the batch
  if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) c.peer_closed = true;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    c.maybe_ready = true;
    read_now(c);
  }
  if (c.open && c.write_blocked && (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))) {
    c.write_blocked = false;
    write_now(c);
  }
}

void upstream::write_now(conn& c) {
  // As many buffers as one sendmsg takes (Asio's write_some took 64), until done or full.
  while (c.first < c.bufs.size()) {
    const size_t count = std::min<size_t>(c.bufs.size() - c.first, IOV_MAX);
    iov_.resize(count);
    for (size_t i = 0; i < count; ++i) {
      const asio::const_buffer& b = c.bufs[c.first + i];
      iov_[i].iov_base = const_cast<void*>(b.data());
      iov_[i].iov_len = b.size();
    }
    msghdr m{};
    m.msg_iov = iov_.data();
    m.msg_iovlen = count;
    const ssize_t n = sendmsg_some(c.fd, m);
    if (n < 0) {
      if (would_block_now()) {
        c.write_blocked = true;  // on_ready resumes at the EPOLLOUT edge
        return;
      }
      // The server is gone (a reset, most likely after its FIN). Replies it sent before
      // may still be queued here: read them out to the end first, so that they reach their
      // clients and only the commands truly in flight fail (read_now fails it).
      c.peer_closed = true;
      read_now(c);
      if (c.open) fail(c, true);
      return;
    }
    advance_buffers(c.bufs, c.first, static_cast<size_t>(n));
    // (Empty buffers left at the front would make the next sendmsg write nothing for ever.)
    while (c.first < c.bufs.size() && c.bufs[c.first].size() == 0) ++c.first;
  }
  written(c);
}

void upstream::written(conn& c) {
  c.writing = false;
  c.bufs.clear();
  const std::vector<shared_link::owner> owners = c.core.written_owners();
  c.core.output_done();
  for (shared_link::owner o : owners) {
    client_session* s = session_of(o);
    s->core().link_output_done(c.backend);
    s->release_op();
    if (!s->closing()) s->pump();
  }
  // More bytes may have come in meanwhile.
  if (c.open && c.core.has_output()) {
    c.bufs.clear();
    for (const out_span& sp : c.core.take_output()) c.bufs.emplace_back(sp.data, sp.size);
    c.first = 0;
    c.writing = true;
    write_now(c);
  }
  if (c.open && c.maybe_ready) read_now(c);
}

void upstream::read_now(conn& c) {
  // Read until a short read; replies go to their sessions, which then write to their
  // clients (pump) once per read, not once per reply.
  // The sessions given replies, each once (a member's capacity, reused: this runs once
  // per read; swapped out in case a session's pump reaches another read).
  std::vector<client_session*> touched;
  touched.swap(touched_);
  touched.clear();
  int64_t read_us = -1;  // the clock, read once (session latency, progress)
  bool again = true;
  // The connection is dead (EOF, an error, a reply that does not parse): it fails once
  // the replies read before are on their way to their clients.
  bool dead = false;
  while (again && c.open) {
    auto [p, cap] = c.core.read_buffer();
    const ssize_t r = recv_some(c.fd, p, cap);
    if (r < 0 && would_block_now()) {
      c.maybe_ready = false;
      break;
    }
    if (r <= 0) {  // the server closed it, or an error
      dead = true;
      break;
    }
    const size_t got = static_cast<size_t>(r);
    if (read_us < 0) {
      read_us = std::chrono::duration_cast<std::chrono::microseconds>(
                    std::chrono::steady_clock::now().time_since_epoch())
                    .count();
    }
    c.progress_ms = read_us / 1000;  // (the worker's now_ms(): the same clock, in ms)
    const bool ok = c.core.on_data(got, [&](shared_link::owner o, std::string_view reply,
                                            const reply_info& info) {
      client_session* s = session_of(o);
      if (std::find(touched.begin(), touched.end(), s) == touched.end()) touched.push_back(s);
      s->core().on_link_reply(c.backend, reply, info, read_us);
      return s->core().link_refused(c.backend);
    });
    if (!ok) {
      dead = true;
      break;
    }
    // A short read drains the socket, unless the server hung up: the bytes and the FIN
    // came in one edge, and the FIN (recv's 0) is read only by reading on.
    again = got == cap || c.peer_closed;
    if (!again) c.maybe_ready = false;
  }
  // A dead connection is not adopted by a client that pins while its replies go out.
  if (dead) c.peer_closed = true;
  // While the replies go out, a client among them that pins does not take this
  // connection: the next one's CLIENT SETNAME reply would name it (set_named_by below).
  c.delivering = true;
  for (client_session* s : touched) {
    if (s->core().take_link_named(c.backend)) {
      // Its CLIENT SETNAME named this connection: a name it gave another one is cleared
      // there (a client has one name).
      for (auto& o : conns_) {
        if (o.get() != &c && o->core.named_by() == s) o->core.clear_name();
      }
      c.core.set_named_by(s);
      schedule();
    }
    s->core().after_link_replies(c.backend);
    if (!s->closing()) s->pump();
  }
  c.delivering = false;
  if (touched_.empty()) touched_.swap(touched);
  if (dead) {
    if (c.open) fail(c, true);
    return;
  }
  // A handshake that failed: nobody joins this connection; it closes once drained.
  if (c.open && c.core.bad() && c.core.idle()) {
    fail(c, true);
    return;
  }
}

void upstream::fail(conn& c, bool was_open) {
  if (c.open) w_.shared_closed(c.backend);
  c.open = false;
  c.write_blocked = false;
  c.writing = false;
  c.bufs.clear();
  asio::error_code ignored;
  c.sock.close(ignored);
  close_fd(c);
  const shared_link::failure f = c.core.on_failed();
  std::vector<std::pair<client_session*, size_t>> waiting;
  waiting.swap(c.waiting);
  // Buffers first (the bytes are gone with the connection), then the replies due: "the
  // command may or may not have run"; after a protocol error, "it did not run", and it
  // goes again.
  for (shared_link::owner o : f.batched) {
    client_session* s = session_of(o);
    s->core().link_output_done(c.backend);
    s->release_op();
  }
  for (shared_link::owner o : f.due) {
    client_session* s = session_of(o);
    s->core().on_link_failed(c.backend, true, f.after_protocol_error);
    if (!s->closing()) s->pump();
  }
  // Sessions that waited for a connect that failed: their commands wait like any for a
  // backend that is down.
  for (auto [s, b] : waiting) {
    if (s->closing()) continue;
    s->core().on_link_failed(b, was_open);
    s->pump();
  }
  for (shared_link::owner o : f.batched) {
    client_session* s = session_of(o);
    if (!s->closing()) s->pump();
  }
}

}  // namespace respfence::proxy

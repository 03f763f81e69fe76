#include "proxy/upstream/upstream.hpp"

#include <algorithm>
#include <span>

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
  }
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
  conns_.push_back(std::make_unique<conn>(w_.io(), b, key, index));
  return *conns_.back();
}

void upstream::submit(client_session* s, size_t b) {
  dirty_.emplace_back(s, b);
  schedule();
}

void upstream::schedule() {
  if (posted_ || closed_) return;
  posted_ = true;
  // After the handlers already queued (other clients' reads): one write carries them all.
  asio::post(w_.io(), [this] {
    posted_ = false;
    flush();
  });
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
    if (c->backend != b || !c->open || c->writing || !c->core.idle() || c->core.bad() ||
        !c->waiting.empty() || !(c->core.key() == key) || c->core.named_by() != nullptr) {
      continue;
    }
    // An extra one first: the usual ones stay for the clients that share.
    if (best == nullptr || (best->index < per_key_ && c->index >= per_key_)) best = c.get();
  }
  if (best == nullptr) return false;
  conn& c = *best;
  ++c.gen;  // its pending waits are stale
  c.read_armed = c.write_armed = false;
  asio::error_code ignored;
  c.sock.cancel(ignored);
  out = std::move(c.sock);
  c.sock = asio::generic::stream_protocol::socket(w_.io());
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
    c.open = true;
    c.maybe_ready = true;
    c.progress_ms = w_.now_ms();
    w_.shared_opened(c.backend);
    tune_socket(c.sock);
    c.core.on_connected();
    for (auto [s, b] : c.waiting) dirty_.emplace_back(s, b);
    c.waiting.clear();
    flush();  // the handshake, and what waited for the connection
    if (c.open && !c.read_armed) arm_read(c);
  });
}

void upstream::write_now(conn& c) {
  asio::error_code ec;
  size_t n = c.sock.write_some(
      std::span<const asio::const_buffer>(c.bufs.data() + c.first, c.bufs.size() - c.first), ec);
  if (would_block(ec)) {
    arm_write(c);
    return;
  }
  if (ec) {
    fail(c, true);
    return;
  }
  advance_buffers(c.bufs, c.first, n);
  if (c.first < c.bufs.size()) {
    arm_write(c);
    return;
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
  if (c.open && !c.read_armed && c.maybe_ready) read_now(c);
}

void upstream::read_now(conn& c) {
  // Read until a short read; replies go to their sessions, which then write to their
  // clients (pump) once per read, not once per reply.
  std::vector<client_session*> touched;
  bool again = true;
  while (again && c.open) {
    auto [p, cap] = c.core.read_buffer();
    asio::error_code ec;
    const size_t got = c.sock.read_some(asio::buffer(p, cap), ec);
    if (would_block(ec)) {
      c.maybe_ready = false;
      break;
    }
    if (ec) {
      fail(c, true);
      return;
    }
    if (got > 0) c.progress_ms = w_.now_ms();
    const bool ok = c.core.on_data(got, [&](shared_link::owner o, std::string_view reply,
                                            const reply_info& info) {
      client_session* s = session_of(o);
      if (std::find(touched.begin(), touched.end(), s) == touched.end()) touched.push_back(s);
      s->core().on_link_reply(c.backend, reply, info);
    });
    if (!ok) {
      fail(c, true);
      return;
    }
    again = got == cap;
    if (!again) c.maybe_ready = false;
  }
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
  // A handshake that failed: nobody joins this connection; it closes once drained.
  if (c.open && c.core.bad() && c.core.idle()) {
    fail(c, true);
    return;
  }
  if (c.open && !c.read_armed) arm_read(c);
}

void upstream::arm_read(conn& c) {
  c.read_armed = true;
  c.sock.async_wait(asio::socket_base::wait_read, [this, &c, gen = c.gen](const asio::error_code& ec) {
    if (gen != c.gen || closed_) return;
    c.read_armed = false;
    if (ec || !c.open) return;
    c.maybe_ready = true;
    read_now(c);
  });
}

void upstream::arm_write(conn& c) {
  c.write_armed = true;
  c.sock.async_wait(asio::socket_base::wait_write, [this, &c, gen = c.gen](const asio::error_code& ec) {
    if (gen != c.gen || closed_) return;
    c.write_armed = false;
    if (ec || !c.open) return;
    write_now(c);
  });
}

void upstream::fail(conn& c, bool was_open) {
  if (c.open) w_.shared_closed(c.backend);
  c.open = false;
  ++c.gen;
  c.read_armed = c.write_armed = false;
  c.writing = false;
  c.bufs.clear();
  asio::error_code ignored;
  c.sock.close(ignored);
  const shared_link::failure f = c.core.on_failed();
  std::vector<std::pair<client_session*, size_t>> waiting;
  waiting.swap(c.waiting);
  // Buffers first (the bytes are gone with the connection), then the replies due: "the
  // command may or may not have run".
  for (shared_link::owner o : f.batched) {
    client_session* s = session_of(o);
    s->core().link_output_done(c.backend);
    s->release_op();
  }
  for (shared_link::owner o : f.due) {
    client_session* s = session_of(o);
    s->core().on_link_failed(c.backend, true);
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

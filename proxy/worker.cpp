#include "proxy/worker.hpp"

#include <algorithm>
#include <chrono>

#include <malloc.h>

#include "proxy/client_session.hpp"
#include "proxy/log.hpp"
#include "proxy/runtime.hpp"
#include "proxy/socket_util.hpp"

// glibc's heap only: under a sanitizer, malloc is the sanitizer's and malloc_trim would
// walk an arena nobody set up (ASan: SEGV in mtrim).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define RESPFENCE_OWN_MALLOC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define RESPFENCE_OWN_MALLOC 1
#endif
#endif

namespace respfence::proxy {

namespace {

void trim_heap() {
#ifndef RESPFENCE_OWN_MALLOC
  ::malloc_trim(0);
#endif
}

constexpr auto k_tick = std::chrono::milliseconds(10);

// Copies what the sessions read of a backend's state; true if a decision may change.
bool apply(backend_view& v, const backend_snapshot& s) {
  const bool changed = v.state != s.state || v.echo_loading_safe != s.echo_loading_safe ||
                       v.probe_round != s.probe_round;
  v.state = s.state;
  v.echo_loading_safe = s.echo_loading_safe;
  v.probe_round = s.probe_round;
  if (!s.loading_error.empty()) v.loading_error = s.loading_error;
  return changed;
}
}  // namespace

worker::worker(runtime& rt, size_t index)
    : rt_(rt),
      index_(index),
      poller_(io_),
      guard_(asio::make_work_guard(io_)),
      ticker_(io_),
      policy_(rt.current_policy()),
      router_(rt.router()),
      stats_(backend_registry::max_backends),
      upstream_(*this, rt.shared_connections(), rt.connect_timeout_ms()) {
  // The clients a batch read have their commands written at its end, in one write per
  // shared connection.
  poller_.set_after_batch([this] { upstream_.after_batch(); });
  for (size_t b = 0; b < rt.registry().size(); ++b) ensure_view(b);
}

void worker::ensure_view(size_t b) {
  while (views_.size() <= b) {
    const size_t i = views_.size();
    views_.emplace_back();
    views_[i].name = rt_.registry().config(i).name;
    apply(views_[i], rt_.registry().snapshot(i));
  }
}

const asio::generic::stream_protocol::endpoint& worker::endpoint(size_t b) const {
  return rt_.endpoint(b);
}

void worker::set_router(std::shared_ptr<const routing::router> r) {
  if (r->backends() > 0) ensure_view(r->backends() - 1);
  router_ = std::move(r);
  // Held commands are routed again with the new map.
  resume_watchers();
}

size_t worker::backend_for(std::string_view host_port) {
  const size_t b = rt_.add_backend(std::string(host_port));
  if (b != SIZE_MAX) ensure_view(b);
  return b;
}

void worker::topology_changed() { rt_.refresh_topology(); }

worker::~worker() { join(); }

void worker::start() {
  thread_ = std::thread([this] {
    tick();
    io_.run();
  });
}

void worker::join() {
  if (thread_.joinable()) thread_.join();
}

void worker::stop() {
  guard_.reset();
  io_.stop();
}

int64_t worker::now_ms() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void worker::note_pause(int64_t until_ms) { rt_.note_pause(until_ms); }

bool worker::pause_active(int64_t now) const { return rt_.pause_active(now); }

void worker::tick() {
  ticker_.expires_after(k_tick);
  ticker_.async_wait([this](const asio::error_code& ec) {
    if (ec) return;
    if (!watchers_.empty()) {
      const int64_t now = now_ms();
      const std::vector<client_session*> ws = watchers_;
      for (client_session* s : ws) {
        if (std::find(watchers_.begin(), watchers_.end(), s) == watchers_.end()) continue;
        s->core().tick(now);
        s->pump();
      }
    }
    // About once a second, sessions that moved no bytes since the last sweep give their
    // buffers back: an idle connection then costs a few hundred bytes, not 16 KB+.
    if (++ticks_ % 100 == 0) {
      int64_t pinned = 0;
      for (auto& s : sessions_) {
        if (!s->core().touched_since(true)) {
          s->core().release_buffers();
          // A client quiet for a second, with no connection state left, gives its own
          // backend connection back and shares again.
          if (s->core().maybe_unpin()) s->pump();
        }
        if (s->core().pinned_links() > 0) ++pinned;
      }
      stats_.pinned_clients.store(pinned, std::memory_order_relaxed);
      upstream_.sweep(now_ms());
      if (churned_) {
        // Clients came and went: give the pages their buffers left free back to the
        // system (glibc keeps them in its arenas otherwise, and RSS stays at the peak).
        churned_ = false;
        trim_heap();
      }
    }
    tick();
  });
}

void worker::adopt(asio::generic::stream_protocol::socket s) {
  if (shutting_down_) return;
  session_core::limits lim;
  lim.shared = limits_.shared;
  lim.client_output = limits_.client_output;
  lim.input_window = limits_.input_window;
  // The client socket leaves Asio for the worker's own poller (see socket_poller.hpp).
  tune_socket(s);
  asio::error_code ec;
  const int fd = s.release(ec);
  if (ec) return;
  auto sess = std::make_unique<client_session>(*this, fd, lim, rt_.connect_timeout_ms(),
                                               next_session_id_++);
  client_session* raw = sess.get();
  if (!poller_.add(fd, raw)) return;  // refused: the session closes the socket
  raw->slot = sessions_.size();
  // A fence already up holds everything this new client sends until it lowers.
  for (const fence_here& f : fences_) raw->core().fence_begin(f.id, f.backends);
  sessions_.push_back(std::move(sess));
  stats_.clients.store(static_cast<int64_t>(sessions_.size()), std::memory_order_relaxed);
  raw->start();
}

void worker::remove(client_session* s) {
  unwatch(&s->core());
  upstream_.forget(s);
  const size_t i = s->slot;
  if (i >= sessions_.size() || sessions_[i].get() != s) return;
  if (i + 1 != sessions_.size()) {
    std::swap(sessions_[i], sessions_.back());
    sessions_[i]->slot = i;
  }
  for (auto& o : origins_) {
    if (o.session == s) o.session = nullptr;
  }
  sessions_.pop_back();
  churned_ = true;
  stats_.clients.store(static_cast<int64_t>(sessions_.size()), std::memory_order_relaxed);
  if (shutting_down_ && sessions_.empty()) rt_.worker_idle(index_);
}

void worker::set_backend(size_t b, const backend_snapshot& snap) {
  ensure_view(b);
  if (apply(views_[b], snap)) resume_watchers();
}

void worker::set_policy(std::shared_ptr<const policy::policy_table> p) {
  policy_ = std::move(p);
  // Held commands are decided again under the new policy.
  resume_watchers();
}

void worker::resume_watchers() {
  const std::vector<client_session*> ws = watchers_;
  for (client_session* s : ws) {
    if (std::find(watchers_.begin(), watchers_.end(), s) == watchers_.end()) continue;
    s->core().resume();
    s->pump();
  }
}

client_session* worker::shell_of(session_core* s) const {
  return static_cast<client_session*>(s->user());
}

void worker::watch(session_core* s) {
  client_session* c = shell_of(s);
  if (std::find(watchers_.begin(), watchers_.end(), c) == watchers_.end()) watchers_.push_back(c);
}

void worker::unwatch(session_core* s) {
  client_session* c = shell_of(s);
  watchers_.erase(std::remove(watchers_.begin(), watchers_.end(), c), watchers_.end());
}

bool worker::queue_admit(size_t b, size_t bytes) {
  const auto& p = policy_->config();
  return rt_.registry().queue_admit(b, bytes, p.queue_max, p.queue_max_bytes);
}

void worker::queue_release(size_t b, size_t bytes) { rt_.registry().queue_release(b, bytes); }

uint64_t worker::report_loading(size_t b) {
  // No state changes here: the prober checks, and its verdict comes back as a snapshot.
  return rt_.registry().loading_reply(b);
}

void worker::report_unreachable(size_t b) {
  views_[b].state = policy::backend_state::down;
  rt_.registry().unreachable(b);
}

void worker::bump_epoch(size_t b, const char* why) { rt_.registry().bump_epoch(b, why); }

void worker::flush_sent(size_t b) { rt_.registry().flush_sent(b); }

void worker::flush_unsent(size_t b) { rt_.registry().flush_unsent(b); }

void worker::record_latency_us(uint64_t us) {
  size_t i = 0;
  while (i < k_latency_buckets_us.size() && us > k_latency_buckets_us[i]) ++i;
  bump(stats_.latency[i]);
  bump(stats_.latency_sum_us, us);
  bump(stats_.latency_count);
}

// ---------------------------------------------------------------- flush fence
//
// The flushing session's worker is the origin. It raises the fence on every worker
// (itself synchronously, the others by message); each worker asks its sessions what
// they accepted before the flush, and reports back when all of that is answered. Then
// the flush goes; when it is answered the origin lowers the fence everywhere. Nothing
// of this touches the per-command path except a plain read of fence_level.

uint64_t worker::begin_flush(session_core* s, const std::vector<size_t>& backends) {
  const uint64_t id = rt_.next_fence_id();
  fence_origin o{id, shell_of(s), rt_.worker_count(), std::make_unique<asio::steady_timer>(io_)};
  const uint32_t limit = policy_->config().queue_timeout_ms;
  o.timeout->expires_after(std::chrono::milliseconds(limit));
  o.timeout->async_wait([this, id](const asio::error_code& ec) {
    if (ec) return;
    for (auto& f : origins_) {
      if (f.id != id || f.workers_pending == 0) continue;
      // A client that does not read its replies must not hold every flush forever.
      log::warn("fence_drain_timeout", {{"fence", id}, {"workers_pending", f.workers_pending}});
      f.workers_pending = 0;
      ready_origin(f);
    }
  });
  origins_.push_back(std::move(o));
  log::debug("fence_raise", {{"fence", id}, {"backends", backends.size()}});
  for (size_t w = 0; w < rt_.worker_count(); ++w) {
    if (w == index_) {
      fence_raise(id, backends, index_);
    } else {
      worker& other = rt_.worker_at(w);
      asio::post(other.io(), [&other, id, backends, origin = index_] {
        other.fence_raise(id, backends, origin);
      });
    }
  }
  return id;
}

void worker::fence_raise(uint64_t id, const std::vector<size_t>& backends, size_t origin) {
  for (size_t b : backends) ++views_[b].fence_level;
  fence_here f{id, backends, origin, 0};
  for (auto& s : sessions_) {
    if (!s->core().fence_begin(id, backends)) ++f.pending;
  }
  const bool drained = f.pending == 0;
  fences_.push_back(std::move(f));
  if (drained) report_drained(id, origin);
}

void worker::report_drained(uint64_t id, size_t origin) {
  // Always by message, even to this worker: the flushing session may be mid-decision.
  worker& o = rt_.worker_at(origin);
  asio::post(o.io(), [&o, id] { o.fence_worker_drained(id); });
}

void worker::session_drained(uint64_t id) {
  for (auto& f : fences_) {
    if (f.id != id || f.pending == 0) continue;
    if (--f.pending == 0) report_drained(id, f.origin);
    return;
  }
}

void worker::fence_worker_drained(uint64_t id) {
  for (auto& o : origins_) {
    if (o.id != id || o.workers_pending == 0) continue;
    if (--o.workers_pending == 0) ready_origin(o);
    return;
  }
}

void worker::ready_origin(fence_origin& o) {
  o.timeout->cancel();
  if (o.session != nullptr) {
    client_session* s = o.session;
    s->core().fence_ready(o.id);
    s->pump();
  }
}

void worker::flush_done(uint64_t id) {
  origins_.erase(std::remove_if(origins_.begin(), origins_.end(),
                                [id](const fence_origin& o) { return o.id == id; }),
                 origins_.end());
  for (size_t w = 0; w < rt_.worker_count(); ++w) {
    worker& other = rt_.worker_at(w);
    asio::post(other.io(), [&other, id] { other.fence_lower(id); });
  }
}

void worker::fence_lower(uint64_t id) {
  for (auto it = fences_.begin(); it != fences_.end(); ++it) {
    if (it->id != id) continue;
    for (size_t b : it->backends) --views_[b].fence_level;
    fences_.erase(it);
    for (auto& s : sessions_) s->core().fence_end(id);
    resume_watchers();
    return;
  }
}

// ---------------------------------------------------------------- shutdown

void worker::begin_shutdown() {
  shutting_down_ = true;
  if (sessions_.empty()) {
    rt_.worker_idle(index_);
    return;
  }
  std::vector<client_session*> all;
  for (auto& s : sessions_) all.push_back(s.get());
  for (client_session* s : all) {
    s->core().begin_shutdown();
    s->pump();
  }
}

}  // namespace respfence::proxy

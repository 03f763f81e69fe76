#include "proxy/backend_registry.hpp"

#include <algorithm>

#include "proxy/resp/errors.hpp"
#include "proxy/log.hpp"

namespace respfence::proxy {

using policy::backend_state;

backend_registry::backend_registry(const std::vector<policy::backend_config>& backends,
                                   change_fn on_change, learned_fn on_learned)
    : on_change_(std::move(on_change)), on_learned_(std::move(on_learned)) {
  b_.reserve(max_backends);
  for (const auto& c : backends) add(c);
}

size_t backend_registry::add(const policy::backend_config& cfg, bool* added) {
  std::lock_guard<std::mutex> lock(add_mu_);
  if (added) *added = false;
  const size_t n = count_.load(std::memory_order_relaxed);
  for (size_t i = 0; i < n; ++i) {
    if (b_[i]->cfg.address == cfg.address) return i;
  }
  if (n >= max_backends) return SIZE_MAX;
  auto b = std::make_unique<backend>();
  b->cfg = cfg;
  b_.push_back(std::move(b));
  count_.store(n + 1, std::memory_order_release);
  if (added) *added = true;
  return n;
}

backend_snapshot backend_registry::snapshot_locked(const backend& b) const {
  return backend_snapshot{b.sm.state(), b.echo_loading_safe, b.loading_error, b.round_done};
}

backend_snapshot backend_registry::snapshot(size_t i) const {
  std::lock_guard<std::mutex> lock(b_[i]->mu);
  return snapshot_locked(*b_[i]);
}

void backend_registry::apply(size_t i, backend& b, policy::transition t, const char* why) {
  if (!t.changed()) return;
  const auto now = std::chrono::steady_clock::now();
  b.state_since = now;
  if (t.to == backend_state::loading) b.loading_since = now;
  if (t.from == backend_state::loading) {
    b.loading_seconds += std::chrono::duration<double>(now - b.loading_since).count();
  }
  log::info("backend_state", {{"backend", b.cfg.name},
                              {"from", policy::to_string(t.from)},
                              {"to", policy::to_string(t.to)},
                              {"reason", why}});
  if (t.loading_completed()) {
    // A loading phase ended: the dataset is a new generation (design.md §7).
    const uint64_t e = b.epoch.fetch_add(1, std::memory_order_acq_rel) + 1;
    log::info("flush_epoch", {{"backend", b.cfg.name}, {"epoch", e}, {"reason", "loading_completed"}});
  }
  on_change_(i, snapshot_locked(b));
}

void backend_registry::probe_connected(size_t i) {
  backend& b = *b_[i];
  std::lock_guard<std::mutex> lock(b.mu);
  apply(i, b, b.sm.on_probe_connected(), "probe_connected");
}

uint64_t backend_registry::probe_begin(size_t i) {
  return b_[i]->rounds_begun.fetch_add(1, std::memory_order_acq_rel) + 1;
}

void backend_registry::probe_done(size_t i, backend& b, uint64_t round, policy::transition t,
                                  const char* why) {
  b.round_done = round;
  // A probe that began before the LOADING answer was reported says nothing about it:
  // the wait goes on for the next one.
  const bool wanted = b.confirm_wanted && round > b.confirm_after;
  if (wanted) b.confirm_wanted = false;
  if (t.changed()) {
    apply(i, b, t, why);
  } else if (wanted) {
    on_change_(i, snapshot_locked(b));
  }
}

void backend_registry::probe_answer(size_t i, const policy::probe_info& info, uint64_t round) {
  backend& b = *b_[i];
  std::lock_guard<std::mutex> lock(b.mu);
  b.last = info;
  b.last_error.clear();
  if (!info.server_name.empty()) {
    // The server's own name goes into the LOADING text the proxy sends for it.
    std::string name = info.server_name;
    if (name == "redis") name = "Redis";
    if (name == "valkey") name = "Valkey";
    const std::string text = err::loading(name);
    if (text != b.loading_error) {
      b.loading_error = text;
      on_change_(i, snapshot_locked(b));
    }
  }
  const policy::epoch_bump bump =
      b.tracker.on_probe(info, b.proxy_flushes.load(std::memory_order_relaxed));
  if (bump.n > 0) {
    const uint64_t e = b.epoch.fetch_add(bump.n, std::memory_order_acq_rel) + bump.n;
    log::info("flush_epoch", {{"backend", b.cfg.name}, {"epoch", e}, {"reason", bump.reason}});
  }
  probe_done(i, b, round, b.sm.on_probe_answer(info.loading),
             info.loading ? "info_loading" : "info_ready");
}

void backend_registry::probe_busy(size_t i, const std::string& why, uint64_t round) {
  backend& b = *b_[i];
  std::lock_guard<std::mutex> lock(b.mu);
  b.last_error = why;
  probe_done(i, b, round, b.sm.on_probe_busy(), "info_busy");
}

void backend_registry::probe_blind(size_t i, const std::string& why, uint64_t round) {
  backend& b = *b_[i];
  std::lock_guard<std::mutex> lock(b.mu);
  if (b.last_error != why) {
    log::warn("probe_refused", {{"backend", b.cfg.name},
                                {"error", why},
                                {"hint", "set [[backend]] username/password for the prober"}});
  }
  b.last_error = why;
  probe_done(i, b, round, b.sm.on_probe_answer(false), "info_refused");
}

void backend_registry::probe_failed(size_t i, const std::string& why) {
  probe_error(i, why, false);
}

void backend_registry::probe_timed_out(size_t i, const std::string& why) {
  probe_error(i, why, true);
}

void backend_registry::probe_error(size_t i, const std::string& why, bool timed_out) {
  backend& b = *b_[i];
  std::lock_guard<std::mutex> lock(b.mu);
  if (b.last_error != why) {
    log::warn("backend_error", {{"backend", b.cfg.name}, {"error", why}});
  }
  b.last_error = why;
  if (timed_out) {
    apply(i, b, b.sm.on_probe_timeout(), "probe_timeout");
  } else {
    apply(i, b, b.sm.on_probe_failed(), "probe_failed");
  }
}

void backend_registry::learned(size_t i, const policy::learned_commands& cmds) {
  {
    backend& b = *b_[i];
    std::lock_guard<std::mutex> lock(b.mu);
    const bool echo = cmds.echo_loading_safe();
    if (echo != b.echo_loading_safe) {
      b.echo_loading_safe = echo;
      on_change_(i, snapshot_locked(b));
    }
    log::info("commands_learned", {{"backend", b.cfg.name},
                                   {"commands", cmds.entries.size()},
                                   {"echo_loading_safe", echo ? "true" : "false"}});
  }
  on_learned_(i, cmds);
}

uint64_t backend_registry::loading_reply(size_t i) {
  backend& b = *b_[i];
  uint64_t after = 0;
  {
    std::lock_guard<std::mutex> lock(b.mu);
    // A probe already under way may have been answered before the server began to
    // load: only one that begins from now on says whether it loads.
    after = b.rounds_begun.load(std::memory_order_acquire);
    b.confirm_after = b.confirm_wanted ? std::max(b.confirm_after, after) : after;
    b.confirm_wanted = true;
  }
  wake(i);
  return after;
}

void backend_registry::unreachable(size_t i) {
  backend& b = *b_[i];
  {
    std::lock_guard<std::mutex> lock(b.mu);
    apply(i, b, b.sm.on_probe_failed(), "connect_failed");
  }
  wake(i);
}

void backend_registry::bump_epoch(size_t i, const char* why) {
  backend& b = *b_[i];
  const uint64_t e = b.epoch.fetch_add(1, std::memory_order_acq_rel) + 1;
  log::info("flush_epoch", {{"backend", b.cfg.name}, {"epoch", e}, {"reason", why}});
}

bool backend_registry::queue_admit(size_t i, size_t bytes, uint64_t max_count, uint64_t max_bytes) {
  backend& b = *b_[i];
  const int64_t n = b.queued.fetch_add(1, std::memory_order_relaxed) + 1;
  const int64_t nb =
      b.queued_bytes.fetch_add(static_cast<int64_t>(bytes), std::memory_order_relaxed) +
      static_cast<int64_t>(bytes);
  if (static_cast<uint64_t>(n) > max_count || static_cast<uint64_t>(nb) > max_bytes) {
    queue_release(i, bytes);
    return false;
  }
  return true;
}

void backend_registry::queue_release(size_t i, size_t bytes) {
  backend& b = *b_[i];
  b.queued.fetch_sub(1, std::memory_order_relaxed);
  b.queued_bytes.fetch_sub(static_cast<int64_t>(bytes), std::memory_order_relaxed);
}

backend_status backend_registry::status(size_t i) const {
  const backend& b = *b_[i];
  std::lock_guard<std::mutex> lock(b.mu);
  backend_status s;
  s.name = b.cfg.name;
  s.address = b.cfg.address;
  s.state = b.sm.state();
  s.loading_perc = s.state == backend_state::loading ? b.last.loading_perc : 0;
  s.loading_eta_s = s.state == backend_state::loading ? b.last.loading_eta_s : 0;
  s.flush_epoch = b.epoch.load(std::memory_order_acquire);
  s.queued = b.queued.load(std::memory_order_relaxed);
  s.queued_bytes = b.queued_bytes.load(std::memory_order_relaxed);
  s.loading_seconds_total = b.loading_seconds;
  if (s.state == backend_state::loading) {
    s.loading_seconds_total +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - b.loading_since).count();
  }
  s.run_id = b.last.run_id;
  s.last_error = b.last_error;
  s.retired = b.retired.load(std::memory_order_acquire);
  s.cluster_state = s.state == backend_state::ready ? b.last.cluster_state : std::string();
  s.state_since_s = std::chrono::duration_cast<std::chrono::seconds>(
                        std::chrono::steady_clock::now() - b.state_since)
                        .count();
  return s;
}

void backend_registry::set_retired(size_t i, bool retired) {
  backend& b = *b_[i];
  if (b.retired.exchange(retired, std::memory_order_acq_rel) == retired) return;
  log::info(
      retired ? "backend_retired" : "backend_returned",
      {{"backend", b.cfg.name},
       {"reason", retired ? "not in the cluster topology" : "in the cluster topology again"}});
  // A returning node's prober starts again at once.
  if (!retired) wake(i);
}

void backend_registry::wait(size_t i, std::chrono::milliseconds d) {
  backend& b = *b_[i];
  std::unique_lock<std::mutex> lock(b.mu);
  b.cv.wait_for(lock, d, [&] { return b.woken || stopping_.load(); });
  b.woken = false;
}

void backend_registry::wake(size_t i) {
  backend& b = *b_[i];
  {
    std::lock_guard<std::mutex> lock(b.mu);
    b.woken = true;
  }
  b.cv.notify_all();
}

void backend_registry::stop() {
  stopping_.store(true);
  for (size_t i = 0; i < size(); ++i) wake(i);
}

}  // namespace respfence::proxy

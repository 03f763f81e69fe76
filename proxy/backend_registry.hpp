#pragma once
// The one place where each backend's state changes (design.md §4), and its flush epoch
// (design.md §7). Probers and sessions report events here, from any thread; every change is
// then pushed to the workers, which keep their own copy (backend_view) so that the
// per-command path reads plain memory, never a lock or a shared atomic.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "policy/backend_state.hpp"
#include "policy/config.hpp"
#include "policy/loading_policy.hpp"

namespace respfence::proxy {

struct backend_snapshot {
  policy::backend_state state = policy::backend_state::connecting;
  bool echo_loading_safe = true;
  std::string loading_error;
  // The prober's latest completed probe, numbered by when it began. A -LOADING reply is
  // confirmed (or not) only by a probe that began after the reply was reported.
  uint64_t probe_round = 0;
};

struct backend_status {
  std::string name;
  std::string address;
  policy::backend_state state = policy::backend_state::connecting;
  double loading_perc = 0;
  int64_t loading_eta_s = 0;
  uint64_t flush_epoch = 0;
  int64_t queued = 0;
  int64_t queued_bytes = 0;
  double loading_seconds_total = 0;
  std::string run_id;
  std::string last_error;
  bool retired = false;
  std::string cluster_state;  // cluster nodes: CLUSTER INFO's cluster_state
  int64_t state_since_s = 0;  // seconds since the state last changed (or since added)
};

class backend_registry {
 public:
  using change_fn = std::function<void(size_t backend, const backend_snapshot&)>;
  using learned_fn = std::function<void(size_t backend, const policy::learned_commands&)>;

  backend_registry(const std::vector<policy::backend_config>& backends, change_fn on_change,
                   learned_fn on_learned);

  // Backends only ever get added (cluster nodes that appear), never removed: indices stay
  // valid for the life of the process. Capacity is fixed so that readers on other
  // threads never see the vector move.
  static constexpr size_t max_backends = 256;
  size_t size() const { return count_.load(std::memory_order_acquire); }
  // Adds a backend (or finds it by address); returns its index, or SIZE_MAX when full.
  size_t add(const policy::backend_config& cfg, bool* added = nullptr);
  const policy::backend_config& config(size_t b) const { return b_[b]->cfg; }

  // Prober events. A probe begins (its round number is returned) and then ends with an
  // answer, a -BUSY answer, or a failure.
  uint64_t probe_begin(size_t b);
  void probe_connected(size_t b);
  void probe_answer(size_t b, const policy::probe_info& info, uint64_t round);
  void probe_busy(size_t b, const std::string& why, uint64_t round);
  // The server answers, but will not tell the prober its state (-NOAUTH: the prober has
  // no password; -NOPERM: its user may not run INFO): taken as ready, and said in the log.
  // Clients then see the server's own -LOADING answers, as direct.
  void probe_blind(size_t b, const std::string& why, uint64_t round);
  void probe_failed(size_t b, const std::string& why);
  // The probe's connection is up but INFO got no answer within health.timeout_ms.
  void probe_timed_out(size_t b, const std::string& why);
  void learned(size_t b, const policy::learned_commands& cmds);
  // Cluster mode: a node the topology no longer uses (it left, or failed and was replaced)
  // is retired: not probed, not counted by /readyz. Its index stays valid; it returns to
  // service if the topology names it again.
  void set_retired(size_t b, bool retired);
  bool retired(size_t b) const { return b_[b]->retired.load(std::memory_order_acquire); }
  // Session events. A reply said LOADING: the state does not change on that alone (a
  // script may answer anything); the prober checks at once. Returns the probe round
  // after which the prober's verdict is known (snapshot.probe_round greater than it).
  uint64_t loading_reply(size_t b);
  void unreachable(size_t b);

  // Flush epochs.
  void bump_epoch(size_t b, const char* why);
  uint64_t epoch(size_t b) const { return b_[b]->epoch.load(std::memory_order_acquire); }
  void flush_sent(size_t b) { b_[b]->proxy_flushes.fetch_add(1, std::memory_order_relaxed); }
  void flush_unsent(size_t b) { b_[b]->proxy_flushes.fetch_sub(1, std::memory_order_relaxed); }

  // Queue bounds over all clients and threads (only the queueing path touches these).
  bool queue_admit(size_t b, size_t bytes, uint64_t max_count, uint64_t max_bytes);
  void queue_release(size_t b, size_t bytes);

  backend_status status(size_t b) const;
  backend_snapshot snapshot(size_t b) const;

  // The prober sleeps here between probes; a -LOADING reply or a failed connect wakes it.
  void wait(size_t b, std::chrono::milliseconds d);
  void wake(size_t b);
  void stop();
  bool stopping() const { return stopping_.load(); }

 private:
  struct backend {
    policy::backend_config cfg;
    mutable std::mutex mu;
    std::condition_variable cv;
    bool woken = false;
    policy::backend_state_machine sm;
    policy::flush_epoch_tracker tracker;
    policy::probe_info last;
    std::string loading_error = "-LOADING Redis is loading the dataset in memory\r\n";
    std::atomic<uint64_t> rounds_begun{0};
    uint64_t round_done = 0;
    bool confirm_wanted = false;  // a session waits for the verdict of a probe...
    uint64_t confirm_after = 0;   // ...whose round is past this one
    bool echo_loading_safe = true;
    std::string last_error;
    std::chrono::steady_clock::time_point loading_since{};
    // When the state last changed; a backend just added counts from then.
    std::chrono::steady_clock::time_point state_since = std::chrono::steady_clock::now();
    double loading_seconds = 0;
    std::atomic<uint64_t> epoch{0};
    std::atomic<bool> retired{false};
    std::atomic<uint64_t> proxy_flushes{0};
    std::atomic<int64_t> queued{0};
    std::atomic<int64_t> queued_bytes{0};
  };

  // With b.mu held: apply a transition, log it, and tell the workers.
  void apply(size_t i, backend& b, policy::transition t, const char* why);
  void probe_error(size_t i, const std::string& why, bool timed_out);
  // With b.mu held, after a probe ended: record its round, and tell the workers if a
  // session waits for that verdict (a state change has told them already).
  void probe_done(size_t i, backend& b, uint64_t round, policy::transition t, const char* why);
  backend_snapshot snapshot_locked(const backend& b) const;

  std::vector<std::unique_ptr<backend>> b_;
  std::atomic<size_t> count_{0};
  std::mutex add_mu_;
  change_fn on_change_;
  learned_fn on_learned_;
  std::atomic<bool> stopping_{false};
};

}  // namespace respfence::proxy

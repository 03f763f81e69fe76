#pragma once
// What a session needs from the thread it lives on: its view of each backend's state,
// the current policy, the clock, the shared queue bounds, and the flush fence. The worker
// implements it; unit tests implement it with plain fields.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "policy/backend_state.hpp"
#include "policy/loading_policy.hpp"
#include "proxy/session/pool_key.hpp"
#include "routing/router.hpp"

namespace respfence::proxy {

class session_core;

// This thread's copy of one backend's shared state, updated by messages from the prober.
struct backend_view {
  std::string name;
  policy::backend_state state = policy::backend_state::connecting;
  bool echo_loading_safe = true;
  std::string loading_error = "-LOADING Redis is loading the dataset in memory\r\n";
  uint32_t fence_level = 0;  // flush fences holding commands for this backend
  uint64_t probe_round = 0;  // the prober's latest completed probe (backend_snapshot)
};

enum class counter : uint8_t { forwarded, queued, rejected, rewritten, retried, expired, count_ };
const char* to_string(counter c);

class session_env {
 public:
  virtual ~session_env() = default;

  virtual const backend_view& view(size_t backend) const = 0;
  virtual const policy::policy_table& policy() const = 0;
  // The current routing (slots mode: fixed; cluster mode: replaced when the topology changes).
  virtual const routing::router& router() const = 0;
  virtual int64_t now_ms() const = 0;

  // Global queue bounds (queue_max, queue_max_bytes), over all clients and threads.
  virtual bool queue_admit(size_t backend, size_t bytes) = 0;
  virtual void queue_release(size_t backend, size_t bytes) = 0;
  // The session holds commands: call resume() when a backend's state changes or a fence
  // lifts, and tick() regularly so that deadlines pass.
  virtual void watch(session_core* s) = 0;
  virtual void unwatch(session_core* s) = 0;

  // Cluster mode: the backend at "host:port" (a node named by -MOVED/-ASK), added if the
  // proxy did not know it; SIZE_MAX if it cannot be. And: the topology looks stale.
  virtual size_t backend_for(std::string_view host_port) = 0;
  virtual void topology_changed() = 0;

  // A reply said LOADING: the prober checks at once. The state does not change until it
  // has; its verdict is known once view().probe_round passes the number returned.
  virtual uint64_t report_loading(size_t backend) = 0;
  // A connection to the backend could not be made.
  virtual void report_unreachable(size_t backend) = 0;

  // The flush fence (design.md §7). A session about to send a flush bumps the epochs, then
  // asks for the barrier: every session on every thread marks what it has accepted so
  // far, holds what comes after, and reports when the earlier commands are answered.
  // The env then calls fence_ready() on the flushing session, which sends the flush and
  // calls flush_done() when it is answered; that lifts the fence everywhere.
  virtual void bump_epoch(size_t backend, const char* why) = 0;
  // A flush is on its way to `backend` (the prober must not count it as someone else's).
  virtual void flush_sent(size_t backend) = 0;
  // ...and it was answered LOADING and goes again later: it did not run.
  virtual void flush_unsent(size_t backend) = 0;
  virtual uint64_t begin_flush(session_core* s, const std::vector<size_t>& backends) = 0;
  virtual void flush_done(uint64_t fence_id) = 0;
  virtual void session_drained(uint64_t fence_id) = 0;
  virtual bool fence_enabled() const = 0;

  virtual void count(size_t backend, counter c) = 0;
  // Shared mode: a client got a backend connection of its own.
  virtual void count_pin(pin_reason why) = 0;
  // A CLIENT PAUSE went to a backend (until_ms: when it ends; 0: CLIENT UNPAUSE). While
  // one may be in force, shared connections carry one client's commands at a time: a
  // paused write must not hold back the reads of other clients queued behind it.
  virtual void note_pause(int64_t until_ms) { (void)until_ms; }
  // A CLIENT PAUSE the proxy saw may be in force now.
  virtual bool pause_in_force() const { return false; }
  virtual void record_latency_us(uint64_t us) = 0;

  // Whether the servers want a password of a client that has not authenticated, as this
  // thread last saw it: a -NOAUTH answer to such a client says yes, any other answer no.
  // Yes once every backend has said yes (slots mode: a request's header comes before its
  // backend is known, and a refusal the server would not make is worse than a limit
  // missed); until then, no.
  bool auth_required() const { return auth_required_; }
  void note_auth_required(size_t backend, bool v) {
    if (backend >= auth_seen_.size()) auth_seen_.resize(backend + 1, 0);
    auth_seen_[backend] = v ? 1 : -1;
    size_t yes = 0;
    for (const int8_t s : auth_seen_) yes += s > 0 ? 1 : 0;
    auth_required_ = yes > 0 && yes >= router().backends();
  }

 private:
  bool auth_required_ = false;
  std::vector<int8_t> auth_seen_;  // per backend: 1 yes, -1 no, 0 not seen
};

}  // namespace respfence::proxy

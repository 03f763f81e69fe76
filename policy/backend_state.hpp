#pragma once
// A backend's state, changed in one place (design.md §4), and the bookkeeping that decides
// when its flush epoch moves (design.md §7). Pure: the prober and the sessions feed events in,
// the proxy broadcasts what comes out.

#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>

namespace respfence::policy {

// `busy`: the server runs a script or function past busy-reply-threshold. It answers
// -BUSY at once and accepts SCRIPT KILL, FUNCTION KILL and SHUTDOWN NOSAVE, so it is
// neither down nor loading: commands pass through and the server answers for itself.
enum class backend_state : uint8_t { connecting, loading, ready, down, busy };

// Whether commands go straight to a backend in this state (the server answers them).
inline bool serving(backend_state s) { return s == backend_state::ready || s == backend_state::busy; }

const char* to_string(backend_state s);
std::ostream& operator<<(std::ostream& os, backend_state s);

struct transition {
  backend_state from;
  backend_state to;
  bool changed() const { return from != to; }
  // A loading phase ended with a dataset in place: a new generation (design.md §7).
  bool loading_completed() const {
    return from == backend_state::loading && to == backend_state::ready;
  }
};

class backend_state_machine {
 public:
  backend_state state() const { return state_; }

  // The prober's connection is established again after the backend was down.
  transition on_probe_connected();
  // The prober got an INFO answer; `loading` is INFO persistence's loading:0/1.
  transition on_probe_answer(bool loading);
  // Connect refused/reset, or a probe timed out.
  transition on_probe_failed();
  // The prober's INFO was answered -BUSY (a script or function runs too long).
  transition on_probe_busy();
  // A probe got no answer in time on a connection that is up. A server that was serving
  // is taken as busy (one slow command, DEBUG SLEEP, KEYS or a SAVE, holds it: direct, its
  // clients wait, they are not told it loads); otherwise it is down as on a failure.
  // Whether it is alive is then the reconnect's to say: a refused or timed-out connect
  // is down.
  transition on_probe_timeout();

 private:
  transition move(backend_state to);
  backend_state state_ = backend_state::connecting;
};

// What the prober read from INFO.
struct probe_info {
  bool loading = false;
  double loading_perc = 0;
  int64_t loading_eta_s = 0;
  std::string run_id;
  std::string server_name;  // "redis", "valkey", ... (INFO server_name, empty before Valkey)
  uint64_t flush_calls = 0;  // cmdstat_flushall + cmdstat_flushdb calls
  bool cluster_enabled = false;  // INFO cluster
  // CLUSTER INFO's cluster_state ("ok", "fail"), empty when unknown. A node that has
  // loaded but not rejoined its cluster answers -CLUSTERDOWN while it says "fail".
  std::string cluster_state;
};

// Decides how far a backend's flush epoch moves at each probe. A flush sent through the
// proxy bumps the epoch before it is sent (`proxy_flushes` counts those); the prober then
// sees the server's counter grow by the same amount and must not count it twice.
// Reads the fields above out of an INFO reply (server, persistence, commandstats,
// cluster), followed by CLUSTER INFO's text for a cluster node.
probe_info parse_info(std::string_view text);

struct epoch_bump {
  uint64_t n = 0;
  const char* reason = "";  // "restart" or "external_flush"
};

class flush_epoch_tracker {
 public:
  // How many epochs this probe adds, and why.
  epoch_bump on_probe(const probe_info& info, uint64_t proxy_flushes_total);

 private:
  bool have_base_ = false;
  std::string run_id_;
  uint64_t base_calls_ = 0;      // server counter at the start of this run
  uint64_t last_calls_ = 0;      // server counter at the last probe
  uint64_t base_proxy_ = 0;      // proxy counter at the same moment
  uint64_t external_ = 0;        // flushes attributed to someone else, this run
};

}  // namespace respfence::policy

#pragma once
// The running proxy: the config, the backend registry and its probers, one worker per
// I/O thread, and a control thread (the caller of run()) that accepts connections,
// serves the admin endpoint, and handles signals and reloads.

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <asio.hpp>

#include "policy/config.hpp"
#include "policy/loading_policy.hpp"
#include "proxy/backend_registry.hpp"
#include "proxy/prober.hpp"
#include "routing/router.hpp"

namespace respfence::proxy {

class worker;
class admin_server;
class cluster_topology;

inline constexpr const char* k_version = "0.1.0";

class runtime {
 public:
  explicit runtime(policy::config cfg);
  ~runtime();
  runtime(const runtime&) = delete;
  runtime& operator=(const runtime&) = delete;

  // Serves until SIGTERM/SIGINT; returns the process exit code.
  int run();

  // ---- for workers (any thread) ----
  backend_registry& registry() { return *registry_; }
  worker& worker_at(size_t i) { return *workers_[i]; }
  size_t worker_count() const { return workers_.size(); }
  uint64_t next_fence_id() { return fence_ids_.fetch_add(1) + 1; }
  std::shared_ptr<const policy::policy_table> current_policy() const;
  std::shared_ptr<const routing::router> router() const;
  const asio::generic::stream_protocol::endpoint& endpoint(size_t b) const { return endpoints_[b]; }
  // A backend by address, added (with its prober) if new: cluster nodes. Any thread.
  size_t add_backend(const std::string& address);
  // Cluster mode: a new slot map from the topology; a -MOVED asking for a refresh.
  void publish_cluster_map(routing::slot_map map, std::vector<int32_t> replica_of,
                           const std::vector<size_t>& replicas);
  void refresh_topology();
  uint32_t connect_timeout_ms() const { return health_.timeout_ms.load(); }
  size_t shared_connections() const { return cfg_.server.shared_connections; }
  void worker_idle(size_t i);
  // A CLIENT PAUSE went through (session_env::note_pause): until when it may be in force.
  // A later pause never shortens one in force (the server keeps the later end too);
  // 0 (CLIENT UNPAUSE answered OK) ends it.
  void note_pause(int64_t until_ms) {
    if (until_ms == 0) {
      pause_until_ms_.store(0, std::memory_order_relaxed);
      return;
    }
    int64_t cur = pause_until_ms_.load(std::memory_order_relaxed);
    while (cur < until_ms &&
           !pause_until_ms_.compare_exchange_weak(cur, until_ms, std::memory_order_relaxed)) {
    }
  }
  bool pause_active(int64_t now_ms) const {
    return pause_until_ms_.load(std::memory_order_relaxed) > now_ms;
  }

  // ---- admin endpoint (control thread) ----
  std::string status_json() const;
  std::string metrics_text() const;
  // Sums over the workers (docs/design.md §12).
  int64_t backend_connections(size_t b, bool shared) const;
  int64_t pinned_clients() const;
  uint64_t pins_total(size_t reason) const;
  bool all_ready(std::string& why) const;
  // Re-reads the config file; returns a one-line report. Applies what can apply live.
  std::string reload(bool* ok = nullptr);

 private:
  void on_backend_change(size_t b, const backend_snapshot& s);
  void on_learned(size_t b, const policy::learned_commands& cmds);
  void publish_policy();
  // Runs f(worker&) on every worker's own thread (a message to each).
  template <typename F>
  void post_to_workers(F f);
  void accept();
  void wait_signal();
  void begin_shutdown();
  void finish_shutdown();

  policy::config cfg_;
  mutable std::mutex mu_;  // cfg_ (on reload), policy_, learned_
  std::shared_ptr<const policy::policy_table> policy_;
  std::optional<policy::learned_commands> learned_;
  std::shared_ptr<const routing::router> router_;
  // Fixed capacity (backend_registry::max_backends): entries never move.
  std::vector<asio::generic::stream_protocol::endpoint> endpoints_;
  std::mutex backends_mu_;  // add_backend: registry, endpoints_, probers_
  bool running_ = false;
  std::unique_ptr<cluster_topology> topology_;
  health_settings health_;
  std::unique_ptr<backend_registry> registry_;
  std::vector<std::unique_ptr<worker>> workers_;
  std::vector<std::unique_ptr<prober>> probers_;

  asio::io_context control_;
  asio::basic_socket_acceptor<asio::generic::stream_protocol> acceptor_;
  asio::signal_set signals_;
  asio::steady_timer shutdown_timer_;
  std::unique_ptr<admin_server> admin_;
  size_t next_worker_ = 0;
  std::atomic<uint64_t> fence_ids_{0};
  std::atomic<size_t> idle_workers_{0};
  std::atomic<int64_t> pause_until_ms_{0};
  bool shutting_down_ = false;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

// "127.0.0.1:6379", "localhost:6379" or "unix:/path" as a socket address; nullopt (with
// `why`) if it does not resolve.
std::optional<asio::generic::stream_protocol::endpoint> resolve_endpoint(const std::string& s,
                                                                         std::string* why);

}  // namespace respfence::proxy

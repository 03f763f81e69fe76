#pragma once
// One I/O thread: its own io_context, the client sessions it owns, and its own copy of
// every backend's state and of the policy table. Other threads talk to it only by
// posting messages, so nothing a command touches is shared or locked.

#include <array>
#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include <asio.hpp>

#include "proxy/backend_registry.hpp"
#include "proxy/socket_poller.hpp"
#include "proxy/session/session_env.hpp"
#include "proxy/upstream/upstream.hpp"

namespace respfence::proxy {

class runtime;
class client_session;

// Latency buckets of the request histogram, in microseconds.
inline constexpr std::array<uint64_t, 16> k_latency_buckets_us{
    50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
    1000000, 2500000, 10000000};

// Counters written by one worker thread and read by the admin endpoint. Each has one
// writer, so an increment is a plain load and store, never a locked instruction.
struct worker_stats {
  explicit worker_stats(size_t max_backends)
      : commands(max_backends), shared_conns(max_backends), dedicated_conns(max_backends) {}
  std::vector<std::array<std::atomic<uint64_t>, static_cast<size_t>(counter::count_)>> commands;
  std::array<std::atomic<uint64_t>, k_latency_buckets_us.size() + 1> latency{};
  std::atomic<uint64_t> latency_sum_us{0};
  std::atomic<uint64_t> latency_count{0};
  std::atomic<int64_t> clients{0};
  std::array<std::atomic<uint64_t>, static_cast<size_t>(pin_reason::count_)> pins{};
  // Backend connections now, per backend: the upstream's shared ones, and the sessions'
  // own (dedicated mode, or pinned clients).
  std::vector<std::atomic<int64_t>> shared_conns;
  std::vector<std::atomic<int64_t>> dedicated_conns;
  std::atomic<int64_t> pinned_clients{0};
};

inline void bump(std::atomic<uint64_t>& c, uint64_t n = 1) {
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}
inline void bump_signed(std::atomic<int64_t>& c, int64_t n) {
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

class worker final : public session_env {
 public:
  worker(runtime& rt, size_t index);
  ~worker() override;
  worker(const worker&) = delete;
  worker& operator=(const worker&) = delete;

  asio::io_context& io() { return io_; }
  size_t index() const { return index_; }
  void start();
  void join();

  // ---- on this worker's thread ----
  void adopt(asio::generic::stream_protocol::socket s);
  void remove(client_session* s);
  void set_backend(size_t b, const backend_snapshot& snap);
  void set_policy(std::shared_ptr<const policy::policy_table> p);
  void set_router(std::shared_ptr<const routing::router> r);
  const asio::generic::stream_protocol::endpoint& endpoint(size_t b) const;
  void set_output_limit(size_t bytes) { limits_.client_output = bytes; }
  void set_input_window(size_t bytes) { limits_.input_window = bytes; }
  void set_shared(bool shared) { limits_.shared = shared; }
  void fence_raise(uint64_t id, const std::vector<size_t>& backends, size_t origin);
  void fence_worker_drained(uint64_t id);
  void fence_lower(uint64_t id);
  void begin_shutdown();
  bool idle() const { return sessions_.empty(); }
  void stop();

  const worker_stats& stats() const { return stats_; }
  upstream& shared() { return upstream_; }
  socket_poller& poller() { return poller_; }
  void dedicated_opened(size_t b) { bump_signed(stats_.dedicated_conns[b], 1); }
  void dedicated_closed(size_t b) { bump_signed(stats_.dedicated_conns[b], -1); }
  void shared_opened(size_t b) { bump_signed(stats_.shared_conns[b], 1); }
  void shared_closed(size_t b) { bump_signed(stats_.shared_conns[b], -1); }

  // ---- session_env ----
  const backend_view& view(size_t b) const override { return views_[b]; }
  const policy::policy_table& policy() const override { return *policy_; }
  const routing::router& router() const override { return *router_; }
  size_t backend_for(std::string_view host_port) override;
  void topology_changed() override;
  int64_t now_ms() const override;
  bool queue_admit(size_t b, size_t bytes) override;
  void queue_release(size_t b, size_t bytes) override;
  void watch(session_core* s) override;
  void unwatch(session_core* s) override;
  uint64_t report_loading(size_t b) override;
  void report_unreachable(size_t b) override;
  void bump_epoch(size_t b, const char* why) override;
  void flush_sent(size_t b) override;
  void flush_unsent(size_t b) override;
  uint64_t begin_flush(session_core* s, const std::vector<size_t>& backends) override;
  void flush_done(uint64_t id) override;
  void session_drained(uint64_t id) override;
  bool fence_enabled() const override { return policy_->config().flush_fence; }
  void count(size_t b, counter c) override {
    bump(stats_.commands[b][static_cast<size_t>(c)]);
  }
  void record_latency_us(uint64_t us) override;
  void count_pin(pin_reason why) override { bump(stats_.pins[static_cast<size_t>(why)]); }
  void note_pause(int64_t until_ms) override;
  bool pause_in_force() const override { return pause_active(now_ms()); }
  bool pause_active(int64_t now) const;

 private:
  struct fence_here {
    uint64_t id;
    std::vector<size_t> backends;
    size_t origin;
    size_t pending;  // sessions here still answering what came before the flush
  };
  struct fence_origin {
    uint64_t id;
    client_session* session;  // null once it is gone
    size_t workers_pending;
    std::unique_ptr<asio::steady_timer> timeout;
  };

  void tick();
  void resume_watchers();
  void report_drained(uint64_t id, size_t origin);
  client_session* shell_of(session_core* s) const;
  void ready_origin(fence_origin& o);

  runtime& rt_;
  size_t index_;
  asio::io_context io_;
  socket_poller poller_;  // client and shared backend sockets' readiness (after io_, before the sessions)
  asio::executor_work_guard<asio::io_context::executor_type> guard_;
  asio::steady_timer ticker_;
  std::thread thread_;

  std::vector<backend_view> views_;
  std::shared_ptr<const policy::policy_table> policy_;
  std::shared_ptr<const routing::router> router_;
  void ensure_view(size_t b);
  std::vector<std::unique_ptr<client_session>> sessions_;
  std::vector<client_session*> watchers_;
  std::vector<fence_here> fences_;
  std::vector<fence_origin> origins_;
  worker_stats stats_;
  upstream upstream_;
  uint64_t next_session_id_ = 0;
  bool shutting_down_ = false;
  bool churned_ = false;  // a session was removed since the last sweep
  unsigned ticks_ = 0;
  struct session_limits {
    bool shared = false;
    size_t client_output = 8u << 20;
    size_t input_window = 64u << 20;
  } limits_;
};

}  // namespace respfence::proxy

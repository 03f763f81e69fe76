#pragma once
// The health prober of one backend (design.md §4): its own connection (hiredis), polling INFO
// at health.interval_ms while the backend is ready and at health.loading_interval_ms
// otherwise, every probe under health.timeout_ms. At each new connection it also reads
// the backend's COMMAND table (learn_from_backend).

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>

#include "policy/config.hpp"
#include "proxy/backend_registry.hpp"

struct redisContext;

namespace respfence::proxy {

// Health settings that a reload may change while probers run.
struct health_settings {
  std::atomic<uint32_t> interval_ms{1000};
  std::atomic<uint32_t> loading_interval_ms{100};
  std::atomic<uint32_t> timeout_ms{2000};
  std::atomic<bool> learn{true};
  void set(const policy::health_config& h, bool learn_from_backend) {
    interval_ms = h.interval_ms;
    loading_interval_ms = h.loading_interval_ms;
    timeout_ms = h.timeout_ms;
    learn = learn_from_backend;
  }
};

class prober {
 public:
  prober(backend_registry& reg, size_t backend, policy::endpoint ep, const health_settings& hs);
  ~prober();
  prober(const prober&) = delete;
  prober& operator=(const prober&) = delete;

  void start();
  void join();

 private:
  void run();
  bool connect(std::string& why);
  bool probe(std::string& why);
  void learn();
  void drop();

  backend_registry& reg_;
  size_t b_;
  policy::endpoint ep_;
  const health_settings& hs_;
  redisContext* ctx_ = nullptr;
  bool split_info_ = false;  // the server wants INFO sections one at a time
  int learn_failures_ = 0;   // COMMAND that cannot be read is not retried forever
  bool timed_out_ = false;   // the last probe failed on a read timeout, the connection up
  std::thread thread_;
};

}  // namespace respfence::proxy

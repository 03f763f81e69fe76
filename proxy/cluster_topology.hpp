#pragma once
// Cluster mode: learns which node owns which slot from the cluster itself (CLUSTER SHARDS
// on Redis >= 7 and Valkey, CLUSTER SLOTS before), on its own thread, every
// routing.refresh_interval_ms and whenever a session saw -MOVED. New primaries become
// backends (with their own prober, state and flush epoch); the slot map is published to
// the workers as a new router.

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "proxy/resp/resp_value.hpp"

namespace respfence::proxy {

class runtime;

// One slot range and the "host:port" of the primary that owns it.
struct slot_owner {
  uint16_t first = 0;
  uint16_t last = 0;
  std::string primary;
  std::vector<std::string> replicas;  // online replicas of the same shard
};

// Reads CLUSTER SHARDS (RESP2 or RESP3 form) / CLUSTER SLOTS replies. Pure, for tests.
std::optional<std::vector<slot_owner>> parse_cluster_shards(const resp_value& v);
std::optional<std::vector<slot_owner>> parse_cluster_slots(const resp_value& v);

class cluster_topology {
 public:
  cluster_topology(runtime& rt, std::vector<std::string> seeds, uint32_t refresh_ms,
                   uint32_t timeout_ms, bool replica_reads);
  ~cluster_topology();
  cluster_topology(const cluster_topology&) = delete;
  cluster_topology& operator=(const cluster_topology&) = delete;

  void start();
  void stop();
  void wake();  // refresh now (a -MOVED was seen)
  // The slot ranges as last learned, for /status.
  std::vector<slot_owner> ranges() const;

 private:
  void run();
  bool refresh();
  std::optional<std::vector<slot_owner>> ask(const std::string& address);

  runtime& rt_;
  std::vector<std::string> seeds_;
  uint32_t refresh_ms_;
  uint32_t timeout_ms_;
  bool replica_reads_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool woken_ = false;
  bool stopping_ = false;
  std::vector<slot_owner> last_;
  std::thread thread_;
};

}  // namespace respfence::proxy

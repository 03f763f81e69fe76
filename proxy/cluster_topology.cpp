#include "proxy/cluster_topology.hpp"

#include <hiredis/hiredis.h>

#include <algorithm>

#include "policy/config.hpp"
#include "proxy/hiredis_raw.hpp"
#include "proxy/log.hpp"
#include "proxy/runtime.hpp"
#include "routing/slots.hpp"

namespace respfence::proxy {

namespace {

// A RESP3 map or a RESP2 flat key/value array: the value under `key`, or null.
const resp_value* field(const resp_value& kv, std::string_view key) {
  for (size_t i = 0; i + 1 < kv.elems.size(); i += 2) {
    if (kv.elems[i].str == key) return &kv.elems[i + 1];
  }
  return nullptr;
}

std::string host_port(std::string host, int64_t port) {
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  return host + ":" + std::to_string(port);
}

bool valid_slot(int64_t s) { return s >= 0 && s < routing::slot_count; }

}  // namespace

std::optional<std::vector<slot_owner>> parse_cluster_shards(const resp_value& v) {
  if (v.type != '*' && v.type != '~') return std::nullopt;
  std::vector<slot_owner> out;
  for (const resp_value& shard : v.elems) {
    const resp_value* slots = field(shard, "slots");
    const resp_value* nodes = field(shard, "nodes");
    if (slots == nullptr || nodes == nullptr) return std::nullopt;
    std::string primary;
    std::vector<std::string> replicas;
    for (const resp_value& n : nodes->elems) {
      const resp_value* role = field(n, "role");
      const resp_value* port = field(n, "port");
      const resp_value* endpoint = field(n, "endpoint");
      const resp_value* ip = field(n, "ip");
      const resp_value* health = field(n, "health");
      if (role == nullptr || port == nullptr) continue;
      std::string host = endpoint && !endpoint->str.empty() && endpoint->str != "?"
                             ? endpoint->str
                             : (ip ? ip->str : std::string());
      if (host.empty()) continue;
      if (role->str == "master" || role->str == "primary") {
        primary = host_port(host, port->integer);
      } else if (health == nullptr || health->str == "online") {
        replicas.push_back(host_port(host, port->integer));
      }
    }
    if (primary.empty()) continue;  // a shard without a primary owns nothing reachable
    for (size_t i = 0; i + 1 < slots->elems.size(); i += 2) {
      const int64_t a = slots->elems[i].integer;
      const int64_t b = slots->elems[i + 1].integer;
      if (!valid_slot(a) || !valid_slot(b) || a > b) return std::nullopt;
      out.push_back({static_cast<uint16_t>(a), static_cast<uint16_t>(b), primary, replicas});
    }
  }
  return out;
}

std::optional<std::vector<slot_owner>> parse_cluster_slots(const resp_value& v) {
  if (v.type != '*') return std::nullopt;
  std::vector<slot_owner> out;
  for (const resp_value& r : v.elems) {
    if (r.elems.size() < 3 || r.elems[2].elems.size() < 2) return std::nullopt;
    const int64_t a = r.elems[0].integer;
    const int64_t b = r.elems[1].integer;
    if (!valid_slot(a) || !valid_slot(b) || a > b) return std::nullopt;
    const resp_value& node = r.elems[2];
    if (node.elems[0].str.empty()) continue;
    std::vector<std::string> replicas;
    for (size_t i = 3; i < r.elems.size(); ++i) {
      const resp_value& rep = r.elems[i];
      if (rep.elems.size() >= 2 && !rep.elems[0].str.empty()) {
        replicas.push_back(host_port(rep.elems[0].str, rep.elems[1].integer));
      }
    }
    out.push_back({static_cast<uint16_t>(a), static_cast<uint16_t>(b),
                   host_port(node.elems[0].str, node.elems[1].integer), std::move(replicas)});
  }
  return out;
}

cluster_topology::cluster_topology(runtime& rt, std::vector<std::string> seeds,
                                   uint32_t refresh_ms, uint32_t timeout_ms, bool replica_reads)
    : rt_(rt),
      seeds_(std::move(seeds)),
      refresh_ms_(refresh_ms),
      timeout_ms_(timeout_ms),
      replica_reads_(replica_reads) {}

cluster_topology::~cluster_topology() { stop(); }

void cluster_topology::start() { thread_ = std::thread([this] { run(); }); }

void cluster_topology::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void cluster_topology::wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    woken_ = true;
  }
  cv_.notify_all();
}

std::vector<slot_owner> cluster_topology::ranges() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_;
}

void cluster_topology::run() {
  while (true) {
    const bool ok = refresh();
    std::unique_lock<std::mutex> lock(mu_);
    // After a failure, or when a -MOVED asks for it, try again soon.
    const auto wait = std::chrono::milliseconds(ok ? refresh_ms_ : std::min<uint32_t>(refresh_ms_, 200));
    cv_.wait_for(lock, wait, [&] { return woken_ || stopping_; });
    if (stopping_) return;
    if (woken_) {
      woken_ = false;
      lock.unlock();
      // Several -MOVED in a burst ask for one refresh.
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
}

std::optional<std::vector<slot_owner>> cluster_topology::ask(const std::string& address) {
  const auto ep = policy::parse_endpoint(address);
  if (!ep) return std::nullopt;
  timeval tv{static_cast<time_t>(timeout_ms_ / 1000),
             static_cast<suseconds_t>((timeout_ms_ % 1000) * 1000)};
  redisContext* ctx = ep->is_unix() ? redisConnectUnixWithTimeout(ep->unix_path.c_str(), tv)
                                    : redisConnectWithTimeout(ep->host.c_str(), ep->port, tv);
  if (ctx == nullptr) return std::nullopt;
  std::optional<std::vector<slot_owner>> out;
  if (ctx->err == 0) {
    auto v = raw_command(ctx, {"CLUSTER", "SHARDS"}, timeout_ms_);
    if (v && !v->is_error()) {
      out = parse_cluster_shards(*v);
    } else if (v) {
      // Before Redis 7: CLUSTER SLOTS.
      auto s = raw_command(ctx, {"CLUSTER", "SLOTS"}, timeout_ms_);
      if (s && !s->is_error()) out = parse_cluster_slots(*s);
    }
  }
  redisFree(ctx);
  return out;
}

bool cluster_topology::refresh() {
  // Ask the primaries known so far, then the seeds.
  std::vector<std::string> candidates;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& r : last_) {
      if (std::find(candidates.begin(), candidates.end(), r.primary) == candidates.end()) {
        candidates.push_back(r.primary);
      }
    }
  }
  for (const auto& s : seeds_) {
    if (std::find(candidates.begin(), candidates.end(), s) == candidates.end()) {
      candidates.push_back(s);
    }
  }
  for (const auto& c : candidates) {
    auto ranges = ask(c);
    if (!ranges || ranges->empty()) continue;
    std::sort(ranges->begin(), ranges->end(),
              [](const slot_owner& a, const slot_owner& b) { return a.first < b.first; });
    bool changed = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      changed = ranges->size() != last_.size();
      for (size_t i = 0; !changed && i < ranges->size(); ++i) {
        const auto& x = (*ranges)[i];
        const auto& y = last_[i];
        changed = x.first != y.first || x.last != y.last || x.primary != y.primary ||
                  x.replicas != y.replicas;
      }
    }
    if (!changed) return true;
    routing::slot_map map;
    std::vector<int32_t> replica_of(routing::slot_count, -1);
    std::vector<size_t> replicas;
    bool first = true;
    for (const auto& r : *ranges) {
      const size_t b = rt_.add_backend(r.primary);
      if (b == SIZE_MAX) continue;
      if (replica_reads_ && !r.replicas.empty()) {
        // Reads of these slots may go to the shard's first online replica.
        const size_t rep = rt_.add_backend(r.replicas.front());
        if (rep != SIZE_MAX) {
          replicas.push_back(rep);
          for (uint32_t s = r.first; s <= r.last; ++s) replica_of[s] = static_cast<int32_t>(rep);
        }
      }
      if (first) {
        // Slots no shard claims go to the first primary, which answers them itself.
        for (uint32_t s = 0; s < routing::slot_count; ++s) {
          map.set_owner(static_cast<uint16_t>(s), static_cast<uint16_t>(b));
        }
        first = false;
      }
      for (uint32_t s = r.first; s <= r.last; ++s) {
        map.set_owner(static_cast<uint16_t>(s), static_cast<uint16_t>(b));
      }
    }
    rt_.publish_cluster_map(std::move(map), std::move(replica_of), replicas);
    size_t primaries = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      last_ = *ranges;
      std::vector<std::string> seen;
      for (const auto& r : last_) {
        if (std::find(seen.begin(), seen.end(), r.primary) == seen.end()) seen.push_back(r.primary);
      }
      primaries = seen.size();
    }
    log::info("cluster_topology", {{"from", c}, {"ranges", ranges->size()}, {"primaries", primaries}});
    return true;
  }
  log::warn("cluster_topology_failed", {{"seeds", seeds_.size()}});
  return false;
}

}  // namespace respfence::proxy

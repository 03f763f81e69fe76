#pragma once
// Which backend(s) a command goes to. In `single` mode, always backend 0, with no key
// work at all. In `slots` mode, by the hash slots of its keys (design.md §10).

#include <cstdint>
#include <memory>
#include <ostream>
#include <vector>

#include "policy/command_table.hpp"
#include "routing/command_class.hpp"
#include "routing/keys.hpp"
#include "routing/slots.hpp"

namespace respfence::routing {

enum class route_kind : uint8_t {
  backend,    // one backend: `backend`
  split,      // keys on several backends, and a merge rule exists (MGET, MSET, DEL, ...)
  fanout,     // every backend (DBSIZE, KEYS, SCAN, FLUSHALL, CONFIG SET, ...)
  crossslot,  // keys on several backends and no way to merge: -CROSSSLOT
  refused,    // not supported in this mode: the proxy answers an error naming it
};
const char* to_string(route_kind k);
std::ostream& operator<<(std::ostream& os, route_kind k);

struct route {
  route_kind kind = route_kind::backend;
  uint16_t backend = 0;
  // The command's class (sharded modes): its merge rule, flags, and for a refusal the
  // name and reason the error gives. Null in single mode.
  const class_rule* rule = nullptr;
};

// The merge rule of a split command (MGET, MSET, DEL, ...), by kind.
merge_rule merge_rule_for(policy::command_kind k);

class router {
 public:
  // One backend, no hashing.
  static std::shared_ptr<const router> single();
  static std::shared_ptr<const router> slots(slot_map map);
  // Cluster mode: the map comes from the cluster's topology and is replaced when it
  // changes; `backends` counts every node the proxy knows, primaries or not.
  static std::shared_ptr<const router> cluster(slot_map map, size_t backends,
                                               std::vector<int32_t> replica_of = {},
                                               const std::vector<size_t>& replicas = {});

  bool sharded() const { return sharded_; }
  bool cluster() const { return cluster_; }
  size_t backends() const { return backends_; }
  // The backends that own slots, in slot order: where fan-outs go, what SCAN walks.
  const std::vector<uint16_t>& primaries() const { return primaries_; }
  const slot_map& map() const { return map_; }
  // Cluster mode with read_from = "replica-preferred": the replica that may serve reads
  // of `slot` (-1: none), and whether backend b is such a replica (its links say READONLY).
  int32_t replica_for(uint16_t slot) const {
    return replica_of_.empty() ? -1 : replica_of_[slot];
  }
  bool is_replica(size_t b) const { return b < is_replica_.size() && is_replica_[b]; }
  bool replica_reads() const { return !replica_of_.empty(); }

  // `cmd` may be null (unknown to the table): it goes to the first backend, where the
  // server answers it. `keys` is scratch, left holding the key positions (slots mode).
  // The class comes from routing/command_class.hpp; a few commands are decided by their
  // arguments too (DEBUG by its subcommand, SORT's patterns, CLIENT TRACKING REDIRECT).
  route decide(const policy::command_entry* cmd, const arg_source& args,
               std::vector<size_t>& keys) const;

  // For a split command: which backend each key belongs to, and what groups keys into
  // one part (the backend in slots mode, the slot in cluster mode).
  uint16_t owner_of(std::string_view key) const { return map_.owner_of_key(key); }
  uint32_t group_of(std::string_view key) const {
    const uint16_t s = key_slot(key);
    return cluster_ ? s : map_.owner(s);
  }

 private:
  bool sharded_ = false;
  bool cluster_ = false;
  size_t backends_ = 1;
  std::vector<uint16_t> primaries_{0};
  std::vector<int32_t> replica_of_;
  std::vector<bool> is_replica_;
  slot_map map_;
};

}  // namespace respfence::routing

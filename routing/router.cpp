#include "routing/router.hpp"

namespace respfence::routing {

using policy::command_kind;

const char* to_string(route_kind k) {
  switch (k) {
    case route_kind::backend:
      return "backend";
    case route_kind::split:
      return "split";
    case route_kind::fanout:
      return "fanout";
    case route_kind::crossslot:
      return "crossslot";
  }
  return "?";
}
std::ostream& operator<<(std::ostream& os, route_kind k) { return os << to_string(k); }

const char* to_string(merge_rule r) {
  switch (r) {
    case merge_rule::none:
      return "none";
    case merge_rule::mget:
      return "mget";
    case merge_rule::all_ok:
      return "all_ok";
    case merge_rule::sum:
      return "sum";
    case merge_rule::concat:
      return "concat";
    case merge_rule::scan:
      return "scan";
    case merge_rule::first_value:
      return "first_value";
    case merge_rule::ping:
      return "ping";
    case merge_rule::info:
      return "info";
  }
  return "?";
}

merge_rule merge_rule_for(command_kind k) {
  switch (k) {
    case command_kind::mget:
      return merge_rule::mget;
    case command_kind::mset:
    case command_kind::flushall:
    case command_kind::flushdb:
    case command_kind::select:
    case command_kind::auth:
    case command_kind::client_setname:
    case command_kind::unwatch:
    case command_kind::script_flush:
      return merge_rule::all_ok;
    case command_kind::hello:
    case command_kind::script_load:
      return merge_rule::none;  // every backend answers the same: the first answer
    case command_kind::del:
    case command_kind::unlink:
    case command_kind::exists:
    case command_kind::touch:
    case command_kind::dbsize:
      return merge_rule::sum;
    case command_kind::keys:
      return merge_rule::concat;
    case command_kind::scan:
      return merge_rule::scan;
    case command_kind::randomkey:
      return merge_rule::first_value;
    case command_kind::ping:
      return merge_rule::ping;
    case command_kind::info:
      return merge_rule::info;
    default:
      return merge_rule::none;
  }
}

namespace {
bool is_fanout(command_kind k) {
  switch (k) {
    // Per-connection state goes to every backend, so that every link agrees.
    case command_kind::select:
    case command_kind::auth:
    case command_kind::hello:
    case command_kind::client_setname:
    case command_kind::unwatch:
    // Scripts must exist wherever EVALSHA may be routed.
    case command_kind::script_load:
    case command_kind::script_flush:
    case command_kind::dbsize:
    case command_kind::keys:
    case command_kind::scan:
    case command_kind::randomkey:
    case command_kind::flushall:
    case command_kind::flushdb:
    case command_kind::ping:
    case command_kind::info:
      return true;
    default:
      return false;
  }
}
bool is_splittable(command_kind k) {
  switch (k) {
    case command_kind::mget:
    case command_kind::mset:
    case command_kind::del:
    case command_kind::unlink:
    case command_kind::exists:
    case command_kind::touch:
      return true;
    default:
      return false;
  }
}
}  // namespace

std::shared_ptr<const router> router::single() { return std::make_shared<router>(); }

std::shared_ptr<const router> router::slots(slot_map map) {
  auto r = std::make_shared<router>();
  r->sharded_ = true;
  r->backends_ = map.backends();
  r->primaries_.clear();
  for (size_t b = 0; b < map.backends(); ++b) r->primaries_.push_back(static_cast<uint16_t>(b));
  r->map_ = std::move(map);
  return r;
}

std::shared_ptr<const router> router::cluster(slot_map map, size_t backends,
                                              std::vector<int32_t> replica_of,
                                              const std::vector<size_t>& replicas) {
  auto r = std::make_shared<router>();
  r->replica_of_ = std::move(replica_of);
  r->is_replica_.assign(backends, false);
  for (size_t b : replicas) {
    if (b < backends) r->is_replica_[b] = true;
  }
  r->sharded_ = true;
  r->cluster_ = true;
  r->backends_ = backends;
  r->primaries_.clear();
  std::vector<bool> seen(backends, false);
  for (uint32_t s = 0; s < slot_count; ++s) {
    const uint16_t o = map.owner(static_cast<uint16_t>(s));
    if (o < backends && !seen[o]) {
      seen[o] = true;
      r->primaries_.push_back(o);
    }
  }
  if (r->primaries_.empty()) r->primaries_.push_back(0);
  r->map_ = std::move(map);
  return r;
}

route router::decide(const policy::command_entry* cmd, const arg_source& args,
                     std::vector<size_t>& keys) const {
  keys.clear();
  if (!sharded_) return {};
  // Unknown or keyless commands go to the first backend that owns slots.
  if (cmd == nullptr) return {route_kind::backend, primaries_.front()};
  if (is_fanout(cmd->kind)) return {route_kind::fanout, primaries_.front()};
  // Arity errors and malformed key specs go to one backend, which answers them.
  if (!cmd->arity_ok(args.argc()) || !key_positions(*cmd, args, keys) || keys.empty()) {
    return {route_kind::backend, primaries_.front()};
  }
  // Slots mode checks that keys share a backend. A cluster's nodes themselves refuse keys
  // of different slots, so there the keys must share a slot.
  const uint16_t slot0 = key_slot(args.arg(keys[0]));
  const uint16_t first = map_.owner(slot0);
  for (size_t i = 1; i < keys.size(); ++i) {
    const uint16_t s = key_slot(args.arg(keys[i]));
    if (cluster_ ? s != slot0 : map_.owner(s) != first) {
      return {is_splittable(cmd->kind) ? route_kind::split : route_kind::crossslot, first};
    }
  }
  return {route_kind::backend, first};
}

}  // namespace respfence::routing

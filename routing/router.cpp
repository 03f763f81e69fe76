#include "routing/router.hpp"

#include "policy/text.hpp"

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
    case route_kind::refused:
      return "refused";
  }
  return "?";
}
std::ostream& operator<<(std::ostream& os, route_kind k) { return os << to_string(k); }

merge_rule merge_rule_for(command_kind k) {
  switch (k) {
    case command_kind::mget:
      return merge_rule::mget;
    case command_kind::mset:
      return merge_rule::all_ok;
    case command_kind::del:
    case command_kind::unlink:
    case command_kind::exists:
    case command_kind::touch:
      return merge_rule::sum;
    default:
      return merge_rule::none;
  }
}

namespace {

// SORT key BY pattern / GET pattern: the keys a pattern forms must be on the sorted key's
// backend (slot, in cluster mode), as Redis Cluster requires (sort.c). "GET #" and
// patterns without '*' look up no key.
bool sort_patterns_local(const arg_source& a, bool cluster, const slot_map& map) {
  if (a.argc() < 2) return true;
  const uint16_t slot = key_slot(a.arg(1));
  auto local = [&](std::string_view pat) {
    if (pat.find('*') == std::string_view::npos) return true;
    const int s = pattern_slot(pat);
    if (s < 0) return false;
    return cluster ? s == slot : map.owner(static_cast<uint16_t>(s)) == map.owner(slot);
  };
  for (size_t j = 2; j < a.argc(); ++j) {
    const size_t left = a.argc() - j - 1;
    const std::string_view w = a.arg(j);
    if (policy::iequals_lower(w, "limit") && left >= 2) {
      j += 2;
    } else if (policy::iequals_lower(w, "store") && left >= 1) {
      ++j;
    } else if ((policy::iequals_lower(w, "by") || policy::iequals_lower(w, "get")) && left >= 1) {
      if (!(policy::iequals_lower(w, "get") && a.arg(j + 1) == "#") && !local(a.arg(j + 1))) {
        return false;
      }
      ++j;
    }
  }
  return true;
}

// CLIENT TRACKING ON|OFF [REDIRECT id] [PREFIX p ...] [BCAST] [OPTIN] [OPTOUT] [NOLOOP]
bool tracking_redirects(const arg_source& a) {
  for (size_t i = 3; i < a.argc(); ++i) {
    if (policy::iequals_lower(a.arg(i), "redirect")) return true;
    if (policy::iequals_lower(a.arg(i), "prefix")) ++i;
  }
  return false;
}

// CONFIG SET name value [name value ...]: a parameter each backend has for itself.
bool config_sets_own(const arg_source& a) {
  for (size_t i = 2; i < a.argc(); i += 2) {
    const std::string_view n = a.arg(i);
    if (policy::iequals_lower(n, "port") || policy::iequals_lower(n, "tls-port") ||
        policy::iequals_lower(n, "dir")) {
      return true;
    }
  }
  return false;
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
  const uint16_t front = primaries_.front();
  // Unknown commands go to the first backend, whose server answers them.
  if (cmd == nullptr) return {route_kind::backend, front, &unknown_class()};
  const class_rule* cr = &class_of(*cmd);
  if (cmd->kind == command_kind::debug && args.argc() >= 2) cr = &debug_class(args.arg(1));
  // Arity errors go to one backend, which answers them.
  if (!cmd->arity_ok(args.argc())) return {route_kind::backend, front, cr};
  switch (cr->cls) {
    case command_class::first:
      return {route_kind::backend, front, cr};
    case command_class::refused:
      return {route_kind::refused, front, cr};
    case command_class::fanout:
      // REDIRECT names a client id of one backend; invalidations come from every one.
      if (cmd->kind == command_kind::client_tracking && tracking_redirects(args)) {
        return {route_kind::refused, front, &tracking_redirect_refusal()};
      }
      // Every backend on one port or in one directory: never what is meant.
      if (cr->has(rule_checked) && cr->name == "config|set" && config_sets_own(args)) {
        return {route_kind::refused, front, &config_own_refusal()};
      }
      return {route_kind::fanout, front, cr};
    case command_class::keyed:
    case command_class::split:
      break;
  }
  if (cr->first_key > 0) {
    // A DEBUG subcommand that names keys.
    const long long argc = static_cast<long long>(args.argc());
    const long long last = cr->last_key >= 0 ? cr->last_key : argc + cr->last_key;
    for (long long i = cr->first_key; i <= last && i < argc; i += cr->key_step) {
      keys.push_back(static_cast<size_t>(i));
    }
  } else if (!key_positions(*cmd, args, keys)) {
    // A malformed key spec (a bad numkeys): one backend answers the syntax error.
    keys.clear();
    return {route_kind::backend, front, cr};
  }
  if (keys.empty()) return {route_kind::backend, front, cr};
  if (cr->has(rule_checked) && !sort_patterns_local(args, cluster_, map_)) {
    return {route_kind::refused, front, &sort_pattern_refusal(cmd->kind == command_kind::sort_ro)};
  }
  // Slots mode checks that keys share a backend. A cluster's nodes themselves refuse keys
  // of different slots, so there the keys must share a slot.
  const uint16_t slot0 = key_slot(args.arg(keys[0]));
  const uint16_t owner0 = map_.owner(slot0);
  for (size_t i = 1; i < keys.size(); ++i) {
    const uint16_t s = key_slot(args.arg(keys[i]));
    if (cluster_ ? s != slot0 : map_.owner(s) != owner0) {
      return {cr->cls == command_class::split ? route_kind::split : route_kind::crossslot, owner0,
              cr};
    }
  }
  return {route_kind::backend, owner0, cr};
}

}  // namespace respfence::routing

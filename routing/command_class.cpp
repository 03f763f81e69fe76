#include "routing/command_class.hpp"

#include <unordered_map>

#include "routing/slots.hpp"

namespace respfence::routing {

namespace {

using C = command_class;
using M = merge_rule;
constexpr uint8_t S = rule_server_state;
constexpr uint8_t K = rule_checked;

class_rule keyed(std::string_view n, std::string_view note = {}, uint8_t flags = 0) {
  return class_rule{n, C::keyed, M::none, flags, 0, 0, 0, note};
}
class_rule split(std::string_view n, M m) { return class_rule{n, C::split, m, 0, 0, 0, 0, {}}; }
class_rule fanout(std::string_view n, M m, uint8_t flags = 0, std::string_view note = {}) {
  return class_rule{n, C::fanout, m, flags, 0, 0, 0, note};
}
class_rule first(std::string_view n, std::string_view note = {}) {
  return class_rule{n, C::first, M::none, 0, 0, 0, 0, note};
}
class_rule refused(std::string_view n, std::string_view note) {
  return class_rule{n, C::refused, M::none, 0, 0, 0, 0, note};
}
class_rule debug_keyed(std::string_view n, int8_t last) {
  return class_rule{n, C::keyed, M::none, 0, 2, last, 1, "routed by its key"};
}

// Notes shared by several entries.
constexpr std::string_view n_same = "the same on every backend";
constexpr std::string_view n_conn = "per-connection state: every backend connection";
constexpr std::string_view n_server = "server-wide state: every backend";
constexpr std::string_view n_first = "reads the first backend's own state";
constexpr std::string_view n_ids = "client IDs and addresses are per backend: the first backend's";
constexpr std::string_view n_pubsub = "pub/sub lives on the first backend";
constexpr std::string_view n_tx = "transaction: runs where its keys are (one backend)";
constexpr std::string_view n_cluster = "the server answers (cluster support is disabled on a slots backend)";
constexpr std::string_view n_help = "help text";

// Every keyless command of the Redis 7.0 table, and the keyed ones with a rule of their
// own. Anything else with keys is keyed.
std::vector<class_rule> make_rules() {
  return {
      // ---------------------------------------------------------------- keys
      split("mget", M::mget),
      split("mset", M::all_ok),
      split("del", M::sum),
      split("unlink", M::sum),
      split("exists", M::sum),
      split("touch", M::sum),
      keyed("sort", "BY/GET patterns must hash to the sorted key's backend", K),
      keyed("sort_ro", "BY/GET patterns must hash to the sorted key's backend", K),
      keyed("migrate", "moves its keys off the backend that owns them"),
      keyed("eval", "keyless: the first backend"),
      keyed("evalsha", "keyless: the first backend"),
      keyed("eval_ro", "keyless: the first backend"),
      keyed("evalsha_ro", "keyless: the first backend"),
      keyed("fcall", "keyless: the first backend"),
      keyed("fcall_ro", "keyless: the first backend"),
      // ---------------------------------------------------------------- whole keyspace
      fanout("dbsize", M::sum),
      fanout("keys", M::concat),
      fanout("scan", M::scan, 0, "walks the backends one after the other"),
      fanout("randomkey", M::random_value),
      fanout("flushall", M::all_ok, 0, "under the flush fence"),
      fanout("flushdb", M::all_ok, 0, "under the flush fence"),
      fanout("swapdb", M::all_ok, 0, "under the flush fence"),
      // ---------------------------------------------------------------- connection state
      fanout("select", M::all_ok, 0, n_conn),
      fanout("auth", M::all_ok, 0, n_conn),
      fanout("hello", M::none, 0, n_conn),
      fanout("reset", M::agree, 0, n_conn),
      fanout("unwatch", M::all_ok, 0, n_conn),
      fanout("client|setname", M::all_ok, 0, n_conn),
      fanout("client|tracking", M::all_ok, S | K,
             "invalidations come from every backend; REDIRECT is refused"),
      fanout("client|caching", M::all_ok, S, n_conn),
      fanout("client|no-evict", M::all_ok, S, n_conn),
      fanout("script|debug", M::all_ok, S, n_conn),
      fanout("monitor", M::all_ok, 0, "every backend's commands"),
      fanout("ping", M::ping),
      first("echo"),
      first("quit", "answered by the proxy"),
      first("client|reply", "the first backend"),
      first("client|getname", n_same),
      first("client|getredir", n_ids),
      first("client|id", n_ids),
      first("client|info", n_ids),
      first("client|list", n_ids),
      first("client|kill", n_ids),
      first("client|unblock", n_ids),
      first("client|trackinginfo", n_same),
      first("client|help", n_help),
      first("client", "a container: the server answers"),
      // ---------------------------------------------------------------- transactions
      first("multi", n_tx),
      first("exec", n_tx),
      first("discard", n_tx),
      // ---------------------------------------------------------------- server state
      fanout("config|set", M::all_ok, S | K, "server-wide state; port, tls-port and dir are refused"),
      fanout("config|resetstat", M::all_ok, S, n_server),
      fanout("config|rewrite", M::all_ok, S, n_server),
      first("config|get", "CONFIG SET keeps the backends alike: the first backend's"),
      first("config|help", n_help),
      first("config", "a container: the server answers"),
      fanout("function|load", M::agree, S, "every backend, where FCALL may be routed"),
      fanout("function|delete", M::all_ok, S, n_server),
      fanout("function|flush", M::all_ok, S, n_server),
      fanout("function|restore", M::all_ok, S, n_server),
      fanout("function|kill", M::any_ok, 0, "wherever a function runs"),
      first("function|dump", "FUNCTION LOAD keeps the backends alike: the first backend's"),
      first("function|list", "FUNCTION LOAD keeps the backends alike: the first backend's"),
      first("function|stats", n_first),
      first("function|help", n_help),
      first("function", "a container: the server answers"),
      fanout("script|load", M::agree, S, "every backend, where EVALSHA may be routed"),
      fanout("script|flush", M::all_ok, S, n_server),
      fanout("script|kill", M::any_ok, 0, "wherever a script runs"),
      first("script|exists", "the first backend, where keyless scripts run"),
      first("script|help", n_help),
      first("script", "a container: the server answers"),
      fanout("acl|setuser", M::all_ok, S, n_server),
      fanout("acl|deluser", M::agree, S, n_server),
      fanout("acl|load", M::all_ok, S, n_server),
      fanout("acl|save", M::all_ok, S, n_server),
      first("acl|cat", n_same),
      first("acl|dryrun", n_same),
      first("acl|genpass", n_same),
      first("acl|getuser", n_same),
      first("acl|list", n_same),
      first("acl|users", n_same),
      first("acl|whoami", n_same),
      first("acl|log", n_first),
      first("acl|help", n_help),
      first("acl", "a container: the server answers"),
      fanout("client|pause", M::all_ok, S, n_server),
      fanout("client|unpause", M::all_ok, S, n_server),
      fanout("bgsave", M::none, S, n_server),
      fanout("bgrewriteaof", M::none, S, n_server),
      fanout("save", M::all_ok, S, n_server),
      first("lastsave", n_first),
      fanout("slowlog|reset", M::all_ok, S, n_server),
      first("slowlog|get", n_first),
      first("slowlog|len", n_first),
      first("slowlog|help", n_help),
      first("slowlog", "a container: the server answers"),
      fanout("latency|reset", M::max, S, n_server),
      first("latency|doctor", n_first),
      first("latency|graph", n_first),
      first("latency|histogram", n_first),
      first("latency|history", n_first),
      first("latency|latest", n_first),
      first("latency|help", n_help),
      first("latency", "a container: the server answers"),
      fanout("memory|purge", M::all_ok, S, n_server),
      first("memory|doctor", n_first),
      first("memory|malloc-stats", n_first),
      first("memory|stats", n_first),
      first("memory|help", n_help),
      first("memory", "a container: the server answers"),
      fanout("module|load", M::all_ok, S, n_server),
      fanout("module|loadex", M::all_ok, S, n_server),
      fanout("module|unload", M::all_ok, S, n_server),
      first("module|list", n_same),
      first("module|help", n_help),
      first("module", "a container: the server answers"),
      fanout("info", M::info, 0, "merged field by field"),
      fanout("wait", M::min, 0, "every backend's replicas"),
      first("time"),
      first("role", n_first),
      first("lolwut"),
      first("pfselftest"),
      first("command", n_same),
      first("command|count", n_same),
      first("command|docs", n_same),
      first("command|getkeys", n_same),
      first("command|getkeysandflags", n_same),
      first("command|info", n_same),
      first("command|list", n_same),
      first("command|help", n_help),
      first("object|help", n_help),
      first("object", "a container: the server answers"),
      first("xgroup|help", n_help),
      first("xgroup", "a container: the server answers"),
      first("xinfo|help", n_help),
      first("xinfo", "a container: the server answers"),
      // ---------------------------------------------------------------- pub/sub
      first("subscribe", n_pubsub),
      first("psubscribe", n_pubsub),
      first("unsubscribe", n_pubsub),
      first("punsubscribe", n_pubsub),
      first("publish", n_pubsub),
      first("pubsub|channels", n_pubsub),
      first("pubsub|numpat", n_pubsub),
      first("pubsub|numsub", n_pubsub),
      first("pubsub|help", n_help),
      first("pubsub", "a container: the server answers"),
      fanout("pubsub|shardchannels", M::concat, 0, "shard channels live where their slot is"),
      fanout("pubsub|shardnumsub", M::numsub, 0, "shard channels live where their slot is"),
      // ---------------------------------------------------------------- cluster, replication
      first("cluster", n_cluster),
      first("cluster|addslots", n_cluster),
      first("cluster|addslotsrange", n_cluster),
      first("cluster|bumpepoch", n_cluster),
      first("cluster|count-failure-reports", n_cluster),
      first("cluster|countkeysinslot", n_cluster),
      first("cluster|delslots", n_cluster),
      first("cluster|delslotsrange", n_cluster),
      first("cluster|failover", n_cluster),
      first("cluster|flushslots", n_cluster),
      first("cluster|forget", n_cluster),
      first("cluster|getkeysinslot", n_cluster),
      first("cluster|help", n_cluster),
      first("cluster|info", n_cluster),
      first("cluster|keyslot", n_cluster),
      first("cluster|links", n_cluster),
      first("cluster|meet", n_cluster),
      first("cluster|myid", n_cluster),
      first("cluster|nodes", n_cluster),
      first("cluster|replicas", n_cluster),
      first("cluster|replicate", n_cluster),
      first("cluster|reset", n_cluster),
      first("cluster|saveconfig", n_cluster),
      first("cluster|set-config-epoch", n_cluster),
      first("cluster|setslot", n_cluster),
      first("cluster|shards", n_cluster),
      first("cluster|slaves", n_cluster),
      first("cluster|slots", n_cluster),
      first("asking", n_cluster),
      first("readonly", n_cluster),
      first("readwrite", n_cluster),
      first("replconf", "part of a replica's handshake; SYNC/PSYNC are refused"),
      refused("sync", "a replica needs one server behind the connection"),
      refused("psync", "a replica needs one server behind the connection"),
      refused("replicaof", "each backend would copy the whole source: set up replicas on the backends"),
      refused("slaveof", "each backend would copy the whole source: set up replicas on the backends"),
      refused("failover", "fail over the backends themselves"),
      refused("shutdown", "stop the backends themselves"),
      // ---------------------------------------------------------------- DEBUG subcommands
      first("debug", "by subcommand; others: the first backend"),
      debug_keyed("debug|object", 2),
      debug_keyed("debug|sdslen", 2),
      debug_keyed("debug|listpack", 2),
      debug_keyed("debug|quicklist", 2),
      debug_keyed("debug|htstats-key", 2),
      debug_keyed("debug|digest-value", -1),
      fanout("debug|digest", M::digest, 0, "the backends' digests XORed"),
      fanout("debug|reload", M::all_ok, S, "every backend; moves the flush epoch"),
      fanout("debug|loadaof", M::all_ok, S, n_server),
      fanout("debug|set-active-expire", M::all_ok, S, n_server),
      fanout("debug|set-skip-checksum-validation", M::all_ok, S, n_server),
      fanout("debug|set-disable-deny-scripts", M::all_ok, S, n_server),
      fanout("debug|quicklist-packed-threshold", M::all_ok, S, n_server),
      fanout("debug|pause-cron", M::all_ok, S, n_server),
      fanout("debug|replybuffer", M::all_ok, S, n_server),
      fanout("debug|aof-flush-sleep", M::all_ok, S, n_server),
      fanout("debug|change-repl-id", M::all_ok, S, n_server),
      fanout("debug|config-rewrite-force-all", M::all_ok, S, n_server),
      fanout("debug|mallctl", M::none, S, n_server),
      fanout("debug|mallctl-str", M::none, S, n_server),
      fanout("debug|sleep", M::all_ok, 0, "every backend sleeps"),
      refused("debug|populate", "it creates keys on one server whatever their slots"),
  };
}

struct tables {
  std::vector<class_rule> rules = make_rules();
  std::unordered_map<std::string_view, const class_rule*> by_name;
  tables() {
    for (const auto& r : rules) by_name.emplace(r.name, &r);
  }
};

const tables& all() {
  static const tables t;
  return t;
}

const class_rule k_keyed{"", C::keyed, M::none, 0, 0, 0, 0, "routed by its keys"};
const class_rule k_first{"", C::first, M::none, 0, 0, 0, 0, "keyless: the first backend"};
const class_rule k_unknown{"", C::first, M::none, 0, 0, 0, 0, "the server answers"};
constexpr std::string_view n_sort_pattern =
    "a pattern may name keys on other backends: give it the sorted key's {hashtag}";
const class_rule k_sort_pattern{"sort by/get", C::refused, M::none, 0, 0, 0, 0, n_sort_pattern};
const class_rule k_sort_ro_pattern{"sort_ro by/get", C::refused, M::none, 0, 0, 0, 0,
                                   n_sort_pattern};
const class_rule k_config_own{"config|set", C::refused, M::none, 0, 0, 0, 0,
                              "port, tls-port and dir are each backend's own: "
                              "set them on the backends"};
const class_rule k_tracking_redirect{"client|tracking redirect", C::refused, M::none, 0, 0, 0, 0,
                                     "the client ID names a connection of one backend: "
                                     "use RESP3 (HELLO 3) for invalidation messages"};

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

}  // namespace

const char* to_string(command_class c) {
  switch (c) {
    case C::keyed:
      return "keyed";
    case C::split:
      return "split";
    case C::fanout:
      return "fanout";
    case C::first:
      return "first";
    case C::refused:
      return "refused";
  }
  return "?";
}
std::ostream& operator<<(std::ostream& os, command_class c) { return os << to_string(c); }

const char* to_string(merge_rule r) {
  switch (r) {
    case M::none:
      return "none";
    case M::mget:
      return "mget";
    case M::all_ok:
      return "all_ok";
    case M::sum:
      return "sum";
    case M::concat:
      return "concat";
    case M::scan:
      return "scan";
    case M::random_value:
      return "random_value";
    case M::ping:
      return "ping";
    case M::info:
      return "info";
    case M::agree:
      return "agree";
    case M::any_ok:
      return "any_ok";
    case M::min:
      return "min";
    case M::max:
      return "max";
    case M::digest:
      return "digest";
    case M::numsub:
      return "numsub";
  }
  return "?";
}

const class_rule* listed_class(std::string_view name) {
  const auto& m = all().by_name;
  auto it = m.find(name);
  return it == m.end() ? nullptr : it->second;
}

const std::vector<class_rule>& listed_classes() { return all().rules; }

const class_rule& class_of(const policy::command_entry& cmd) {
  // The common case first: a plain command with keys, no lookup.
  const bool has_keys = cmd.first_key > 0 || cmd.has(policy::flag_movablekeys);
  if (cmd.kind == policy::command_kind::plain && has_keys) return k_keyed;
  if (const class_rule* r = listed_class(cmd.name)) return *r;
  return has_keys ? k_keyed : k_first;
}

const class_rule& debug_class(std::string_view sub) {
  char buf[64];
  constexpr std::string_view prefix = "debug|";
  if (sub.empty() || sub.size() + prefix.size() > sizeof buf) return *listed_class("debug");
  prefix.copy(buf, prefix.size());
  for (size_t i = 0; i < sub.size(); ++i) buf[prefix.size() + i] = lower(sub[i]);
  if (const class_rule* r = listed_class(std::string_view(buf, prefix.size() + sub.size()))) {
    return *r;
  }
  return *listed_class("debug");
}

const class_rule& unknown_class() { return k_unknown; }
const class_rule& sort_pattern_refusal(bool ro) { return ro ? k_sort_ro_pattern : k_sort_pattern; }
const class_rule& tracking_redirect_refusal() { return k_tracking_redirect; }
const class_rule& config_own_refusal() { return k_config_own; }

std::string display_name(std::string_view name) {
  std::string s(name);
  for (char& c : s) {
    if (c == '|') {
      c = ' ';
    } else if (c >= 'a' && c <= 'z') {
      c = static_cast<char>(c - 32);
    }
  }
  return s;
}

std::string describe(const class_rule& r) {
  std::string s = to_string(r.cls);
  if ((r.cls == C::fanout || r.cls == C::split) && r.merge != M::none) {
    s += " (";
    s += to_string(r.merge);
    s += ")";
  }
  if (r.cls == C::refused || r.has(rule_checked)) {
    s += "  # ";
    s += r.note;
  }
  return s;
}

int pattern_slot(std::string_view p) {
  // cluster.c patternHashSlot.
  long s = -1;  // index of the first '{'
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '*' || c == '?' || c == '[' || c == '\\') return -1;
    if (s == -1 && c == '{') {
      s = static_cast<long>(i);
    } else if (s >= 0 && c == '}' && static_cast<long>(i) == s + 1) {
      s = -2;  // "{}": the whole key is hashed
    } else if (s >= 0 && c == '}') {
      return crc16(p.data() + s + 1, i - static_cast<size_t>(s) - 1) & 0x3FFF;
    }
  }
  return crc16(p.data(), p.size()) & 0x3FFF;
}

}  // namespace respfence::routing

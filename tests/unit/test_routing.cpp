// routing/: CRC16 and hash slots, slot maps, key positions, the router; and the merge
// functions the proxy uses for split and fan-out commands.

#include <doctest/doctest.h>

#include <set>
#include <string>
#include <vector>

#include "policy/command_table.hpp"
#include "proxy/resp/errors.hpp"
#include "proxy/session/merge.hpp"
#include "routing/command_class.hpp"
#include "routing/router.hpp"

using namespace respfence;
using namespace respfence::routing;

namespace {

class args final : public arg_source {
 public:
  args(std::initializer_list<std::string> a) : a_(a) {}
  size_t argc() const override { return a_.size(); }
  std::string_view arg(size_t i) const override { return a_[i]; }

 private:
  std::vector<std::string> a_;
};

std::vector<size_t> keys_of(std::initializer_list<std::string> a) {
  args x(a);
  const policy::command_entry* c = policy::command_table::builtin().find(x.arg(0));
  REQUIRE(c != nullptr);
  std::vector<size_t> out;
  key_positions(*c, x, out);
  return out;
}

}  // namespace

TEST_CASE("CRC16 test vector and CLUSTER KEYSLOT values") {
  CHECK(crc16("123456789", 9) == 0x31C3);
  // Values from CLUSTER KEYSLOT on a real server.
  CHECK(key_slot("foo") == 12182);
  CHECK(key_slot("bar") == 5061);
  CHECK(key_slot("") == 0);
}

TEST_CASE("hashtags: only the first non-empty {...} counts") {
  CHECK(key_slot("{user}x") == key_slot("user"));
  CHECK(key_slot("a{user}b") == key_slot("user"));
  CHECK(key_slot("{}") == crc16("{}", 2) % 16384);        // empty tag: the whole key
  CHECK(key_slot("foo{}{bar}") == key_slot("foo{}{bar}"));
  CHECK(key_slot("foo{}{bar}") == crc16("foo{}{bar}", 10) % 16384);  // first {} is empty
  CHECK(key_slot("foo{{bar}}zap") == key_slot("{bar"));      // tag is "{bar"
  CHECK(key_slot("foo{bar}{zap}") == key_slot("bar"));
  CHECK(key_slot("{user1000}.following") == key_slot("{user1000}.followers"));
  CHECK(key_slot("no}open{") == crc16("no}open{", 8) % 16384);
}

TEST_CASE("slot maps: even split in order, explicit ranges") {
  const slot_map two = slot_map::even(2);
  CHECK(two.owner(0) == 0);
  CHECK(two.owner(8191) == 0);
  CHECK(two.owner(8192) == 1);
  CHECK(two.owner(16383) == 1);
  const slot_map three = slot_map::even(3);  // as redis-cli --cluster create
  CHECK(three.owner(5460) == 0);
  CHECK(three.owner(5461) == 1);
  CHECK(three.owner(10922) == 1);
  CHECK(three.owner(10923) == 2);
  CHECK(three.owner(16383) == 2);
  const slot_map m = slot_map::from_ranges({{{0, 100}, {200, 16383}}, {{101, 199}}});
  CHECK(m.owner(100) == 0);
  CHECK(m.owner(150) == 1);
  CHECK(m.owner(200) == 0);
  CHECK(m.backends() == 2);
}

TEST_CASE("key positions: first/last/step, and the movable-key rules") {
  CHECK(keys_of({"GET", "a"}) == std::vector<size_t>{1});
  CHECK(keys_of({"MGET", "a", "b", "c"}) == std::vector<size_t>{1, 2, 3});
  CHECK(keys_of({"MSET", "a", "1", "b", "2"}) == std::vector<size_t>{1, 3});
  CHECK(keys_of({"BLPOP", "a", "b", "0"}) == std::vector<size_t>{1, 2});
  CHECK(keys_of({"EVAL", "return 1", "2", "k1", "k2", "arg"}) == std::vector<size_t>{3, 4});
  CHECK(keys_of({"FCALL", "f", "1", "k1"}) == std::vector<size_t>{3});
  CHECK(keys_of({"ZUNIONSTORE", "dst", "2", "a", "b", "WEIGHTS", "1", "2"}) ==
        std::vector<size_t>{1, 3, 4});
  CHECK(keys_of({"ZUNION", "2", "a", "b"}) == std::vector<size_t>{2, 3});
  CHECK(keys_of({"XREAD", "COUNT", "2", "STREAMS", "s1", "s2", "0", "0"}) ==
        std::vector<size_t>{4, 5});
  CHECK(keys_of({"XREADGROUP", "GROUP", "g", "c", "STREAMS", "s1", ">"}) ==
        std::vector<size_t>{5});
  CHECK(keys_of({"SORT", "src", "BY", "w_*", "STORE", "dst"}) == std::vector<size_t>{1, 5});
  CHECK(keys_of({"BLMPOP", "0", "2", "a", "b", "LEFT"}) == std::vector<size_t>{3, 4});
  CHECK(keys_of({"MIGRATE", "h", "1", "", "0", "10", "KEYS", "a", "b"}) ==
        std::vector<size_t>{7, 8});
  CHECK(keys_of({"GEORADIUS", "g", "0", "0", "1", "km", "STORE", "d"}) ==
        std::vector<size_t>{1, 7});
  std::vector<size_t> out;
  args bad({"EVAL", "s", "5", "k"});
  CHECK_FALSE(key_positions(*policy::command_table::builtin().find("eval"), bad, out));
}

TEST_CASE("router: single mode sends everything to backend 0 without looking at keys") {
  auto r = router::single();
  std::vector<size_t> keys;
  args a({"MGET", "a", "b"});
  const route x = r->decide(policy::command_table::builtin().find("mget"), a, keys);
  CHECK(x.kind == route_kind::backend);
  CHECK(x.backend == 0);
  CHECK(keys.empty());
}

TEST_CASE("router: slots mode") {
  auto r = router::slots(slot_map::even(2));
  const auto& t = policy::command_table::builtin();
  std::vector<size_t> keys;
  // "foo" is slot 12182 (backend 1), "bar" 5061 (backend 0).
  auto decide = [&](std::initializer_list<std::string> a) {
    args x(a);
    const policy::command_entry* c = t.find(x.arg(0));
    if (c && c->container && x.argc() > 1) c = t.find_sub(*c, x.arg(1));
    return r->decide(c, x, keys);
  };
  CHECK(decide({"GET", "foo"}).backend == 1);
  CHECK(decide({"GET", "bar"}).backend == 0);
  CHECK(decide({"MGET", "foo", "bar"}).kind == route_kind::split);
  CHECK(decide({"MGET", "{bar}foo", "bar"}).kind == route_kind::backend);
  CHECK(decide({"RENAME", "foo", "bar"}).kind == route_kind::crossslot);
  CHECK(decide({"BLPOP", "foo", "bar", "0"}).kind == route_kind::crossslot);
  CHECK(decide({"EVAL", "s", "2", "foo", "bar"}).kind == route_kind::crossslot);
  CHECK(decide({"MSETNX", "foo", "1", "bar", "2"}).kind == route_kind::crossslot);
  CHECK(decide({"DBSIZE"}).kind == route_kind::fanout);
  CHECK(decide({"FLUSHALL"}).kind == route_kind::fanout);
  CHECK(decide({"SELECT", "1"}).kind == route_kind::fanout);
  CHECK(decide({"SCRIPT", "LOAD", "return 1"}).kind == route_kind::fanout);
  CHECK(decide({"TIME"}).kind == route_kind::backend);
  CHECK(decide({"TIME"}).backend == 0);
  CHECK(decide({"GET"}).backend == 0);  // arity error: one backend answers it
  CHECK(r->decide(nullptr, args({"NOSUCH", "foo"}), keys).backend == 0);
}

TEST_CASE("merge: MGET in key order, sums, all-OK, KEYS, RANDOMKEY, INFO") {
  using proxy::merge_state;
  merge_state m;
  m.reset(merge_rule::mget, 2);
  m.replies[0] = "*2\r\n$1\r\na\r\n$-1\r\n";
  m.replies[1] = "*1\r\n$1\r\nb\r\n";
  m.order = {{1, 0}, {0, 0}, {0, 1}};
  CHECK(merge_replies(m, false) == "*3\r\n$1\r\nb\r\n$1\r\na\r\n$-1\r\n");
  m.replies[1] = "-ERR boom\r\n";
  CHECK(merge_replies(m, false) == "-ERR boom\r\n");

  m.reset(merge_rule::sum, 3);
  m.replies = {":1\r\n", ":0\r\n", ":5\r\n"};
  CHECK(merge_replies(m, false) == ":6\r\n");

  m.reset(merge_rule::all_ok, 2);
  m.replies = {"+OK\r\n", "+OK\r\n"};
  CHECK(merge_replies(m, false) == "+OK\r\n");
  m.replies = {"+OK\r\n", "-LOADING x\r\n"};
  CHECK(merge_replies(m, false) == "-LOADING x\r\n");

  m.reset(merge_rule::concat, 2);
  m.replies = {"*1\r\n$1\r\na\r\n", "*2\r\n$1\r\nb\r\n$1\r\nc\r\n"};
  CHECK(merge_replies(m, false) == "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n");

  m.reset(merge_rule::random_value, 2);
  m.replies = {"$-1\r\n", "$1\r\nk\r\n"};
  CHECK(merge_replies(m, false) == "$1\r\nk\r\n");
  m.replies = {"_\r\n", "_\r\n"};
  CHECK(merge_replies(m, true) == "_\r\n");

  m.reset(merge_rule::info, 2);
  m.names = {"a", "b"};
  m.replies = {"$10\r\nx:1\r\ny:2\r\n\r\n", "=9\r\ntxt:z:3\r\n\r\n"};
  CHECK(merge_replies(m, false) == "$15\r\nx:1\r\ny:2\r\nz:3\r\n\r\n");
  m.replies = {"=14\r\ntxt:x:1\r\ny:2\r\n\r\n", "=9\r\ntxt:z:3\r\n\r\n"};
  CHECK(merge_replies(m, true) == "=19\r\ntxt:x:1\r\ny:2\r\nz:3\r\n\r\n");
}

TEST_CASE("SCAN cursors carry the shard and visit each shard once") {
  using namespace respfence::proxy;
  CHECK(shard_bits(1) == 0);
  CHECK(shard_bits(2) == 1);
  CHECK(shard_bits(3) == 2);
  scan_cursor c;
  REQUIRE(decode_scan_cursor("0", 3, c));
  CHECK(c.shard == 0);
  CHECK(c.backend_cursor == 0);
  // Shard 0 answers cursor 12: the client gets 12 << 2 | 0.
  const uint64_t next = next_scan_cursor(12, 0, 3);
  CHECK(next == 48);
  REQUIRE(decode_scan_cursor(std::to_string(next), 3, c));
  CHECK(c.shard == 0);
  CHECK(c.backend_cursor == 12);
  // Shard 0 done: shard 1 from its cursor 0; the last shard done: 0.
  CHECK(next_scan_cursor(0, 0, 3) == 1);
  CHECK(next_scan_cursor(0, 2, 3) == 0);
  CHECK_FALSE(decode_scan_cursor("3", 3, c));  // shard 3 of 3 does not exist
  CHECK_FALSE(decode_scan_cursor("abc", 3, c));
  merge_state m;
  m.reset(merge_rule::scan, 1);
  m.shards = 3;
  m.scan_shard = 1;
  m.replies[0] = "*2\r\n$1\r\n7\r\n*1\r\n$1\r\nk\r\n";
  CHECK(merge_replies(m, false) == "*2\r\n$2\r\n29\r\n*1\r\n$1\r\nk\r\n");
}

// ---------------------------------------------------------------- command classes (issue 13)

TEST_CASE("command classes: every command of the built-in table has exactly one class") {
  const auto& t = policy::command_table::builtin();
  const auto& listed = listed_classes();
  // No name is listed twice: one class per command.
  std::set<std::string_view> names;
  for (const auto& r : listed) {
    INFO(r.name);
    CHECK(names.insert(r.name).second);
    // Every listed name is a command of the table (DEBUG's subcommands are DEBUG's).
    if (r.name.substr(0, 6) != "debug|") CHECK(t.find(r.name) != nullptr);
    if (r.cls == command_class::split) CHECK(r.merge != merge_rule::none);
    if (r.cls == command_class::refused) CHECK_FALSE(r.note.empty());
  }
  size_t keyed_n = 0, split_n = 0, fanout_n = 0, first_n = 0, refused_n = 0;
  for (const auto& e : t.entries()) {
    INFO(e.name);
    const bool has_keys = e.first_key > 0 || e.has(policy::flag_movablekeys);
    // A keyless command is never classed by default: it is listed, with its reason.
    if (!has_keys) CHECK(listed_class(e.name) != nullptr);
    const class_rule& r = class_of(e);
    if (const class_rule* l = listed_class(e.name)) CHECK(&r == l);
    switch (r.cls) {
      case command_class::keyed:
        ++keyed_n;
        CHECK(has_keys);
        break;
      case command_class::split:
        ++split_n;
        CHECK(has_keys);
        break;
      case command_class::fanout:
        ++fanout_n;
        break;
      case command_class::first:
        ++first_n;
        break;
      case command_class::refused:
        ++refused_n;
        break;
    }
  }
  CHECK(keyed_n + split_n + fanout_n + first_n + refused_n == t.size());
  CHECK(split_n == 6);
  CHECK(refused_n == 6);  // SYNC, PSYNC, REPLICAOF, SLAVEOF, FAILOVER, SHUTDOWN
}

TEST_CASE("command classes: pinned") {
  const auto& t = policy::command_table::builtin();
  struct pin {
    const char* name;
    command_class cls;
    merge_rule merge;
  };
  using C = command_class;
  using M = merge_rule;
  const pin pins[] = {
      {"get", C::keyed, M::none},
      {"set", C::keyed, M::none},
      {"object|encoding", C::keyed, M::none},
      {"memory|usage", C::keyed, M::none},
      {"xinfo|stream", C::keyed, M::none},
      {"spublish", C::keyed, M::none},
      {"ssubscribe", C::keyed, M::none},
      {"sort", C::keyed, M::none},
      {"sort_ro", C::keyed, M::none},
      {"migrate", C::keyed, M::none},
      {"eval", C::keyed, M::none},
      {"fcall", C::keyed, M::none},
      {"watch", C::keyed, M::none},
      {"mget", C::split, M::mget},
      {"mset", C::split, M::all_ok},
      {"del", C::split, M::sum},
      {"unlink", C::split, M::sum},
      {"exists", C::split, M::sum},
      {"touch", C::split, M::sum},
      {"msetnx", C::keyed, M::none},
      {"flushall", C::fanout, M::all_ok},
      {"flushdb", C::fanout, M::all_ok},
      {"swapdb", C::fanout, M::all_ok},
      {"dbsize", C::fanout, M::sum},
      {"keys", C::fanout, M::concat},
      {"scan", C::fanout, M::scan},
      {"randomkey", C::fanout, M::random_value},
      {"ping", C::fanout, M::ping},
      {"info", C::fanout, M::info},
      {"select", C::fanout, M::all_ok},
      {"auth", C::fanout, M::all_ok},
      {"hello", C::fanout, M::none},
      {"reset", C::fanout, M::agree},
      {"unwatch", C::fanout, M::all_ok},
      {"client|setname", C::fanout, M::all_ok},
      {"client|tracking", C::fanout, M::all_ok},
      {"client|caching", C::fanout, M::all_ok},
      {"client|pause", C::fanout, M::all_ok},
      {"client|unpause", C::fanout, M::all_ok},
      {"client|no-evict", C::fanout, M::all_ok},
      {"config|set", C::fanout, M::all_ok},
      {"config|resetstat", C::fanout, M::all_ok},
      {"config|rewrite", C::fanout, M::all_ok},
      {"function|load", C::fanout, M::agree},
      {"function|delete", C::fanout, M::all_ok},
      {"function|flush", C::fanout, M::all_ok},
      {"function|restore", C::fanout, M::all_ok},
      {"function|kill", C::fanout, M::any_ok},
      {"script|load", C::fanout, M::agree},
      {"script|flush", C::fanout, M::all_ok},
      {"script|kill", C::fanout, M::any_ok},
      {"acl|setuser", C::fanout, M::all_ok},
      {"acl|deluser", C::fanout, M::agree},
      {"acl|load", C::fanout, M::all_ok},
      {"slowlog|reset", C::fanout, M::all_ok},
      {"latency|reset", C::fanout, M::max},
      {"memory|purge", C::fanout, M::all_ok},
      {"monitor", C::fanout, M::all_ok},
      {"wait", C::fanout, M::min},
      {"bgsave", C::fanout, M::none},
      {"save", C::fanout, M::all_ok},
      {"pubsub|shardchannels", C::fanout, M::concat},
      {"pubsub|shardnumsub", C::fanout, M::numsub},
      {"config|get", C::first, M::none},
      {"client|id", C::first, M::none},
      {"client|list", C::first, M::none},
      {"client|kill", C::first, M::none},
      {"client|reply", C::first, M::none},
      {"function|list", C::first, M::none},
      {"function|dump", C::first, M::none},
      {"slowlog|get", C::first, M::none},
      {"acl|log", C::first, M::none},
      {"subscribe", C::first, M::none},
      {"publish", C::first, M::none},
      {"time", C::first, M::none},
      {"echo", C::first, M::none},
      {"multi", C::first, M::none},
      {"exec", C::first, M::none},
      {"debug", C::first, M::none},
      {"cluster|info", C::first, M::none},
      {"cluster|keyslot", C::first, M::none},
      {"replconf", C::first, M::none},
      {"sync", C::refused, M::none},
      {"psync", C::refused, M::none},
      {"replicaof", C::refused, M::none},
      {"slaveof", C::refused, M::none},
      {"failover", C::refused, M::none},
      {"shutdown", C::refused, M::none},
  };
  for (const pin& p : pins) {
    INFO(p.name);
    std::string parent(p.name);
    const size_t bar = parent.find('|');
    const policy::command_entry* e =
        bar == std::string::npos ? t.find(p.name) : t.find_sub(*t.find(parent.substr(0, bar)), parent.substr(bar + 1));
    REQUIRE(e != nullptr);
    CHECK(class_of(*e).cls == p.cls);
    CHECK(class_of(*e).merge == p.merge);
  }
  // DEBUG, by its subcommand (any case).
  CHECK(debug_class("OBJECT").cls == C::keyed);
  CHECK(debug_class("digest-value").cls == C::keyed);
  CHECK(debug_class("Set-Active-Expire").cls == C::fanout);
  CHECK(debug_class("reload").cls == C::fanout);
  CHECK(debug_class("digest").merge == M::digest);
  CHECK(debug_class("sleep").cls == C::fanout);
  CHECK(debug_class("populate").cls == C::refused);
  CHECK(debug_class("protocol").cls == C::first);
  CHECK(debug_class("no-such-subcommand").cls == C::first);
  // Server-state fan-outs are refused inside MULTI; reads are not.
  CHECK(listed_class("config|set")->has(rule_server_state));
  CHECK(listed_class("function|load")->has(rule_server_state));
  CHECK_FALSE(listed_class("ping")->has(rule_server_state));
  CHECK_FALSE(listed_class("dbsize")->has(rule_server_state));
  CHECK(display_name("config|set") == "CONFIG SET");
  CHECK(describe(*listed_class("config|resetstat")) == "fanout (all_ok)");
  CHECK(describe(*listed_class("shutdown")) == "refused  # stop the backends themselves");
}

TEST_CASE("router: slots mode classes decided by arguments") {
  auto r = router::slots(slot_map::even(2));
  const auto& t = policy::command_table::builtin();
  std::vector<size_t> keys;
  // "foo" is slot 12182 (backend 1), "bar" 5061 (backend 0).
  auto decide = [&](std::initializer_list<std::string> a) {
    args x(a);
    const policy::command_entry* c = t.find(x.arg(0));
    if (c && c->container && x.argc() > 1) c = t.find_sub(*c, x.arg(1));
    return r->decide(c, x, keys);
  };
  CHECK(decide({"CONFIG", "SET", "maxmemory", "0"}).kind == route_kind::fanout);
  CHECK(decide({"CONFIG", "GET", "maxmemory"}).kind == route_kind::backend);
  CHECK(decide({"CONFIG", "SET", "maxmemory", "0", "PORT", "7000"}).kind == route_kind::refused);
  CHECK(decide({"CONFIG", "SET", "dir", "/tmp"}).kind == route_kind::refused);
  CHECK(decide({"CONFIG", "SET", "maxmemory", "port"}).kind == route_kind::fanout);
  CHECK(decide({"FUNCTION", "LOAD", "#!lua name=x\n"}).kind == route_kind::fanout);
  CHECK(decide({"SWAPDB", "0", "1"}).kind == route_kind::fanout);
  CHECK(decide({"SWAPDB", "0"}).kind == route_kind::backend);  // arity: the server answers
  CHECK(decide({"DEBUG", "OBJECT", "foo"}).backend == 1);
  CHECK(decide({"DEBUG", "OBJECT", "foo"}).kind == route_kind::backend);
  CHECK(decide({"debug", "object", "bar"}).backend == 0);
  CHECK(decide({"DEBUG", "DIGEST-VALUE", "foo", "bar"}).kind == route_kind::crossslot);
  CHECK(decide({"DEBUG", "SET-ACTIVE-EXPIRE", "0"}).kind == route_kind::fanout);
  CHECK(decide({"DEBUG", "DIGEST"}).rule->merge == merge_rule::digest);
  CHECK(decide({"DEBUG", "POPULATE", "10"}).kind == route_kind::refused);
  CHECK(decide({"DEBUG", "PROTOCOL", "map"}).kind == route_kind::backend);
  CHECK(decide({"MIGRATE", "h", "1", "foo", "0", "10"}).backend == 1);
  CHECK(decide({"REPLICAOF", "h", "1"}).kind == route_kind::refused);
  CHECK(decide({"CLUSTER", "INFO"}).kind == route_kind::backend);
  // SORT: BY/GET patterns must form keys of the sorted key's backend.
  CHECK(decide({"SORT", "foo"}).kind == route_kind::backend);
  CHECK(decide({"SORT", "foo", "BY", "nosort"}).kind == route_kind::backend);
  CHECK(decide({"SORT", "foo", "GET", "#"}).kind == route_kind::backend);
  CHECK(decide({"SORT", "foo", "BY", "w_*"}).kind == route_kind::refused);
  CHECK(decide({"SORT", "foo", "GET", "o_*"}).kind == route_kind::refused);
  CHECK(decide({"SORT_RO", "foo", "BY", "w_*"}).kind == route_kind::refused);
  CHECK(decide({"SORT", "foo", "BY", "{foo}w_*", "GET", "{foo}o_*->f"}).kind == route_kind::backend);
  CHECK(decide({"SORT", "foo", "LIMIT", "0", "1", "GET", "#", "STORE", "{foo}d"}).kind ==
        route_kind::backend);
  CHECK(decide({"SORT", "foo", "STORE", "bar"}).kind == route_kind::crossslot);
  const route sr = decide({"SORT", "foo", "BY", "w_*"});
  CHECK(proxy::err::not_supported(display_name(sr.rule->name), "slots", sr.rule->note) ==
        "-ERR respfence: 'SORT BY/GET' is not supported with routing.mode = \"slots\" (a pattern "
        "may name keys on other backends: give it the sorted key's {hashtag})\r\n");
  // CLIENT TRACKING: per connection on every backend; REDIRECT names one backend's client.
  CHECK(decide({"CLIENT", "TRACKING", "on"}).kind == route_kind::fanout);
  CHECK(decide({"CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "redirect"}).kind ==
        route_kind::fanout);
  CHECK(decide({"CLIENT", "TRACKING", "on", "REDIRECT", "5"}).kind == route_kind::refused);
  CHECK(decide({"CLIENT", "TRACKING", "off", "redirect", "5"}).kind == route_kind::refused);
  // Unknown commands: the first backend, whose server answers.
  CHECK(r->decide(nullptr, args({"NOSUCH"}), keys).kind == route_kind::backend);
}

TEST_CASE("pattern_slot: Redis Cluster's patternHashSlot") {
  CHECK(pattern_slot("w_*") == -1);
  CHECK(pattern_slot("{foo}w_*") == key_slot("foo"));
  CHECK(pattern_slot("{foo}w_*->field") == key_slot("foo"));
  CHECK(pattern_slot("w_{foo}*") == key_slot("foo"));
  CHECK(pattern_slot("*{foo}") == -1);
  CHECK(pattern_slot("{}*") == -1);
  CHECK(pattern_slot("abc") == key_slot("abc"));
  CHECK(pattern_slot("a\\*") == -1);
}

TEST_CASE("errors: a refused command names itself and the mode") {
  using proxy::err::not_supported;
  CHECK(not_supported("MIGRATE", "slots", "") ==
        "-ERR respfence: 'MIGRATE' is not supported with routing.mode = \"slots\"\r\n");
  CHECK(not_supported("DEBUG POPULATE", "cluster", "why") ==
        "-ERR respfence: 'DEBUG POPULATE' is not supported with routing.mode = \"cluster\" (why)\r\n");
  CHECK(proxy::err::fanout_in_multi("CONFIG SET", "slots") ==
        "-ERR respfence: 'CONFIG SET' inside MULTI would reach one shard; send it outside MULTI "
        "with routing.mode = \"slots\"\r\n");
}

TEST_CASE("merge: the fan-out rules of issue 13") {
  using proxy::merge_state;
  merge_state m;
  // agree: FUNCTION LOAD's library name, SCRIPT LOAD's sha.
  m.reset(merge_rule::agree, 3);
  m.replies = {"$3\r\nlib\r\n", "$3\r\nlib\r\n", "$3\r\nlib\r\n"};
  CHECK(merge_replies(m, false) == "$3\r\nlib\r\n");
  m.replies = {"$3\r\nlib\r\n", "-ERR Library 'lib' already exists\r\n", "$3\r\nlib\r\n"};
  CHECK(merge_replies(m, false) == "-ERR Library 'lib' already exists\r\n");
  m.replies = {"$3\r\nlib\r\n", "$3\r\nbib\r\n", "$3\r\nlib\r\n"};
  CHECK(merge_replies(m, false) == std::string(proxy::err::backends_disagree));
  // any_ok: the backend that ran the script answers +OK, the others NOTBUSY.
  m.reset(merge_rule::any_ok, 3);
  m.replies = {"-NOTBUSY No scripts in execution right now.\r\n", "+OK\r\n",
               "-NOTBUSY No scripts in execution right now.\r\n"};
  CHECK(merge_replies(m, false) == "+OK\r\n");
  m.replies = {"-NOTBUSY a\r\n", "-NOTBUSY b\r\n", "-NOTBUSY c\r\n"};
  CHECK(merge_replies(m, false) == "-NOTBUSY a\r\n");
  // min (WAIT) and max (LATENCY RESET).
  m.reset(merge_rule::min, 3);
  m.replies = {":2\r\n", ":1\r\n", ":3\r\n"};
  CHECK(merge_replies(m, false) == ":1\r\n");
  m.reset(merge_rule::max, 3);
  m.replies = {":2\r\n", ":1\r\n", ":3\r\n"};
  CHECK(merge_replies(m, false) == ":3\r\n");
  // digest: XOR; all zeros for empty backends.
  m.reset(merge_rule::digest, 3);
  const std::string zero = "+" + std::string(40, '0') + "\r\n";
  m.replies = {zero, zero, zero};
  CHECK(merge_replies(m, false) == zero);
  m.replies = {"+" + std::string(38, '0') + "0f\r\n", "+" + std::string(38, '0') + "f1\r\n", zero};
  CHECK(merge_replies(m, false) == "+" + std::string(38, '0') + "fe\r\n");
  // numsub: counts added by position, RESP2 array or RESP3 map.
  m.reset(merge_rule::numsub, 2);
  m.replies = {"*4\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n:0\r\n", "*4\r\n$1\r\na\r\n:0\r\n$1\r\nb\r\n:2\r\n"};
  CHECK(merge_replies(m, false) == "*4\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n:2\r\n");
  m.replies = {"%1\r\n$1\r\na\r\n:1\r\n", "%1\r\n$1\r\na\r\n:3\r\n"};
  CHECK(merge_replies(m, true) == "%1\r\n$1\r\na\r\n:4\r\n");
}

TEST_CASE("merge: INFO field by field") {
  const std::string a =
      "# Server\r\nredis_version:7.0.15\r\ntcp_port:1\r\n\r\n"
      "# Clients\r\nconnected_clients:3\r\nblocked_clients:1\r\n\r\n"
      "# Persistence\r\nrdb_changes_since_last_save:5\r\nrdb_bgsave_in_progress:0\r\n"
      "rdb_last_bgsave_status:ok\r\n\r\n"
      "# Commandstats\r\ncmdstat_get:calls=2,usec=10,usec_per_call=5.00,rejected_calls=0,failed_calls=0\r\n"
      "cmdstat_ping:calls=4,usec=4,usec_per_call=1.00,rejected_calls=0,failed_calls=0\r\n\r\n"
      "# Errorstats\r\nerrorstat_ERR:count=1\r\n\r\n"
      "# Keyspace\r\ndb9:keys=2,expires=1,avg_ttl=100\r\n";
  const std::string b =
      "# Server\r\nredis_version:7.0.15\r\ntcp_port:2\r\n\r\n"
      "# Clients\r\nconnected_clients:2\r\nblocked_clients:2\r\n\r\n"
      "# Persistence\r\nrdb_changes_since_last_save:7\r\nrdb_bgsave_in_progress:1\r\n"
      "rdb_last_bgsave_status:err\r\n\r\n"
      "# Commandstats\r\ncmdstat_get:calls=1,usec=5,usec_per_call=5.00,rejected_calls=0,failed_calls=1\r\n"
      "cmdstat_set:calls=1,usec=3,usec_per_call=3.00,rejected_calls=0,failed_calls=0\r\n"
      "cmdstat_ping:calls=4,usec=8,usec_per_call=2.00,rejected_calls=0,failed_calls=0\r\n\r\n"
      "# Errorstats\r\nerrorstat_ERR:count=2\r\nerrorstat_WRONGTYPE:count=1\r\n\r\n"
      "# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\ndb9:keys=4,expires=3,avg_ttl=200\r\n";
  const std::string merged = proxy::merge_info_text({a, b});
  CHECK(merged ==
        "# Server\r\nredis_version:7.0.15\r\ntcp_port:1\r\n\r\n"
        "# Clients\r\nconnected_clients:3\r\nblocked_clients:3\r\n\r\n"
        "# Persistence\r\nrdb_changes_since_last_save:12\r\nrdb_bgsave_in_progress:1\r\n"
        "rdb_last_bgsave_status:err\r\n\r\n"
        "# Commandstats\r\n"
        "cmdstat_get:calls=3,usec=15,usec_per_call=5.00,rejected_calls=0,failed_calls=1\r\n"
        "cmdstat_ping:calls=4,usec=8,usec_per_call=2.00,rejected_calls=0,failed_calls=0\r\n"
        "cmdstat_set:calls=1,usec=3,usec_per_call=3.00,rejected_calls=0,failed_calls=0\r\n\r\n"
        "# Errorstats\r\nerrorstat_ERR:count=3\r\nerrorstat_WRONGTYPE:count=1\r\n\r\n"
        "# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\ndb9:keys=6,expires=4,avg_ttl=175\r\n");
  // One section asked for: one section back.
  CHECK(proxy::merge_info_text({"# Clients\r\nblocked_clients:1\r\n", "# Clients\r\nblocked_clients:0\r\n"}) ==
        "# Clients\r\nblocked_clients:1\r\n");
  // An empty keyspace stays an empty section.
  CHECK(proxy::merge_info_text({"# Keyspace\r\n", "# Keyspace\r\n"}) == "# Keyspace\r\n");
}

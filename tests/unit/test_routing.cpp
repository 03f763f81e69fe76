// routing/: CRC16 and hash slots, slot maps, key positions, the router; and the merge
// functions the proxy uses for split and fan-out commands.

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "policy/command_table.hpp"
#include "proxy/merge.hpp"
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

  m.reset(merge_rule::first_value, 2);
  m.replies = {"$-1\r\n", "$1\r\nk\r\n"};
  CHECK(merge_replies(m, false) == "$1\r\nk\r\n");
  m.replies = {"_\r\n", "_\r\n"};
  CHECK(merge_replies(m, true) == "_\r\n");

  m.reset(merge_rule::info, 2);
  m.names = {"a", "b"};
  m.replies = {"$7\r\nx:1\r\ny:2\r\n", "=8\r\ntxt:z:3\r\n"};
  const std::string info = merge_replies(m, false);
  CHECK(info.find("# respfence backend a\r\nx:1\r\ny:2") != std::string::npos);
  CHECK(info.find("# respfence backend b\r\nz:3") != std::string::npos);
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

// Cluster mode in the session core: -MOVED, -ASK, -TRYAGAIN, -CLUSTERDOWN never reach
// the client; and the topology parsers. The fake env names backends "node:<index>".

#include <chrono>
#include <doctest/doctest.h>

#include "proxy/cluster_topology.hpp"
#include "proxy/resp/errors.hpp"
#include "session_fixture.hpp"

using namespace respfence;
using namespace respfence::test;

namespace {
// Every slot on node 0 until told otherwise: the map is stale on purpose.
session_fixture cluster(policy::policy_config cfg = {}) {
  return session_fixture(2, std::move(cfg), routing::router::cluster(routing::slot_map(), 2));
}
}  // namespace

TEST_CASE("parse_redirect") {
  auto m = proxy::err::parse_redirect("-MOVED 3999 127.0.0.1:6381\r\n");
  CHECK(m.kind == proxy::err::redirect_kind::moved);
  CHECK(m.slot == 3999);
  CHECK(m.target == "127.0.0.1:6381");
  auto a = proxy::err::parse_redirect("-ASK 12 [::1]:7000");
  CHECK(a.kind == proxy::err::redirect_kind::ask);
  CHECK(a.target == "[::1]:7000");
  CHECK(proxy::err::parse_redirect("-TRYAGAIN Multiple keys request during rehashing of slot").kind ==
        proxy::err::redirect_kind::tryagain);
  CHECK(proxy::err::parse_redirect("-CLUSTERDOWN The cluster is down").kind ==
        proxy::err::redirect_kind::clusterdown);
  CHECK(proxy::err::parse_redirect("-MOVEDX 1 a:1").kind == proxy::err::redirect_kind::none);
  CHECK(proxy::err::parse_redirect("-MOVED 99999 a:1").kind == proxy::err::redirect_kind::none);
  CHECK(proxy::err::parse_redirect("-ERR MOVED").kind == proxy::err::redirect_kind::none);
}

TEST_CASE("-MOVED: sent again to the node it names, and the topology is refreshed") {
  session_fixture f = cluster();
  f.client(cmd({"GET", "k"}) + cmd({"ECHO", "after"}));
  CHECK(f.written(0) == cmd({"GET", "k"}) + cmd({"ECHO", "after"}));
  f.reply("-MOVED 7629 node:1\r\n$5\r\nafter\r\n", 0);
  CHECK(f.output().empty());
  CHECK(f.env.topology_refreshes == 1);
  CHECK(f.written(1) == cmd({"GET", "k"}));
  f.reply("$1\r\nv\r\n", 1);
  CHECK(f.output() == "$1\r\nv\r\n$5\r\nafter\r\n");
}

TEST_CASE("-ASK: ASKING and the command go to the importing node, once") {
  session_fixture f = cluster();
  f.client(cmd({"SET", "k", "1"}));
  f.written(0);
  f.reply("-ASK 7629 node:1\r\n", 0);
  CHECK(f.env.topology_refreshes == 0);
  CHECK(f.written(1) == cmd({"ASKING"}) + cmd({"SET", "k", "1"}));
  f.reply("+OK\r\n+OK\r\n", 1);
  CHECK(f.output() == "+OK\r\n");
  // The map was not changed: the next command for the slot goes where it did.
  f.client(cmd({"GET", "k"}));
  CHECK(f.written(0) == cmd({"GET", "k"}));
}

TEST_CASE("-TRYAGAIN: a short pause, then the same command again") {
  session_fixture f = cluster();
  f.client(cmd({"MGET", "{a}1", "{a}2"}));
  f.written(0);
  f.reply("-TRYAGAIN Multiple keys request during rehashing of slot\r\n", 0);
  CHECK(f.output().empty());
  f.core.tick(f.env.now + 5);
  CHECK(f.written(0).empty());
  f.core.tick(f.env.now + 20);
  CHECK(f.written(0) == cmd({"MGET", "{a}1", "{a}2"}));
  f.reply("*2\r\n$1\r\nx\r\n$1\r\ny\r\n", 0);
  CHECK(f.output() == "*2\r\n$1\r\nx\r\n$1\r\ny\r\n");
}

TEST_CASE("-CLUSTERDOWN: waits like a queued command, surfaces under reject") {
  session_fixture f = cluster();
  f.client(cmd({"GET", "k"}));
  f.written(0);
  f.reply("-CLUSTERDOWN The cluster is down\r\n", 0);
  CHECK(f.output().empty());
  f.core.tick(f.env.now + 1000);
  CHECK(f.written(0) == cmd({"GET", "k"}));
  f.reply("$-1\r\n", 0);
  CHECK(f.output() == "$-1\r\n");

  policy::policy_config cfg;
  cfg.on_loading = policy::action::reject;
  session_fixture g = cluster(cfg);
  g.client(cmd({"GET", "k"}));
  g.written(0);
  g.reply("-CLUSTERDOWN The cluster is down\r\n", 0);
  CHECK(g.output() == "-CLUSTERDOWN The cluster is down\r\n");
}

TEST_CASE("-CLUSTERDOWN: retried for as long as the deadline allows, not a fixed count") {
  // A primary that has just loaded answers CLUSTERDOWN until the others clear its FAIL
  // flag; that takes seconds and far more than the 16 retries a redirection gets.
  session_fixture f = cluster();
  // The deadline counts from the command's arrival, stamped with the steady clock.
  const auto steady_ms = [] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  };
  f.env.now = steady_ms();
  f.client(cmd({"GET", "k"}));
  f.written(0);
  for (int i = 0; i < 19; ++i) {  // 19 retries, 500 ms apart (the longest backoff): 9.5 s
    f.reply("-CLUSTERDOWN The cluster is down\r\n", 0);
    CHECK(f.output().empty());
    f.env.now += 500;
    f.core.tick(f.env.now);
    REQUIRE(f.written(0) == cmd({"GET", "k"}));
  }
  f.reply("$1\r\nv\r\n", 0);
  CHECK(f.output() == "$1\r\nv\r\n");
  // Past the deadline (10 s by default) the client is told.
  f.env.now = steady_ms();
  f.client(cmd({"GET", "k"}));
  f.written(0);
  std::string out;
  int tries = 0;
  for (; tries < 50 && out.empty(); ++tries) {
    f.reply("-CLUSTERDOWN The cluster is down\r\n", 0);
    out = f.output();
    f.env.now += 500;
    f.core.tick(f.env.now);
    f.written(0);
  }
  CHECK(out == "-CLUSTERDOWN The cluster is down\r\n");
  CHECK(tries >= 19);
}

TEST_CASE("a split command: one part moved, the merged answer is still in key order") {
  session_fixture f = cluster();
  // Different slots: in cluster mode MGET is split per slot, even on one node.
  f.client(cmd({"MGET", "foo", "bar"}));
  const std::string w = f.written(0);
  CHECK(w == cmd({"MGET", "foo"}) + cmd({"MGET", "bar"}));
  f.reply("*1\r\n$1\r\nF\r\n-MOVED 5061 node:1\r\n", 0);
  CHECK(f.output().empty());
  CHECK(f.written(1) == cmd({"MGET", "bar"}));
  f.reply("*1\r\n$1\r\nB\r\n", 1);
  CHECK(f.output() == "*2\r\n$1\r\nF\r\n$1\r\nB\r\n");
}

TEST_CASE("redirections are bounded") {
  session_fixture f = cluster();
  f.client(cmd({"GET", "k"}));
  std::string last;
  std::string out;
  int redirects = 0;
  for (int i = 0; i < 40 && out.empty(); ++i) {
    const size_t from = i % 2;
    if (f.written(from).empty()) break;
    last = "-MOVED 7629 node:" + std::to_string(1 - from) + "\r\n";
    f.reply(last, from);
    ++redirects;
    out = f.output();
  }
  CHECK(out == last);  // the server's own answer, once the proxy gives up
  CHECK(redirects == 17);
}

TEST_CASE("CLUSTER SHARDS and CLUSTER SLOTS replies") {
  using proxy::resp_value;
  auto str = [](const std::string& s) { resp_value v; v.type = '$'; v.str = s; return v; };
  auto num = [](int64_t n) { resp_value v; v.type = ':'; v.integer = n; return v; };
  auto arr = [](std::vector<resp_value> e) { resp_value v; v.type = '*'; v.elems = std::move(e); v.integer = static_cast<int64_t>(v.elems.size()); return v; };
  const resp_value node_primary = arr({str("id"), str("abc"), str("port"), num(7000), str("ip"),
                                       str("127.0.0.1"), str("endpoint"), str("127.0.0.1"),
                                       str("role"), str("master"), str("health"), str("online")});
  const resp_value node_replica = arr({str("port"), num(7003), str("ip"), str("127.0.0.1"),
                                       str("role"), str("replica")});
  const resp_value shard = arr({str("slots"), arr({num(0), num(100), num(200), num(300)}),
                                str("nodes"), arr({node_replica, node_primary})});
  auto r = proxy::parse_cluster_shards(arr({shard}));
  REQUIRE(r);
  REQUIRE(r->size() == 2);
  CHECK((*r)[0].first == 0);
  CHECK((*r)[0].last == 100);
  CHECK((*r)[1].first == 200);
  CHECK((*r)[0].primary == "127.0.0.1:7000");
  CHECK((*r)[0].replicas == std::vector<std::string>{"127.0.0.1:7003"});
  const resp_value slots = arr({arr({num(0), num(5460), arr({str("127.0.0.1"), num(7001), str("id")})})});
  auto s = proxy::parse_cluster_slots(slots);
  REQUIRE(s);
  CHECK((*s)[0].last == 5460);
  CHECK((*s)[0].primary == "127.0.0.1:7001");
  CHECK((*s)[0].replicas.empty());
  CHECK_FALSE(proxy::parse_cluster_slots(arr({arr({num(0), num(99999), arr({str("h"), num(1)})})})));
}

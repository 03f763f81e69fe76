// policy/: the decision table, the effective policy table, the command table, the
// backend state machine and the flush epoch bookkeeping.

#include <doctest/doctest.h>

#include <sstream>

#include "policy/backend_state.hpp"
#include "policy/command_table.hpp"
#include "policy/loading_policy.hpp"

using namespace respfence::policy;

TEST_CASE("decide: every action x state x loading-safe combination") {
  const backend_state states[] = {backend_state::connecting, backend_state::loading,
                                  backend_state::ready, backend_state::down,
                                  backend_state::busy};
  const action actions[] = {action::forward, action::queue, action::reject};
  for (backend_state st : states) {
    for (action a : actions) {
      for (bool safe : {false, true}) {
        CAPTURE(st);
        CAPTURE(a);
        CAPTURE(safe);
        // The table as policy_table builds it: loading-safe commands forward unless a
        // [policy.commands] entry says otherwise.
        for (bool overridden : {false, true}) {
          rule r;
          r.loading_safe = safe;
          r.overridden = overridden;
          r.act = (safe && !overridden) ? action::forward : a;
          decide_input in;
          in.state = st;
          in.r = r;
          const decision d = decide(in);
          if (st == backend_state::ready || st == backend_state::busy) {
            CHECK(d == decision::forward);
          } else if (safe && !overridden) {
            CHECK(d == decision::forward);
          } else {
            const decision want = a == action::forward ? decision::forward
                                  : a == action::queue ? decision::queue
                                                       : decision::reject;
            CHECK(d == want);
          }
        }
      }
    }
  }
}

TEST_CASE("decide: PING while loading is rewritten, or answered, never queued") {
  decide_input in;
  in.is_ping = true;
  in.r.act = action::queue;
  in.state = backend_state::loading;
  CHECK(decide(in) == decision::rewrite_ping);
  in.echo_loading_safe = false;  // Redis < 7.0.3: ECHO is not loading-safe
  CHECK(decide(in) == decision::answer_pong);
  in.echo_loading_safe = true;
  in.resp2_subscribed = true;  // ECHO is not allowed there: PING is left alone
  CHECK(decide(in) == decision::queue);
  in.resp2_subscribed = false;
  in.ping_rewrite = false;
  CHECK(decide(in) == decision::queue);
  in.ping_rewrite = true;
  in.r.overridden = true;  // PING = "reject" wins over the rewrite
  in.r.act = action::reject;
  CHECK(decide(in) == decision::reject);
  in.r.overridden = false;
  in.r.act = action::queue;
  in.state = backend_state::down;  // no backend to answer: the normal rule
  CHECK(decide(in) == decision::queue);
  in.state = backend_state::ready;  // ready: PING passes through untouched
  CHECK(decide(in) == decision::forward);
}

TEST_CASE("command table: case-insensitive lookup, subcommands, flags, keys") {
  const command_table& t = command_table::builtin();
  const command_entry* get = t.find("gEt");
  REQUIRE(get != nullptr);
  CHECK(get->name == "get");
  CHECK(get->arity == 2);
  CHECK(get->first_key == 1);
  CHECK(get->has(flag_readonly));
  CHECK(t.find("nosuch") == nullptr);
  CHECK(t.find(std::string(200, 'a')) == nullptr);
  const command_entry* client = t.find("CLIENT");
  REQUIRE(client != nullptr);
  CHECK(client->container);
  const command_entry* setname = t.find_sub(*client, "SetName");
  REQUIRE(setname != nullptr);
  CHECK(setname->name == "client|setname");
  CHECK(setname->kind == command_kind::client_setname);
  CHECK(t.find_sub(*client, "bogus") == nullptr);
  CHECK(t.find("blpop")->has(flag_blocking));
  CHECK(t.find("flushall")->kind == command_kind::flushall);
  CHECK(t.find("mset")->key_step == 2);
  CHECK(t.find("get")->arity_ok(2));
  CHECK_FALSE(t.find("get")->arity_ok(3));
  CHECK(t.find("mget")->arity_ok(5));
  CHECK_FALSE(t.find("mget")->arity_ok(1));
}

TEST_CASE("built-in loading-safe set comes from the shipped list") {
  const auto& safe = builtin_loading_safe();
  CHECK(safe.count("echo") == 1);
  CHECK(safe.count("info") == 1);
  CHECK(safe.count("config|get") == 1);
  CHECK(safe.count("client|setname") == 1);
  CHECK(safe.count("ping") == 0);
  CHECK(safe.count("get") == 0);
}

TEST_CASE("policy table: defaults, overrides, container overrides, unknown names") {
  policy_config cfg;
  cfg.on_loading = action::queue;
  cfg.queue_timeout_ms = 1234;
  cfg.commands.push_back({"get", action::reject, std::nullopt});
  cfg.commands.push_back({"set", action::queue, 300u});
  cfg.commands.push_back({"config", action::forward, std::nullopt});
  cfg.commands.push_back({"config|set", action::reject, std::nullopt});
  cfg.commands.push_back({"mymodule.cmd", action::forward, std::nullopt});
  auto t = policy_table::build(cfg);
  const command_table& c = t->commands();
  CHECK(t->rule_for(*c.find("get")).act == action::reject);
  CHECK(t->rule_for(*c.find("get")).overridden);
  CHECK(t->rule_for(*c.find("set")).timeout_ms == 300);
  CHECK(t->rule_for(*c.find("incr")).act == action::queue);
  CHECK(t->rule_for(*c.find("incr")).timeout_ms == 1234);
  CHECK(t->rule_for(*c.find("echo")).act == action::forward);
  CHECK(t->rule_for(*c.find("echo")).loading_safe);
  const command_entry* config = c.find("config");
  CHECK(t->rule_for(*c.find_sub(*config, "get")).act == action::forward);
  CHECK(t->rule_for(*c.find_sub(*config, "set")).act == action::reject);
  REQUIRE(c.find("mymodule.cmd") != nullptr);
  CHECK(t->rule_for(*c.find("mymodule.cmd")).act == action::forward);
  CHECK(t->unknown_rule().act == action::forward);
  std::ostringstream os;
  t->print(os);
  CHECK(os.str().find("get ") != std::string::npos);
  CHECK(os.str().find("(override)") != std::string::npos);
}

TEST_CASE("policy table: learned flags refine the defaults") {
  learned_commands learned;
  command_entry echo;
  echo.name = "echo";
  echo.arity = 2;
  echo.flags = flag_fast;  // an old server: ECHO without `loading`
  command_entry mod;
  mod.name = "mod.safe";
  mod.arity = -1;
  mod.flags = flag_loading;
  learned.entries = {echo, mod};
  CHECK_FALSE(learned.echo_loading_safe());
  policy_config cfg;
  auto t = policy_table::build(cfg, &learned);
  CHECK(t->learned());
  CHECK_FALSE(t->rule_for(*t->commands().find("echo")).loading_safe);
  CHECK(t->rule_for(*t->commands().find("mod.safe")).loading_safe);
  cfg.learn_from_backend = false;
  auto u = policy_table::build(cfg, &learned);
  CHECK(u->rule_for(*u->commands().find("echo")).loading_safe);
  CHECK(u->commands().find("mod.safe") == nullptr);
}

TEST_CASE("backend state machine: every transition") {
  backend_state_machine m;
  CHECK(m.state() == backend_state::connecting);
  // connecting -> loading / ready on the first answer
  auto t = m.on_probe_answer(true);
  CHECK(t.from == backend_state::connecting);
  CHECK(t.to == backend_state::loading);
  CHECK_FALSE(t.loading_completed());
  t = m.on_probe_answer(false);
  CHECK(t.to == backend_state::ready);
  CHECK(t.loading_completed());
  // ready -> busy -> ready: a long script is not a new dataset
  t = m.on_probe_busy();
  CHECK(t.from == backend_state::ready);
  CHECK(t.to == backend_state::busy);
  CHECK_FALSE(m.on_probe_busy().changed());
  t = m.on_probe_answer(false);
  CHECK(t.to == backend_state::ready);
  CHECK_FALSE(t.loading_completed());
  // a -LOADING reply changes nothing here: only the prober's answer does
  t = m.on_probe_answer(true);
  CHECK(t.to == backend_state::loading);
  // loading -> down on a failed probe, down -> connecting on reconnect
  t = m.on_probe_failed();
  CHECK(t.to == backend_state::down);
  CHECK_FALSE(m.on_probe_failed().changed());
  t = m.on_probe_connected();
  CHECK(t.from == backend_state::down);
  CHECK(t.to == backend_state::connecting);
  CHECK_FALSE(m.on_probe_connected().changed());  // only down has a reconnect
  // down -> loading is never "loading completed"
  m.on_probe_failed();
  t = m.on_probe_answer(false);
  CHECK(t.to == backend_state::ready);
  CHECK_FALSE(t.loading_completed());
}

TEST_CASE("backend state machine: a probe unanswered in time") {
  backend_state_machine m;
  // Never answered yet: down, as on a failure.
  CHECK(m.on_probe_timeout().to == backend_state::down);
  m.on_probe_connected();
  m.on_probe_answer(false);
  // Serving: busy (a slow command holds the server), and a reconnect keeps it so.
  auto t = m.on_probe_timeout();
  CHECK(t.from == backend_state::ready);
  CHECK(t.to == backend_state::busy);
  CHECK(serving(m.state()));
  CHECK_FALSE(m.on_probe_timeout().changed());
  CHECK_FALSE(m.on_probe_connected().changed());
  // A refused reconnect is down; an answer is ready again, not a new dataset.
  CHECK(m.on_probe_failed().to == backend_state::down);
  m.on_probe_connected();
  CHECK_FALSE(m.on_probe_answer(false).loading_completed());
  m.on_probe_busy();
  CHECK(m.on_probe_timeout().to == backend_state::busy);
  // Loading: a silent probe is not "serving".
  m.on_probe_answer(true);
  CHECK(m.on_probe_timeout().to == backend_state::down);
}

TEST_CASE("parse_info reads the prober's fields") {
  const std::string info =
      "# Server\r\nredis_version:7.0.15\r\nrun_id:abc123\r\n"
      "# Persistence\r\nloading:1\r\nloading_loaded_perc:41.25\r\nloading_eta_seconds:6\r\n"
      "# Commandstats\r\ncmdstat_get:calls=9,usec=1\r\ncmdstat_flushall:calls=3,usec=10\r\n"
      "cmdstat_flushdb:calls=2,usec=5,usec_per_call=2.5\r\n";
  const probe_info p = parse_info(info);
  CHECK(p.loading);
  CHECK(p.loading_perc == doctest::Approx(41.25));
  CHECK(p.loading_eta_s == 6);
  CHECK(p.run_id == "abc123");
  CHECK(p.flush_calls == 5);
  CHECK(parse_info("server_name:valkey\r\n").server_name == "valkey");
  CHECK_FALSE(p.cluster_enabled);
  CHECK(p.cluster_state.empty());
  const probe_info c = parse_info("# Cluster\r\ncluster_enabled:1\r\n");
  CHECK(c.cluster_enabled);
  CHECK(parse_info("cluster_state:fail\r\ncluster_slots_assigned:16384\r\n").cluster_state ==
        "fail");
}

TEST_CASE("flush epoch tracker: external flushes, the proxy's own, restarts, resets") {
  flush_epoch_tracker t;
  probe_info p;
  p.run_id = "r1";
  CHECK(t.on_probe(p, 0).n == 0);  // the first probe is the baseline
  p.flush_calls = 1;               // someone flushed around the proxy
  CHECK(t.on_probe(p, 0).n == 1);
  CHECK(t.on_probe(p, 0).n == 0);
  // The proxy sent two flushes and already bumped for them: the server's counter
  // catching up is not news.
  CHECK(t.on_probe(p, 2).n == 0);  // not run yet
  p.flush_calls = 3;
  CHECK(t.on_probe(p, 2).n == 0);
  p.flush_calls = 5;  // two more from outside
  const epoch_bump b = t.on_probe(p, 2);
  CHECK(b.n == 2);
  CHECK(std::string(b.reason) == "external_flush");
  p.run_id = "r2";  // restart
  p.flush_calls = 0;
  const epoch_bump r = t.on_probe(p, 2);
  CHECK(r.n == 1);
  CHECK(std::string(r.reason) == "restart");
  p.flush_calls = 1;
  CHECK(t.on_probe(p, 2).n == 1);
  p.flush_calls = 0;  // CONFIG RESETSTAT: counters go back, no bump
  CHECK(t.on_probe(p, 2).n == 0);
  p.flush_calls = 1;
  CHECK(t.on_probe(p, 2).n == 1);
}

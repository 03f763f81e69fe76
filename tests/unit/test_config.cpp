// The TOML loader: every key parses, every error names file:line:column.

#include <doctest/doctest.h>

#include "policy/config_loader.hpp"

using namespace respfence::policy;

namespace {
load_result load(const std::string& text) { return load_config_text(text, "test.toml"); }
}  // namespace

TEST_CASE("a full config parses, with every key") {
  const load_result r = load(R"(
[server]
listen = "127.0.0.1:7000"
admin = ""
threads = 4
client_output_limit = 1048576
shutdown_timeout_ms = 100
log_level = "warn"

[[backend]]
name = "a"
address = "127.0.0.1:6379"
username = "u"
password = "p"
slots = "0-8191"

[[backend]]
name = "b"
address = "unix:/tmp/redis.sock"
slots = "8192-16383"

[routing]
mode = "slots"

[policy]
on_loading = "reject"
queue_timeout_ms = 500
queue_max = 10
queue_max_bytes = 1000
ping_rewrite = false
learn_from_backend = false
flush_fence = true

[policy.commands]
KEYS = "reject"
"CONFIG|SET" = "forward"
GET = { action = "queue", timeout_ms = 50 }

[health]
interval_ms = 500
loading_interval_ms = 50
timeout_ms = 300
)");
  REQUIRE_MESSAGE(r.ok(), r.error);
  const config& c = r.cfg;
  CHECK(c.server.listen == "127.0.0.1:7000");
  CHECK(c.server.admin.empty());
  CHECK(c.server.threads == 4);
  CHECK(c.server.log == log_level::warn);
  REQUIRE(c.backends.size() == 2);
  CHECK(c.backends[0].password == "p");
  CHECK(c.backends[0].slots.size() == 1);
  CHECK(c.backends[1].slots[0].first == 8192);
  CHECK(c.routing.mode == routing_mode::slots);
  CHECK(c.policy.on_loading == action::reject);
  CHECK_FALSE(c.policy.ping_rewrite);
  REQUIRE(c.policy.commands.size() == 3);
  auto find = [&](const std::string& n) -> const command_override* {
    for (const auto& o : c.policy.commands) {
      if (o.name == n) return &o;
    }
    return nullptr;
  };
  REQUIRE(find("keys") != nullptr);
  CHECK(find("keys")->act == action::reject);
  REQUIRE(find("config|set") != nullptr);
  CHECK(find("config|set")->act == action::forward);
  REQUIRE(find("get") != nullptr);
  CHECK(find("get")->timeout_ms == 50u);
  CHECK(c.health.timeout_ms == 300);
}

TEST_CASE("defaults: one backend and nothing else") {
  const load_result r = load("[[backend]]\naddress = \"127.0.0.1:6379\"\n");
  REQUIRE_MESSAGE(r.ok(), r.error);
  CHECK(r.cfg.server.listen == "127.0.0.1:7379");
  CHECK(r.cfg.server.admin == "127.0.0.1:9379");
  CHECK(r.cfg.server.threads == 1);  // README: one event loop measured fastest on 2 cores
  CHECK(r.cfg.backends[0].name == "main");
  CHECK(r.cfg.policy.on_loading == action::queue);
  CHECK(r.cfg.policy.queue_timeout_ms == 10000);
  CHECK(r.cfg.policy.queue_max == 100000);
  CHECK(r.cfg.policy.queue_max_bytes == 268435456);
  CHECK(r.cfg.health.interval_ms == 1000);
  CHECK(r.cfg.health.loading_interval_ms == 100);
  CHECK(r.cfg.health.timeout_ms == 2000);
}

TEST_CASE("errors carry file:line:column") {
  struct bad {
    const char* text;
    const char* where;
    const char* what;
  };
  const bad cases[] = {
      {"[[backend]]\naddress = \"x:1\"\n[server]\nlisten = 7\n", "test.toml:4:10: ", "must be a string"},
      {"[[backend]]\n[server]\nbogus = 1\n", "test.toml:3:1: ", "unknown key 'bogus'"},
      {"[[backend]]\n[policy]\non_loading = \"maybe\"\n", "test.toml:3:14: ", "must be \"queue\""},
      {"[[backend]]\n[policy.commands]\nGET = { action = \"queue\", wait = 1 }\n", "test.toml:3:", "unknown key 'wait'"},
      {"[[backend]]\n[policy.commands]\nGET = 5\n", "test.toml:3:7: ", "must be an action"},
      {"[[backend]]\naddress = \"nohost\"\n", "test.toml:2:11: ", "host:port"},
      {"[[backend]]\nslots = \"5-1\"\n", "test.toml:2:9: ", "backwards"},
      {"[[backend]]\n[health]\ninterval_ms = 0\n", "test.toml:3:15: ", "out of range"},
      {"[[backend]]\n[policy]\nqueue_max = -1\n", "test.toml:3:13: ", "out of range"},
      {"[[backend]]\n[routing]\nmode = \"ring\"\n", "test.toml:3:8: ",
       "routing.mode must be \"single\", \"slots\" or \"cluster\""},
      {"[routing]\nmode = \"cluster\"\nseeds = [\"a:1\"]\nread_from = \"any\"\n", "test.toml:4:13: ",
       "routing.read_from must be \"primary\" or \"replica-preferred\""},
      {"[[backend]]\nname = \"x\"\n[[backend]]\nname = \"y\"\n", "test.toml: ", "exactly one"},
      {"[server]\n", "test.toml: ", "at least one"},
      {"[[backend]]\nname = \"a\" = \n", "test.toml:2:", ""},
      {"[routing]\nmode = \"slots\"\n[[backend]]\nname = \"a\"\nslots = \"0-100\"\n[[backend]]\nname = \"b\"\nslots = \"50-16383\"\n",
       "test.toml: ", "slot 50 is assigned to both"},
      {"[routing]\nmode = \"slots\"\n[[backend]]\nname = \"a\"\nslots = \"0-100\"\n", "test.toml: ", "slot 101 has no backend"},
      {"[[backend]]\nname = \"a\"\nslots = \"0-16383\"\n", "test.toml: ", "needs routing.mode"},
  };
  for (const bad& b : cases) {
    CAPTURE(b.text);
    const load_result r = load(b.text);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error.rfind(b.where, 0) == 0);
    CHECK(r.error.find(b.what) != std::string::npos);
  }
}

TEST_CASE("endpoints and slot lists") {
  CHECK(parse_endpoint("127.0.0.1:6379")->port == 6379);
  CHECK(parse_endpoint("[::1]:6380")->host == "::1");
  CHECK(parse_endpoint("unix:/run/r.sock")->unix_path == "/run/r.sock");
  CHECK_FALSE(parse_endpoint("host:0"));
  CHECK_FALSE(parse_endpoint("host:70000"));
  CHECK_FALSE(parse_endpoint(":80"));
  std::string why;
  auto r = parse_slot_ranges("0-10, 20,30-40", &why);
  REQUIRE(r);
  CHECK(r->size() == 3);
  CHECK((*r)[1].first == 20);
  CHECK((*r)[1].last == 20);
  CHECK_FALSE(parse_slot_ranges("0-16384", &why));
  CHECK_FALSE(parse_slot_ranges("a-b", &why));
}

TEST_CASE("non-ASCII outside comments is refused before toml++ sees it (fuzzer findings)") {
  // These inputs made toml++ 3.3 reach TOML_UNREACHABLE (undefined behaviour).
  const load_result r = load("[[backebackend]]\naddress \xc9\x91" "d]]\naddress = \"x}\n");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error.rfind("test.toml:2:9: non-ASCII character outside a comment", 0) == 0);
  const load_result r2 = load("min = -\"127.0.0tr%c\xcf\x9d" "a\n");
  REQUIRE_FALSE(r2.ok());
  CHECK(r2.error.rfind("test.toml:1:20: non-ASCII", 0) == 0);
  // In comments it is fine.
  const load_result ok = load("# caf\xc3\xa9\n[[backend]]\nname = \"cafe\" # \xc3\xa9\n"
                              "address = '127.0.0.1:6379'\n");
  CHECK_MESSAGE(ok.ok(), ok.error);
  CHECK(ok.cfg.backends[0].name == "cafe");
}

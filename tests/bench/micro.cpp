// Microbenchmarks of the per-command work: framing requests and replies, the command
// lookup and loading decision, and a whole session round trip without sockets.
//   build/release/tests/micro_bench

#include <benchmark/benchmark.h>

#include <string>

#include <cassert>
#include <cstring>
// The fixture checks its preconditions with doctest's REQUIRE; here they are asserts.
#define REQUIRE(x) assert(x)
#include "../unit/session_fixture.hpp"
#include "policy/loading_policy.hpp"
#include "proxy/resp/reply_framer.hpp"
#include "proxy/resp/request_framer.hpp"
#include "proxy/resp/resp_writer.hpp"

using namespace respfence;

namespace {

std::string pipeline(int n) {
  std::string s;
  for (int i = 0; i < n; ++i) {
    s += proxy::resp_command({"SET", "key:000000001234", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"});
    s += proxy::resp_command({"GET", "key:000000001234"});
  }
  return s;
}

void frame_requests(benchmark::State& st) {
  const std::string in = pipeline(500);
  proxy::request_framer f;
  size_t cmds = 0;
  for (auto _ : st) {
    size_t pos = 0;
    while (pos < in.size()) {
      f.next(std::string_view(in).substr(pos));
      pos += f.consumed();
      ++cmds;
    }
  }
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations() * in.size()));
  st.SetItemsProcessed(static_cast<int64_t>(cmds));
}
BENCHMARK(frame_requests);

void frame_replies(benchmark::State& st) {
  std::string in;
  for (int i = 0; i < 500; ++i) in += "+OK\r\n$32\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n";
  in += "*3\r\n$3\r\nfoo\r\n:42\r\n*2\r\n$1\r\na\r\n$-1\r\n";
  proxy::reply_framer f;
  size_t replies = 0;
  for (auto _ : st) {
    size_t pos = 0;
    while (pos < in.size()) {
      f.next(std::string_view(in).substr(pos));
      pos += f.consumed();
      ++replies;
    }
  }
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations() * in.size()));
  st.SetItemsProcessed(static_cast<int64_t>(replies));
}
BENCHMARK(frame_replies);

void lookup_and_decide(benchmark::State& st) {
  auto pol = policy::policy_table::build(policy::policy_config{});
  const char* names[] = {"GET", "set", "Ping", "MGET", "incr", "CLIENT"};
  size_t n = 0;
  for (auto _ : st) {
    const policy::command_entry* c = pol->commands().find(names[n % 6]);
    policy::decide_input in;
    in.state = (n & 1) ? policy::backend_state::loading : policy::backend_state::ready;
    in.r = c ? pol->rule_for(*c) : pol->unknown_rule();
    in.is_ping = c && c->kind == policy::command_kind::ping;
    benchmark::DoNotOptimize(policy::decide(in));
    ++n;
  }
  st.SetItemsProcessed(static_cast<int64_t>(n));
}
BENCHMARK(lookup_and_decide);

// A 16-deep pipeline through the session core: framed, decided, forwarded, answered.
void session_round_trip(benchmark::State& st) {
  test::session_fixture f;
  const std::string req = pipeline(8);
  std::string rep;
  for (int i = 0; i < 8; ++i) rep += "+OK\r\n$32\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n";
  f.core.on_link_connecting(0);
  f.core.on_link_connected(0);
  for (auto _ : st) {
    auto [p, cap] = f.core.client_read_buffer();
    std::memcpy(p, req.data(), req.size());
    f.core.on_client_data(req.size());
    benchmark::DoNotOptimize(f.core.take_link_output(0));
    f.core.link_output_done(0);
    auto [q, qcap] = f.core.link_read_buffer(0);
    std::memcpy(q, rep.data(), rep.size());
    f.core.on_link_data(0, rep.size());
    benchmark::DoNotOptimize(f.core.take_client_output());
    f.core.client_output_done();
  }
  st.SetItemsProcessed(static_cast<int64_t>(st.iterations() * 16));
}
BENCHMARK(session_round_trip);

}  // namespace

BENCHMARK_MAIN();

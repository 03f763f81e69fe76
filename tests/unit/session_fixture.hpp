#pragma once
// A session_core with a fake environment: the test plays the client, the backends and
// the worker, byte by byte. No sockets, no threads, no clock.

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "policy/loading_policy.hpp"
#include "proxy/resp/resp_writer.hpp"
#include "proxy/session/session_core.hpp"

namespace respfence::test {

using proxy::backend_view;
using proxy::counter;
using proxy::session_core;

struct fake_env : proxy::session_env {
  std::vector<backend_view> views;
  std::shared_ptr<const policy::policy_table> pol;
  int64_t now = 1000;
  size_t queue_limit = 1000;
  size_t queued = 0;
  bool fences_on = true;
  std::vector<session_core*> watchers;
  size_t loading_reports = 0;
  uint64_t rounds_begun = 0;  // the fake prober: a report "begins" no probe by itself
  size_t unreachable_reports = 0;
  std::vector<uint64_t> epochs;
  std::string last_epoch_reason;
  size_t flushes_sent = 0;
  uint64_t next_fence = 0;
  std::vector<uint64_t> fences_done;
  std::vector<uint64_t> drained;
  std::vector<std::vector<size_t>> fence_targets;
  uint64_t counts[8][static_cast<size_t>(counter::count_)] = {};

  std::shared_ptr<const routing::router> route = routing::router::single();
  std::vector<std::string> topology_hints;
  size_t topology_refreshes = 0;

  explicit fake_env(size_t backends, policy::policy_config cfg = {}) : views(backends), epochs(backends) {
    cfg.learn_from_backend = false;
    pol = policy::policy_table::build(cfg);
    for (auto& v : views) v.state = policy::backend_state::ready;
  }
  const backend_view& view(size_t b) const override { return views[b]; }
  const policy::policy_table& policy() const override { return *pol; }
  const routing::router& router() const override { return *route; }
  size_t backend_for(std::string_view host_port) override {
    topology_hints.emplace_back(host_port);
    // Test convention: "node:<index>" names backend <index>.
    if (host_port.substr(0, 5) != "node:") return SIZE_MAX;
    const size_t b = static_cast<size_t>(std::stoul(std::string(host_port.substr(5))));
    while (views.size() <= b) {
      views.emplace_back();
      views.back().state = policy::backend_state::ready;
      epochs.push_back(0);
    }
    return b;
  }
  void topology_changed() override { ++topology_refreshes; }
  int64_t now_ms() const override { return now; }
  bool queue_admit(size_t, size_t) override {
    if (queued >= queue_limit) return false;
    ++queued;
    return true;
  }
  void queue_release(size_t, size_t) override { --queued; }
  void watch(session_core* s) override {
    if (std::find(watchers.begin(), watchers.end(), s) == watchers.end()) watchers.push_back(s);
  }
  void unwatch(session_core* s) override {
    watchers.erase(std::remove(watchers.begin(), watchers.end(), s), watchers.end());
  }
  uint64_t report_loading(size_t) override {
    ++loading_reports;
    return rounds_begun;
  }
  // The prober's verdict on backend b: a probe that began after every report so far.
  void verdict(size_t b, policy::backend_state s) {
    views[b].state = s;
    views[b].probe_round = ++rounds_begun;
  }
  void report_unreachable(size_t b) override {
    ++unreachable_reports;
    views[b].state = policy::backend_state::down;
  }
  void bump_epoch(size_t b, const char* why) override {
    ++epochs[b];
    last_epoch_reason = why;
  }
  void flush_sent(size_t) override { ++flushes_sent; }
  void flush_unsent(size_t) override { --flushes_sent; }
  uint64_t begin_flush(session_core* s, const std::vector<size_t>& backends) override {
    const uint64_t id = ++next_fence;
    fence_targets.push_back(backends);
    for (size_t b : backends) ++views[b].fence_level;
    if (std::find(fenced_sessions.begin(), fenced_sessions.end(), s) == fenced_sessions.end()) {
      fenced_sessions.push_back(s);
    }
    for (session_core* o : fenced_sessions) {
      if (o->fence_begin(id, backends) && o == s) drained.push_back(id);
    }
    return id;
  }
  std::vector<session_core*> fenced_sessions;  // sessions told of every fence (begin_flush)
  void flush_done(uint64_t id) override {
    fences_done.push_back(id);
    for (size_t b : fence_targets[id - 1]) --views[b].fence_level;
    for (session_core* s : fenced_sessions) s->fence_end(id);
  }
  void session_drained(uint64_t id) override { drained.push_back(id); }
  bool fence_enabled() const override { return fences_on; }
  void count(size_t b, counter c) override { ++counts[b][static_cast<size_t>(c)]; }
  uint64_t pins[static_cast<size_t>(proxy::pin_reason::count_)] = {};
  void count_pin(proxy::pin_reason why) override { ++pins[static_cast<size_t>(why)]; }
  void record_latency_us(uint64_t) override {}

  uint64_t n(size_t b, counter c) const { return counts[b][static_cast<size_t>(c)]; }
  void set_state(size_t b, policy::backend_state s) { views[b].state = s; }
};

struct session_fixture {
  fake_env env;
  session_core core;

  explicit session_fixture(size_t backends = 1, policy::policy_config cfg = {},
                           std::shared_ptr<const routing::router> r = routing::router::single())
      : env(backends, std::move(cfg)), core((env.route = std::move(r), env), session_core::limits{}) {}

  // The client sends bytes (in chunks of `chunk`, to exercise partial reads).
  void client(const std::string& bytes, size_t chunk = SIZE_MAX) {
    size_t off = 0;
    while (off < bytes.size()) {
      auto [p, cap] = core.client_read_buffer();
      REQUIRE(cap > 0);
      const size_t n = std::min({cap, chunk, bytes.size() - off});
      std::memcpy(p, bytes.data() + off, n);
      core.on_client_data(n);
      off += n;
    }
  }
  // Connects links that want it; returns what each link would write now.
  std::string written(size_t b = 0) {
    if (core.link_needs_connect(b)) {
      core.on_link_connecting(b);
      core.on_link_connected(b);
    }
    std::string out;
    while (core.link_has_output(b)) {
      for (const auto& s : core.take_link_output(b)) out.append(s.data, s.size);
      core.link_output_done(b);
    }
    return out;
  }
  void reply(const std::string& bytes, size_t b = 0) {
    auto [p, cap] = core.link_read_buffer(b);
    REQUIRE(cap >= bytes.size());
    std::memcpy(p, bytes.data(), bytes.size());
    core.on_link_data(b, bytes.size());
  }
  std::string output() {
    std::string out;
    while (core.has_client_output()) {
      out += core.take_client_output();
      core.client_output_done();
    }
    return out;
  }
  void set_state(policy::backend_state s, size_t b = 0) {
    env.set_state(b, s);
    core.resume();
  }
  // The prober answers: backend b is in state s (a probe that began after every report).
  void verdict(policy::backend_state s, size_t b = 0) {
    env.verdict(b, s);
    core.resume();
  }
};

inline std::string cmd(std::initializer_list<std::string_view> args) {
  return proxy::resp_command(args);
}

}  // namespace respfence::test

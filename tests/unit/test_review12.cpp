// Review of issue 12 ("Never change what a command does"): each case is a client
// sequence whose outcome through respfence differs from direct redis on commit 1e8489d.
// Every TEST_CASE here FAILS on that commit; the comment says what redis does.

#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "proxy/backend_registry.hpp"
#include "session_fixture.hpp"

using namespace respfence;
using namespace respfence::test;
using policy::backend_state;

namespace {

const std::string loading_err = "-LOADING Redis is loading the dataset in memory\r\n";

// The fixture's helpers, for any session_core sharing the fixture's env.
void client_to(session_core& c, const std::string& bytes) {
  auto [p, cap] = c.client_read_buffer();
  REQUIRE(cap >= bytes.size());
  std::memcpy(p, bytes.data(), bytes.size());
  c.on_client_data(bytes.size());
}

std::string written_by(session_core& c, size_t b = 0) {
  if (c.link_needs_connect(b)) {
    c.on_link_connecting(b);
    c.on_link_connected(b);
  }
  std::string out;
  while (c.link_has_output(b)) {
    for (const auto& s : c.take_link_output(b)) out.append(s.data, s.size);
    c.link_output_done(b);
  }
  return out;
}

void reply_to(session_core& c, const std::string& bytes, size_t b = 0) {
  auto [q, room] = c.link_read_buffer(b);
  REQUIRE(room >= bytes.size());
  std::memcpy(q, bytes.data(), bytes.size());
  c.on_link_data(b, bytes.size());
}

std::string output_of(session_core& c) {
  std::string out;
  while (c.has_client_output()) {
    out += c.take_client_output();
    c.client_output_done();
  }
  return out;
}

// A fake worker for several sessions: every fence reaches every session, and a fence is
// ready (its flush may go) once every session has said that it drained, as
// worker::fence_raise / session_drained / ready_origin do.
struct multi_env : fake_env {
  std::map<uint64_t, session_core*> owner;
  std::map<uint64_t, size_t> drains;
  std::vector<uint64_t> readied;
  multi_env() : fake_env(1) {}
  uint64_t begin_flush(session_core* s, const std::vector<size_t>& backends) override {
    const uint64_t id = ++next_fence;
    fence_targets.push_back(backends);
    owner[id] = s;
    for (size_t b : backends) ++views[b].fence_level;
    for (session_core* o : fenced_sessions) {
      if (o->fence_begin(id, backends)) ++drains[id];
    }
    return id;
  }
  void session_drained(uint64_t id) override { ++drains[id]; }
  // What the worker would do next: ready every drained fence, and resume every session.
  // Returns true if a fence was readied.
  bool step() {
    bool moved = false;
    for (auto& [id, n] : drains) {
      if (n < fenced_sessions.size()) continue;
      if (std::find(readied.begin(), readied.end(), id) != readied.end()) continue;
      readied.push_back(id);
      owner[id]->fence_ready(id);
      moved = true;
    }
    for (session_core* s : fenced_sessions) s->resume();
    return moved;
  }
};

}  // namespace

// ------------------------------------------------------------------------------- R1

TEST_CASE("review12: a LOADING answer is never retried after a reply-less SELECT ran") {
  // Direct, during loading: SET k v -> -LOADING; CLIENT REPLY SKIP and SELECT 1 answer
  // nothing (both run: they are loading-safe); SET k2 v2 -> -LOADING. The connection is
  // now in db 1. The proxy sees no reply for SELECT, so it believes nothing ran after
  // SET k v, and sends SET k v again on that same connection: it lands in db 1.
  session_fixture f;
  const std::string set_k = cmd({"SET", "k", "v"});
  f.client(set_k + cmd({"CLIENT", "REPLY", "SKIP"}) + cmd({"SELECT", "1"}) +
           cmd({"SET", "k2", "v2"}));
  f.written();
  f.reply(loading_err + loading_err);
  f.verdict(backend_state::loading);
  f.verdict(backend_state::ready);
  const std::string again = f.written();
  // SET k v must not run again after SELECT 1 (it was the client's db 0 write).
  CHECK_FALSE(again.substr(0, set_k.size()) == set_k);
}

TEST_CASE("review12: a LOADING answer followed by CLIENT REPLY OFF still reaches the client") {
  // Direct, during loading: SET k v -> -LOADING, then CLIENT REPLY OFF (loading-safe,
  // runs, answers nothing). The client reads one reply. The proxy keeps the -LOADING,
  // sees nothing after it on the link (REPLY OFF has no reply), retries SET k v once the
  // shard is ready, and sends it with replies off: the client never gets any answer
  // for SET k v.
  session_fixture f;
  f.client(cmd({"SET", "k", "v"}) + cmd({"CLIENT", "REPLY", "OFF"}));
  f.written();
  f.reply(loading_err);
  f.verdict(backend_state::loading);
  f.verdict(backend_state::ready);
  // The server has replies off for this connection now: it answers nothing to a resent
  // SET k v, so whatever the client gets must already be in the output.
  const std::string again = f.written();
  CHECK(again.empty());
  CHECK(f.output() == loading_err);
}

TEST_CASE("review12: SELECT under CLIENT REPLY OFF is replayed on a new backend connection") {
  // (Older than issue 12, found while reviewing it.) Direct: after CLIENT REPLY OFF,
  // SELECT 1, CLIENT REPLY ON the connection is in db 1. The proxy records SELECT only
  // from its reply, so after its backend link breaks it replays nothing and the next
  // SET goes to db 0.
  session_fixture f;
  f.client(cmd({"PING"}));  // the backend connection is open before the sequence
  f.written();
  f.reply("+PONG\r\n");
  CHECK(f.output() == "+PONG\r\n");
  f.client(cmd({"CLIENT", "REPLY", "OFF"}) + cmd({"SELECT", "1"}) + cmd({"CLIENT", "REPLY", "ON"}));
  // Since review 22 the proxy has the server answer SELECT (its own CLIENT REPLY ON
  // first), so that a failed SELECT is never replayed; the client still hears only ON.
  CHECK(f.written() == cmd({"CLIENT", "REPLY", "OFF"}) + cmd({"CLIENT", "REPLY", "ON"}) +
                           cmd({"SELECT", "1"}) + cmd({"CLIENT", "REPLY", "ON"}));
  f.reply("+OK\r\n+OK\r\n+OK\r\n");
  CHECK(f.output() == "+OK\r\n");
  CHECK(f.core.db() == 1);
  f.core.on_link_failed(0, true);
  f.client(cmd({"SET", "k", "v"}));
  const std::string w = f.written();
  CHECK(w.find(cmd({"SELECT", "1"})) != std::string::npos);
}

TEST_CASE("review12: a probe under way when a LOADING answer is reported does not eat the verdict") {
  // A session waits for snapshot.probe_round > after (loading_reply's answer). The probe
  // that was already running consumes confirm_wanted; the next one, the only one whose
  // verdict counts, changes no state and is never pushed to the workers. The waiting
  // command then waits for its whole queue timeout (10 s by default) before it gets the
  // script's own -LOADING answer.
  std::vector<proxy::backend_snapshot> pushed;
  policy::backend_config cfg;
  cfg.name = "b0";
  proxy::backend_registry reg(
      {cfg}, [&](size_t, const proxy::backend_snapshot& s) { pushed.push_back(s); },
      [](size_t, const policy::learned_commands&) {});
  policy::probe_info info;
  info.run_id = "r";
  reg.probe_answer(0, info, reg.probe_begin(0));  // ready
  REQUIRE(reg.snapshot(0).state == backend_state::ready);
  const uint64_t under_way = reg.probe_begin(0);  // a probe has begun...
  const uint64_t after = reg.loading_reply(0);    // ...when a session reports -LOADING
  reg.probe_answer(0, info, under_way);           // it ends: too early to count
  reg.probe_answer(0, info, reg.probe_begin(0));  // the next probe: this is the verdict
  REQUIRE_FALSE(pushed.empty());
  CHECK(pushed.back().probe_round > after);
}

// ------------------------------------------------------------------------------- R2

TEST_CASE("review12: after EXECABORT for a link lost inside MULTI, the next transaction commits") {
  // WATCH k, MULTI, SET k v; the link breaks; EXEC answers EXECABORT (the proxy's
  // visible failure). Redis's EXEC, aborted or not, ends WATCH. A later transaction
  // with no WATCH must commit, but the proxy still thinks a WATCH is lost and answers
  // its EXEC with a null array.
  session_fixture f;
  f.client(cmd({"WATCH", "k"}));
  f.written();
  f.reply("+OK\r\n");
  f.client(cmd({"MULTI"}) + cmd({"SET", "k", "v"}));
  f.written();
  f.reply("+OK\r\n+QUEUED\r\n");
  CHECK(f.output() == "+OK\r\n+OK\r\n+QUEUED\r\n");
  f.core.on_link_failed(0, true);
  f.client(cmd({"EXEC"}));
  const std::string abort = f.output();
  CHECK(abort.substr(0, 10) == "-EXECABORT");
  const std::string tx = cmd({"MULTI"}) + cmd({"SET", "k2", "v"}) + cmd({"EXEC"});
  f.client(tx);
  CHECK(f.written() == tx);
  f.reply("+OK\r\n+QUEUED\r\n*1\r\n+OK\r\n");
  CHECK(f.output() == "+OK\r\n+QUEUED\r\n*1\r\n+OK\r\n");
}

TEST_CASE("review12: a held EXEC whose WATCH connection broke while it waited never commits") {
  // WATCH k goes to the server. A flush fence is up, so MULTI..EXEC is held by the proxy
  // (EXEC waits for the fence). Meanwhile the link that held the WATCH breaks. When the
  // fence lifts, the block is sent on a new connection, where nothing is watched: it
  // commits whatever happened to k. It must answer a null array (or an error) instead.
  session_fixture f;
  f.client(cmd({"WATCH", "k"}));
  f.written();
  f.reply("+OK\r\n");
  CHECK(f.output() == "+OK\r\n");
  f.env.views[0].fence_level = 1;  // another client's flush
  CHECK(f.core.fence_begin(7, {0}));
  f.client(cmd({"MULTI"}) + cmd({"SET", "k", "mine"}) + cmd({"EXEC"}));
  CHECK(f.written().empty());
  CHECK(f.output() == "+OK\r\n+QUEUED\r\n");
  f.core.on_link_failed(0, true);  // the WATCH's connection is gone
  f.core.fence_end(7);
  f.env.views[0].fence_level = 0;
  f.core.resume();
  const std::string sent = f.written();
  CHECK(sent.find(cmd({"SET", "k", "mine"})) == std::string::npos);
  CHECK(f.output() == "*-1\r\n");
}

// ------------------------------------------------------------------------------- R3

TEST_CASE("review12: a flush held behind another fence never deadlocks with a later fence") {
  // U's FLUSHALL raises fence 1 and is on the wire. S pipelines SET s1; FLUSHALL; SET s2
  // (all held: s1 by fence 1). T's FLUSHALL raises fence 2 (mark in S: after s2). U's
  // flush is answered; S's FLUSHALL now raises fence 3 with its own mark before s2.
  // Fence 2 waits for s2; s2 waits for fence 3; fence 3 waits for T's flush (id 2 < 3);
  // T's flush waits for fence 2. Nothing moves until a fence timeout. Direct, all three
  // flushes and both SETs are answered at once.
  multi_env env;
  session_core u(env, session_core::limits{});
  session_core s(env, session_core::limits{});
  session_core t(env, session_core::limits{});
  env.fenced_sessions = {&u, &s, &t};

  client_to(u, cmd({"FLUSHALL"}));
  env.step();
  CHECK(written_by(u) == cmd({"FLUSHALL"}));  // fence 1 drained; the server holds it
  client_to(s, cmd({"SET", "s1", "x"}) + cmd({"FLUSHALL"}) + cmd({"SET", "s2", "y"}));
  CHECK(written_by(s).empty());
  client_to(t, cmd({"FLUSHALL"}));
  CHECK(written_by(t).empty());
  reply_to(u, "+OK\r\n");
  CHECK(output_of(u) == "+OK\r\n");
  // Play worker and server until nothing moves.
  std::string t_out;
  std::string s_out;
  for (int round = 0; round < 20; ++round) {
    env.step();
    const std::string ws = written_by(s);
    const std::string wt = written_by(t);
    std::string rs;
    for (size_t at = 0; (at = ws.find("*", at)) != std::string::npos; ++at) {
      if (ws.compare(at, 4, "*3\r\n") == 0 || ws.compare(at, 4, "*1\r\n") == 0) rs += "+OK\r\n";
    }
    if (!rs.empty()) reply_to(s, rs);
    if (!wt.empty()) reply_to(t, "+OK\r\n");
    t_out += output_of(t);
    s_out += output_of(s);
  }
  for (auto& [id, n] : env.drains) MESSAGE("fence ", id, " drained in ", n, " of 3 sessions");
  CHECK(t_out == "+OK\r\n");
  CHECK(s_out == "+OK\r\n+OK\r\n+OK\r\n");
}

// ------------------------------------------------------------------------------- R4/R5

TEST_CASE("review12: slots mode: a head reply is still read when later replies fill the stash") {
  // (Older than issue 12.) BLPOP a 1 goes to backend 1, GET b to backend 0. GET b's big
  // reply comes first and waits in the stash for BLPOP's turn; it alone is over the
  // client's output limit, so the proxy stops reading every backend, BLPOP's own
  // included: its reply is never read, nothing reaches the client, for ever.
  // Direct (a cluster client, or one server): nil after 1 s, then the value.
  fake_env env(2);
  env.route = routing::router::slots(routing::slot_map::even(2));
  session_core::limits lim;
  lim.client_output = 1024;
  session_core c(env, lim);
  client_to(c, cmd({"BLPOP", "a", "1"}) + cmd({"GET", "b"}));
  CHECK(written_by(c, 1) == cmd({"BLPOP", "a", "1"}));
  CHECK(written_by(c, 0) == cmd({"GET", "b"}));
  const std::string big(2000, 'v');
  reply_to(c, "$2000\r\n" + big + "\r\n", 0);
  CHECK(output_of(c).empty());  // BLPOP has not answered yet
  CHECK(c.link_wants_read(1));  // the one reply that unblocks everything
}

TEST_CASE("review12: slots mode: a split command whose parts are all answered LOADING is retried whole") {
  // MGET a b during a restart of both shards, before the prober has seen it: both parts
  // are answered -LOADING, nothing ran after them, and the prober confirms loading on
  // both. design.md §5: such a command is retried, never surfaced. The first part's answer
  // puts the command in `confirm`; the second part's, arriving while it is held, is
  // taken as the part's final answer, so the client gets -LOADING after the retry.
  session_fixture f(2, {}, routing::router::slots(routing::slot_map::even(2)));
  f.client(cmd({"MGET", "a", "b"}));
  CHECK_FALSE(f.written(0).empty());
  CHECK_FALSE(f.written(1).empty());
  f.reply(loading_err, 0);
  f.reply(loading_err, 1);
  CHECK(f.output().empty());
  f.env.verdict(0, backend_state::loading);
  f.env.verdict(1, backend_state::loading);
  f.core.resume();
  f.env.verdict(0, backend_state::ready);
  f.env.verdict(1, backend_state::ready);
  f.core.resume();
  const std::string again0 = f.written(0);
  const std::string again1 = f.written(1);
  CHECK_FALSE(again0.empty());
  CHECK_FALSE(again1.empty());
  if (!again0.empty()) f.reply("*1\r\n$1\r\n2\r\n", 0);
  if (!again1.empty()) f.reply("*1\r\n$1\r\n1\r\n", 1);
  CHECK(f.output() == "*2\r\n$1\r\n1\r\n$1\r\n2\r\n");
}

TEST_CASE("review12: slots mode: replies already sent on to the client do not count against its limit") {
  // (Older than issue 12.) GET a (backend 1) and GET b (backend 0) alternate in a
  // pipeline; backend 0 is always one reply ahead, so one stashed reply is always live
  // and stash_ is never cleared: it keeps the bytes of every reply already moved to the
  // client. The client reads everything, yet once those dead bytes pass the limit the
  // proxy stops reading both backends, and the pipeline hangs (in a real run: 200,000
  // GETs over two shards with client_output_limit = 65536 stop after ~385 KB).
  fake_env env(2);
  env.route = routing::router::slots(routing::slot_map::even(2));
  session_core::limits lim;
  lim.client_output = 1024;
  session_core c(env, lim);
  constexpr int pairs = 100;
  std::string req;
  for (int i = 0; i < pairs; ++i) req += cmd({"GET", "a"}) + cmd({"GET", "b"});
  client_to(c, req);
  written_by(c, 0);
  written_by(c, 1);
  const std::string val = "$20\r\n" + std::string(20, 'x') + "\r\n";
  reply_to(c, val, 0);  // GET b #0, before GET a #0
  size_t got = 0;
  int stuck_at = -1;
  for (int i = 0; i < pairs; ++i) {
    if (!c.link_wants_read(0) || !c.link_wants_read(1)) {
      stuck_at = i;
      break;
    }
    if (i + 1 < pairs) reply_to(c, val, 0);  // GET b #i+1, early again
    reply_to(c, val, 1);                     // GET a #i: the head
    got += output_of(c).size();               // the client reads all it is given
  }
  CHECK(stuck_at == -1);
  CHECK(got == 2 * pairs * val.size());
}

TEST_CASE("review12: slots mode: a command retried after LOADING never joins a MULTI opened after it") {
  // SET a 1 is answered -LOADING (its shard just restarted); the client has pipelined
  // MULTI and SET a 2 behind it (slots mode: the proxy answers those itself). When the
  // shard is ready, SET a 1 is decided again, but the session is now "inside MULTI":
  // SET a 1 is answered +QUEUED and queued into the client's transaction.
  // Direct (one server, after loading): +OK, +OK, +QUEUED; EXEC then runs SET a 2 alone.
  session_fixture f(2, {}, routing::router::slots(routing::slot_map::even(2)));
  f.client(cmd({"SET", "a", "1"}) + cmd({"MULTI"}) + cmd({"SET", "a", "2"}));
  CHECK(f.written(1) == cmd({"SET", "a", "1"}));
  f.reply(loading_err, 1);
  f.env.verdict(1, backend_state::loading);
  f.core.resume();
  f.env.verdict(1, backend_state::ready);
  f.core.resume();
  const std::string again = f.written(1);
  CHECK(again == cmd({"SET", "a", "1"}));
  if (!again.empty()) f.reply("+OK\r\n", 1);
  CHECK(f.output() == "+OK\r\n+OK\r\n+QUEUED\r\n");
  f.client(cmd({"EXEC"}));
  const std::string block = f.written(1);
  CHECK(block == cmd({"MULTI"}) + cmd({"SET", "a", "2"}) + cmd({"EXEC"}));
}

// session_core with a fake environment: decisions, ordering, rewrites, transactions,
// retries, replay. The test plays client, backend and worker.

#include <doctest/doctest.h>

#include "session_fixture.hpp"

using namespace respfence;
using namespace respfence::test;
using policy::action;
using policy::backend_state;
using proxy::counter;

namespace {
const std::string loading_err = "-LOADING Redis is loading the dataset in memory\r\n";
}

TEST_CASE("ready: a pipeline is forwarded as the client's bytes, replies in order") {
  session_fixture f;
  const std::string req = cmd({"SET", "a", "1"}) + cmd({"GET", "a"}) + cmd({"GET", "b"});
  f.client(req);
  CHECK(f.written() == req);
  f.reply("+OK\r\n$1\r\n1\r\n");
  CHECK(f.output() == "+OK\r\n$1\r\n1\r\n");
  f.reply("$-1\r\n");
  CHECK(f.output() == "$-1\r\n");
  CHECK(f.env.n(0, counter::forwarded) == 3);
  CHECK(f.core.pipeline_size() == 0);
}

TEST_CASE("requests split at every byte are framed and forwarded whole") {
  session_fixture f;
  const std::string req = cmd({"SET", "key", std::string(100, 'v')}) + "PING\r\n";
  f.client(req, 1);
  CHECK(f.written() == req);
  f.reply("+OK\r\n+PONG\r\n");
  CHECK(f.output() == "+OK\r\n+PONG\r\n");
}

TEST_CASE("loading + queue: held until ready, in order, nothing sent before") {
  session_fixture f;
  f.env.set_state(0, backend_state::loading);
  f.client(cmd({"GET", "a"}) + cmd({"ECHO", "x"}));
  CHECK(f.written().empty());
  CHECK(f.core.held_count() == 2);  // ECHO is loading-safe, but waits behind GET
  CHECK(f.env.queued == 1);
  CHECK(f.env.n(0, counter::queued) == 1);
  f.set_state(backend_state::ready);
  CHECK(f.written() == cmd({"GET", "a"}) + cmd({"ECHO", "x"}));
  CHECK(f.env.queued == 0);
  f.reply("$1\r\n1\r\n$1\r\nx\r\n");
  CHECK(f.output() == "$1\r\n1\r\n$1\r\nx\r\n");
}

TEST_CASE("loading + reject: the server's LOADING text at once, backend untouched") {
  policy::policy_config cfg;
  cfg.on_loading = action::reject;
  session_fixture f(1, cfg);
  f.env.set_state(0, backend_state::loading);
  f.client(cmd({"GET", "a"}) + cmd({"ECHO", "x"}));
  CHECK(f.output() == loading_err);
  CHECK(f.written() == cmd({"ECHO", "x"}));
  f.reply("$1\r\nx\r\n");
  CHECK(f.output() == "$1\r\nx\r\n");
  CHECK(f.env.n(0, counter::rejected) == 1);
}

TEST_CASE("loading + forward: sent as is") {
  policy::policy_config cfg;
  cfg.on_loading = action::forward;
  session_fixture f(1, cfg);
  f.env.set_state(0, backend_state::loading);
  f.client(cmd({"GET", "a"}));
  CHECK(f.written() == cmd({"GET", "a"}));
}

TEST_CASE("connecting and down hold like loading") {
  for (backend_state s : {backend_state::connecting, backend_state::down}) {
    session_fixture f;
    f.env.set_state(0, s);
    f.client(cmd({"GET", "a"}));
    CHECK(f.written().empty());
    CHECK(f.core.held_count() == 1);
  }
}

TEST_CASE("queue deadline: a pipeline's commands are as old as their arrival, not their turn") {
  // Review 26: 200 GETs in one write while the backend loads. Only the first waits in the
  // queue; the rest wait in order behind it. Each counted its deadline from its own turn,
  // so the n-th was answered after n deadlines (one a second). Direct: all at once.
  policy::policy_config cfg;
  cfg.queue_timeout_ms = 1000;
  session_fixture f(1, cfg);
  f.env.set_state(0, backend_state::loading);
  std::string pipeline;
  std::string answers;
  for (int i = 0; i < 200; ++i) {
    pipeline += cmd({"GET", "k"});
    answers += loading_err;
  }
  f.client(pipeline);
  f.env.now += 999;
  f.core.tick(f.env.now);
  CHECK(f.output().empty());
  f.env.now += 1;
  f.core.tick(f.env.now);
  CHECK(f.output() == answers);
  CHECK(f.core.held_count() == 0);
  CHECK(f.env.queued == 0);
}

TEST_CASE("queue deadline: expired commands get LOADING, and what waited behind moves") {
  policy::policy_config cfg;
  cfg.queue_timeout_ms = 300;
  cfg.commands.push_back({"set", action::queue, 5000u});
  session_fixture f(1, cfg);
  f.env.set_state(0, backend_state::loading);
  f.client(cmd({"GET", "a"}) + cmd({"SET", "b", "1"}) + cmd({"ECHO", "x"}));
  f.core.tick(f.env.now + 299);
  CHECK(f.output().empty());
  f.core.tick(f.env.now + 300);
  CHECK(f.output() == loading_err);  // GET expired; SET (5 s) still waits
  CHECK(f.core.held_count() == 2);
  CHECK(f.env.n(0, counter::expired) == 1);
  f.core.tick(f.env.now + 5000);
  CHECK(f.output() == loading_err);
  // ECHO is loading-safe: once nothing is ahead of it, it goes.
  CHECK(f.written() == cmd({"ECHO", "x"}));
  CHECK(f.env.queued == 0);
}

TEST_CASE("queue bounds: past queue_max the LOADING error comes at once") {
  session_fixture f;
  f.env.queue_limit = 1;
  f.env.set_state(0, backend_state::loading);
  f.client(cmd({"GET", "a"}));
  CHECK(f.output().empty());
  session_fixture g;  // a second client on the same (full) queue
  g.env.queue_limit = 0;
  g.env.set_state(0, backend_state::loading);
  g.client(cmd({"GET", "a"}));
  CHECK(g.output() == loading_err);
}

TEST_CASE("queue bounds: a pipeline counts command by command, in order") {
  // queue_max 2: a client pipelines GET, SET, INCR, ECHO, GET during loading. The first
  // two wait; the INCR arrived past the bound and gets LOADING in its turn, even once
  // the backend is ready; ECHO is loading-safe and never counts; the last GET is past
  // the bound too.
  session_fixture f;
  f.env.queue_limit = 2;
  f.env.set_state(0, backend_state::loading);
  f.client(cmd({"GET", "a"}) + cmd({"SET", "b", "1"}) + cmd({"INCR", "n"}) + cmd({"ECHO", "x"}) +
           cmd({"GET", "c"}));
  CHECK(f.env.queued == 2);
  CHECK(f.output().empty());
  f.set_state(backend_state::ready);
  CHECK(f.written() == cmd({"GET", "a"}) + cmd({"SET", "b", "1"}) + cmd({"ECHO", "x"}));
  CHECK(f.env.queued == 0);
  f.reply("$-1\r\n+OK\r\n$1\r\nx\r\n");
  CHECK(f.output() == "$-1\r\n+OK\r\n" + loading_err + "$1\r\nx\r\n" + loading_err);
}

TEST_CASE("PING while loading goes as ECHO and comes back as PING's answer") {
  session_fixture f;
  f.env.set_state(0, backend_state::loading);
  f.client(cmd({"PING"}) + cmd({"PING", "hello"}));
  CHECK(f.written() == cmd({"ECHO", "PONG"}) + cmd({"ECHO", "hello"}));
  f.reply("$4\r\nPONG\r\n$5\r\nhello\r\n");
  CHECK(f.output() == "+PONG\r\n$5\r\nhello\r\n");
  CHECK(f.env.n(0, counter::rewritten) == 2);
  // Ready again: PING passes through untouched.
  f.set_state(backend_state::ready);
  f.client(cmd({"PING"}));
  CHECK(f.written() == cmd({"PING"}));
}

TEST_CASE("PING while loading, ECHO not loading-safe: the proxy answers") {
  session_fixture f;
  f.env.views[0].echo_loading_safe = false;
  f.env.set_state(0, backend_state::loading);
  f.client(cmd({"PING"}) + cmd({"PING", "m"}));
  CHECK(f.output() == "+PONG\r\n$1\r\nm\r\n");
  CHECK(f.written().empty());
}

TEST_CASE("a -LOADING reply is retried once the prober confirms, never shown") {
  session_fixture f;
  f.client(cmd({"GET", "a"}) + cmd({"GET", "b"}));
  CHECK(f.written() == cmd({"GET", "a"}) + cmd({"GET", "b"}));
  f.reply(loading_err + loading_err);
  CHECK(f.output().empty());
  CHECK(f.env.loading_reports == 2);
  CHECK(f.core.held_count() == 2);
  // No state changes on a reply alone: the backend is still ready until the prober says.
  CHECK(f.env.views[0].state == backend_state::ready);
  f.core.resume();
  CHECK(f.written().empty());
  f.verdict(backend_state::loading);
  CHECK(f.env.n(0, counter::retried) == 2);
  CHECK(f.written().empty());
  f.verdict(backend_state::ready);
  CHECK(f.written() == cmd({"GET", "a"}) + cmd({"GET", "b"}));
  f.reply("$1\r\n1\r\n$1\r\n2\r\n");
  CHECK(f.output() == "$1\r\n1\r\n$1\r\n2\r\n");
}

TEST_CASE("a -LOADING reply is never retried after a later command on its link ran") {
  // SET's retry would run it after SELECT: the client gets what it would get direct.
  session_fixture f;
  f.client(cmd({"SET", "k", "v"}) + cmd({"SELECT", "1"}) + cmd({"SET", "k2", "v2"}) +
           cmd({"SELECT", "0"}));
  f.written();
  f.reply(loading_err + "+OK\r\n" + loading_err + "+OK\r\n");
  CHECK(f.output() == loading_err + "+OK\r\n" + loading_err + "+OK\r\n");
  CHECK(f.core.held_count() == 0);
  CHECK(f.env.n(0, counter::retried) == 0);
  f.verdict(backend_state::loading);
  CHECK(f.written().empty());
}

TEST_CASE("ECHO and PING that ran after a LOADING answer do not cost it its retry") {
  // Their answers depend on nothing, so running them first is invisible.
  session_fixture f;
  f.client(cmd({"GET", "a"}) + cmd({"ECHO", "hi"}) + cmd({"PING"}) + cmd({"GET", "b"}));
  f.written();
  f.reply(loading_err + "$2\r\nhi\r\n+PONG\r\n" + loading_err);
  CHECK(f.output().empty());
  f.verdict(backend_state::loading);
  f.verdict(backend_state::ready);
  CHECK(f.written() == cmd({"GET", "a"}) + cmd({"GET", "b"}));
  f.reply("$1\r\n1\r\n$1\r\n2\r\n");
  CHECK(f.output() == "$1\r\n1\r\n$2\r\nhi\r\n+PONG\r\n$1\r\n2\r\n");
}

TEST_CASE("a LOADING-coded answer from a backend the prober finds serving is the answer") {
  // A script may answer error_reply('LOADING ...') itself: it ran, once.
  for (backend_state s : {backend_state::ready, backend_state::busy}) {
    session_fixture f;
    f.client(cmd({"EVAL", "return redis.error_reply('LOADING x')", "0"}));
    f.written();
    f.reply("-LOADING x\r\n");
    CHECK(f.output().empty());
    f.verdict(s);
    CHECK(f.output() == "-LOADING x\r\n");
    CHECK(f.written().empty());
    CHECK(f.env.n(0, counter::retried) == 0);
  }
}

TEST_CASE("a verdict from a probe that began before the answer does not count") {
  session_fixture f;
  f.env.rounds_begun = 5;
  f.env.views[0].probe_round = 5;
  f.client(cmd({"GET", "a"}));
  f.written();
  f.reply(loading_err);
  f.core.resume();  // probe 5 ended before the answer was reported
  CHECK(f.output().empty());
  f.env.now += 60000;  // the deadline passes without a verdict: the server's answer
  f.core.tick(f.env.now);
  CHECK(f.output() == loading_err);
}

TEST_CASE("strict LOADING matching: only the LOADING code, or an exact known text") {
  for (std::string line : {"-LOADING Valkey is loading the dataset in memory\r\n",
                           "-LOADING kvrocks is restoring the db from backup\r\n",
                           "-ERR LOADING kvrocks is restoring the db from backup\r\n"}) {
    session_fixture f;
    f.client(cmd({"GET", "a"}));
    f.written();
    f.reply(line);
    CHECK(f.output().empty());
    CHECK(f.core.held_count() == 1);
  }
  for (std::string line : {"-ERR LOADING Redis is loading the dataset in memory\r\n",
                           "-ERR app is loading the dataset in memory\r\n",
                           "-ERR restoring the db from backup\r\n", "-LOADINGX y\r\n"}) {
    session_fixture f;
    f.client(cmd({"GET", "a"}));
    f.written();
    f.reply(line);
    CHECK(f.output() == line);
    CHECK(f.env.loading_reports == 0);
  }
}

TEST_CASE("a MULTI block during loading is held whole and decided at EXEC") {
  session_fixture f;
  f.env.set_state(0, backend_state::loading);
  f.client(cmd({"MULTI"}) + cmd({"SET", "a", "1"}) + cmd({"GET", "a"}) + cmd({"EXEC"}));
  CHECK(f.output() == "+OK\r\n+QUEUED\r\n+QUEUED\r\n");
  CHECK(f.written().empty());
  f.set_state(backend_state::ready);
  CHECK(f.written() ==
        cmd({"MULTI"}) + cmd({"SET", "a", "1"}) + cmd({"GET", "a"}) + cmd({"EXEC"}));
  f.reply("+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n$1\r\n1\r\n");
  CHECK(f.output() == "*2\r\n+OK\r\n$1\r\n1\r\n");
}

TEST_CASE("a transaction started while ready is held from the first command that would wait") {
  session_fixture f;
  f.client(cmd({"MULTI"}));
  CHECK(f.written() == cmd({"MULTI"}));
  f.reply("+OK\r\n");
  f.env.set_state(0, backend_state::loading);
  f.client(cmd({"INCR", "n"}) + cmd({"EXEC"}));
  CHECK(f.output() == "+OK\r\n+QUEUED\r\n");
  CHECK(f.written().empty());
  f.set_state(backend_state::ready);
  CHECK(f.written() == cmd({"INCR", "n"}) + cmd({"EXEC"}));  // MULTI is already there
  f.reply("+QUEUED\r\n*1\r\n:1\r\n");
  CHECK(f.output() == "*1\r\n:1\r\n");
}

TEST_CASE("a held transaction checks arity and nesting as the server does") {
  session_fixture f;
  f.env.set_state(0, backend_state::loading);
  f.client(cmd({"MULTI"}) + cmd({"GET"}) + cmd({"MULTI"}) + cmd({"EXEC"}));
  CHECK(f.output() ==
        "+OK\r\n-ERR wrong number of arguments for 'get' command\r\n"
        "-ERR MULTI calls can not be nested\r\n"
        "-EXECABORT Transaction discarded because of previous errors.\r\n");
  CHECK(f.written().empty());
}

TEST_CASE("reject inside a transaction aborts it, as the server would") {
  policy::policy_config cfg;
  cfg.on_loading = action::reject;
  session_fixture f(1, cfg);
  f.client(cmd({"MULTI"}));
  f.written();
  f.reply("+OK\r\n");
  f.env.set_state(0, backend_state::loading);
  f.client(cmd({"SET", "a", "1"}) + cmd({"EXEC"}));
  CHECK(f.output() == "+OK\r\n" + loading_err +
                          "-EXECABORT Transaction discarded because of previous errors.\r\n");
  CHECK(f.written() == cmd({"DISCARD"}));  // the server's MULTI is closed, not executed
}

TEST_CASE("a transaction aborted by a -LOADING part is retried whole") {
  session_fixture f;
  f.env.set_state(0, backend_state::loading);
  f.client(cmd({"MULTI"}) + cmd({"SET", "a", "1"}) + cmd({"EXEC"}));
  f.set_state(backend_state::ready);
  f.written();
  // The server went loading under us: the part is refused, EXEC aborts.
  f.reply("+OK\r\n" + loading_err + "-EXECABORT Transaction discarded because of previous errors.\r\n");
  CHECK(f.output() == "+OK\r\n+QUEUED\r\n");
  f.verdict(backend_state::loading);  // the prober confirms: the block did not run
  CHECK(f.written().empty());
  f.verdict(backend_state::ready);
  CHECK(f.written() == cmd({"MULTI"}) + cmd({"SET", "a", "1"}) + cmd({"EXEC"}));
  f.reply("+OK\r\n+QUEUED\r\n*1\r\n+OK\r\n");
  CHECK(f.output() == "*1\r\n+OK\r\n");
}

TEST_CASE("backend lost: in-flight commands get an error; state is replayed first") {
  session_fixture f;
  f.client(cmd({"SELECT", "2"}) + cmd({"CLIENT", "SETNAME", "me"}) + cmd({"HELLO", "3"}));
  f.written();
  f.reply("+OK\r\n+OK\r\n%1\r\n$5\r\nproto\r\n:3\r\n");
  f.output();
  CHECK(f.core.db() == 2);
  CHECK(f.core.protocol() == 3);
  f.client(cmd({"GET", "a"}) + cmd({"GET", "b"}));
  f.written();
  f.core.on_link_failed(0, true);
  const std::string out = f.output();
  CHECK(out.find("-ERR respfence: connection to the backend was lost") == 0);
  CHECK(std::count(out.begin(), out.end(), '\n') == 2);
  f.client(cmd({"GET", "c"}));
  const std::string w = f.written();
  CHECK(w == cmd({"HELLO", "3"}) + cmd({"SELECT", "2"}) + cmd({"CLIENT", "SETNAME", "me"}) +
                 cmd({"GET", "c"}));
  f.reply("%1\r\n$5\r\nproto\r\n:3\r\n+OK\r\n+OK\r\n$1\r\nc\r\n");
  CHECK(f.output() == "$1\r\nc\r\n");  // the replay's answers stay with the proxy
}

TEST_CASE("a dedicated connection lost while idle is opened again at once, if state is on it") {
  session_fixture f;  // dedicated (limits{} is not shared)
  SUBCASE("a database: reopened now, once") {
    f.client(cmd({"SELECT", "2"}));
    f.written();
    f.reply("+OK\r\n");
    CHECK(f.output() == "+OK\r\n");
    f.core.on_link_failed(0, true);  // nothing in flight: the client hears nothing
    CHECK(f.output().empty());
    CHECK(f.core.link_needs_connect(0));
    CHECK(f.written() == cmd({"SELECT", "2"}));
    f.reply("+OK\r\n");
    CHECK(f.output().empty());
    // Lost again before answering the client: not dialled again (a server closing every
    // new connection is not a loop); the next command opens one, state first.
    f.core.on_link_failed(0, true);
    CHECK_FALSE(f.core.link_needs_connect(0));
    f.client(cmd({"GET", "a"}));
    CHECK(f.written() == cmd({"SELECT", "2"}) + cmd({"GET", "a"}));
  }
  SUBCASE("no state (db 0, a name set and cleared): as before, at the next command") {
    f.client(cmd({"CLIENT", "SETNAME", "me"}) + cmd({"CLIENT", "SETNAME", ""}) + cmd({"GET", "a"}));
    f.written();
    f.reply("+OK\r\n+OK\r\n$-1\r\n");
    f.output();
    f.core.on_link_failed(0, true);
    CHECK_FALSE(f.core.link_needs_connect(0));
    f.client(cmd({"GET", "b"}));
    CHECK(f.written() == cmd({"GET", "b"}));
  }
  SUBCASE("a client gone: nothing to restore it for") {
    f.client(cmd({"SELECT", "2"}));
    f.written();
    f.reply("+OK\r\n");
    f.output();
    f.core.on_client_closed();
    f.core.on_link_failed(0, true);
    CHECK_FALSE(f.core.link_needs_connect(0));
  }
}

TEST_CASE("a connect that fails leaves the command queued, not failed") {
  session_fixture f;
  f.client(cmd({"GET", "a"}));
  CHECK(f.core.link_needs_connect(0));
  f.core.on_link_connecting(0);
  f.core.on_link_failed(0, false);
  CHECK(f.env.unreachable_reports == 1);
  CHECK(f.output().empty());
  CHECK(f.core.held_count() == 1);
  f.set_state(backend_state::ready);
  CHECK(f.written() == cmd({"GET", "a"}));
}

TEST_CASE("a protocol error is answered after what came before it, then the session ends") {
  session_fixture f;
  f.client(cmd({"GET", "a"}) + "*1\r\n$x\r\n" + cmd({"GET", "never"}));
  CHECK(f.written() == cmd({"GET", "a"}));
  CHECK(f.output().empty());
  f.reply("$-1\r\n");
  CHECK(f.output() == "$-1\r\n-ERR Protocol error: invalid bulk length\r\n");
  CHECK(f.core.finished());
  CHECK_FALSE(f.core.wants_client_read());
}

TEST_CASE("QUIT answers +OK after earlier replies, and nothing after it is read") {
  session_fixture f;
  f.client(cmd({"GET", "a"}) + cmd({"QUIT"}) + cmd({"GET", "b"}));
  CHECK(f.written() == cmd({"GET", "a"}));
  f.reply("$-1\r\n");
  CHECK(f.output() == "$-1\r\n+OK\r\n");
  CHECK(f.core.finished());
}

TEST_CASE("CLIENT REPLY OFF/ON/SKIP: no reply is expected where the server sends none") {
  session_fixture f;
  f.client(cmd({"CLIENT", "REPLY", "OFF"}) + cmd({"SET", "a", "1"}) +
           cmd({"CLIENT", "REPLY", "ON"}) + cmd({"CLIENT", "REPLY", "SKIP"}) +
           cmd({"INCR", "n"}) + cmd({"GET", "a"}));
  f.written();
  f.reply("+OK\r\n$1\r\n1\r\n");
  CHECK(f.output() == "+OK\r\n$1\r\n1\r\n");
  CHECK(f.core.pipeline_size() == 0);
}

TEST_CASE("RESP2 pub/sub: confirmations counted, messages pass out of band") {
  session_fixture f;
  f.client(cmd({"SUBSCRIBE", "a", "b"}));
  f.written();
  f.reply("*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n");
  // A message between confirmations goes out as it comes.
  f.reply("*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n");
  f.reply("*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n");
  CHECK(f.core.subscribed());
  CHECK(f.core.pipeline_size() == 0);
  f.client(cmd({"UNSUBSCRIBE"}));
  f.written();
  f.reply("*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:0\r\n");
  CHECK(f.core.pipeline_size() == 0);
  CHECK_FALSE(f.core.subscribed());
  const std::string out = f.output();
  CHECK(out.find("message") != std::string::npos);
  // Then an ordinary command's array reply is not mistaken for pub/sub.
  f.client(cmd({"LRANGE", "l", "0", "-1"}));
  f.written();
  f.reply("*3\r\n$7\r\nmessage\r\n$1\r\nx\r\n$1\r\ny\r\n");
  CHECK(f.output() == "*3\r\n$7\r\nmessage\r\n$1\r\nx\r\n$1\r\ny\r\n");
  CHECK(f.core.pipeline_size() == 0);
}

TEST_CASE("RESP3 pushes are forwarded the moment they arrive") {
  session_fixture f;
  f.client(cmd({"GET", "a"}));
  f.written();
  f.reply(">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n");
  CHECK(f.output() == ">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n");
  CHECK(f.core.pipeline_size() == 1);
  f.reply("$1\r\nv\r\n");
  CHECK(f.output() == "$1\r\nv\r\n");
}

TEST_CASE("flush: epochs move before the flush is sent; later commands wait for it") {
  session_fixture f;
  f.client(cmd({"GET", "a"}));
  f.written();
  f.client(cmd({"FLUSHALL"}) + cmd({"GET", "b"}));
  CHECK(f.env.epochs[0] == 1);   // bumped at acceptance, synchronously
  CHECK(f.written().empty());    // GET a is not answered yet: the flush waits
  CHECK(f.env.drained.empty());
  f.reply("$1\r\n1\r\n");
  CHECK(f.env.drained.size() == 1);
  f.core.fence_ready(1);
  CHECK(f.written() == cmd({"FLUSHALL"}));  // GET b waits for the flush to finish
  CHECK(f.env.flushes_sent == 1);
  f.reply("+OK\r\n");
  CHECK(f.env.fences_done.size() == 1);
  f.core.resume();
  CHECK(f.written() == cmd({"GET", "b"}));
  f.reply("$-1\r\n");
  CHECK(f.output() == "$1\r\n1\r\n+OK\r\n$-1\r\n");
}

TEST_CASE(
    "flush: a client that leaves with its flush on the wire keeps the fence until the reply") {
  // Otherwise other clients' commands, released at once, could reach the backend on their
  // own connections before the flush that this one already sent.
  session_fixture f;
  f.client(cmd({"FLUSHALL"}) + cmd({"GET", "b"}));
  REQUIRE(f.env.drained.size() == 1);
  f.core.fence_ready(1);
  CHECK(f.written() == cmd({"FLUSHALL"}));
  f.core.on_client_closed();
  CHECK(f.env.fences_done.empty());  // still on the wire: the fence stays up
  CHECK(f.core.lingering());
  CHECK_FALSE(f.core.finished());
  f.reply("+OK\r\n");
  CHECK(f.env.fences_done == std::vector<uint64_t>{1});
  CHECK(f.core.finished());
  f.core.resume();
  CHECK_FALSE(f.core.link_has_output(0));  // GET b left with its client: never sent
}

TEST_CASE("flush: a flush answered LOADING and sent again counts as one flush sent") {
  session_fixture f;
  f.client(cmd({"FLUSHALL"}));
  f.core.fence_ready(1);
  CHECK(f.written() == cmd({"FLUSHALL"}));
  CHECK(f.env.flushes_sent == 1);
  f.reply(loading_err);
  f.verdict(backend_state::loading);
  CHECK(f.env.flushes_sent == 0);  // it did not run
  f.verdict(backend_state::ready);
  CHECK(f.written() == cmd({"FLUSHALL"}));
  CHECK(f.env.flushes_sent == 1);
  f.reply("+OK\r\n");
  CHECK(f.output() == "+OK\r\n");
  CHECK(f.env.fences_done == std::vector<uint64_t>{1});
  CHECK(f.env.epochs[0] == 1);  // the epoch moved once, before the first send
}

TEST_CASE("flush: a client that left still holds a fence for what it has on the wire") {
  // A's SET is on the wire when B's flush raises a fence, then A's client leaves. The
  // flush must not go before the SET is answered (the server could run it after).
  session_fixture f;
  session_core b(f.env, session_core::limits{});
  f.env.fenced_sessions.push_back(&f.core);
  f.client(cmd({"SET", "a", "1"}));
  CHECK(f.written() == cmd({"SET", "a", "1"}));
  auto [p, cap] = b.client_read_buffer();
  const std::string flush = cmd({"FLUSHALL"});
  REQUIRE(cap >= flush.size());
  std::memcpy(p, flush.data(), flush.size());
  b.on_client_data(flush.size());
  CHECK(f.env.drained == std::vector<uint64_t>{1});  // B's own part; A's is not drained
  f.core.on_client_closed();
  CHECK(f.core.lingering());
  CHECK(f.env.drained.size() == 1);
  f.reply("+OK\r\n");
  CHECK(f.env.drained == std::vector<uint64_t>{1, 1});
  CHECK_FALSE(f.core.lingering());
  b.on_client_closed(true);
}

TEST_CASE("flush: fences that reach a session out of id order never wait for each other") {
  // Fence 11 reached this thread first and holds C's SET; fence 10 (raised earlier on
  // another thread) arrives after. C's SET comes after 11, hence after 10: fence 10
  // does not wait for it (it would wait for ever: the SET waits for 11, and 11 for 10).
  session_fixture f;
  f.env.views[0].fence_level = 1;
  CHECK(f.core.fence_begin(11, {0}));
  f.client(cmd({"SET", "a", "1"}));
  CHECK(f.written().empty());  // fenced by 11
  f.env.views[0].fence_level = 2;
  CHECK(f.core.fence_begin(10, {0}));  // drained at once
  f.core.fence_end(10);
  f.env.views[0].fence_level = 1;
  f.core.resume();
  CHECK(f.written().empty());  // still behind 11
  f.core.fence_end(11);
  f.env.views[0].fence_level = 0;
  f.core.resume();
  CHECK(f.written() == cmd({"SET", "a", "1"}));
}

TEST_CASE("flush: a client that leaves before its flush is sent lifts the fence at once") {
  session_fixture f;
  f.client(cmd({"GET", "a"}));
  f.written();
  f.client(cmd({"FLUSHALL"}));
  CHECK(f.written().empty());  // waits for GET a
  f.core.on_client_closed();
  CHECK(f.env.fences_done == std::vector<uint64_t>{1});
  CHECK(f.core.finished());
  f.reply("$-1\r\n");
  CHECK_FALSE(f.core.link_has_output(0));  // the flush is never sent
}

TEST_CASE("flush: a lingering flush whose link breaks, or that is sent back to wait, lets go") {
  // Each subcase starts here (doctest runs the case from the top for every one of them):
  // the flush is on the wire when its client leaves.
  session_fixture f;
  f.client(cmd({"FLUSHALL"}));
  f.core.fence_ready(1);
  CHECK(f.written() == cmd({"FLUSHALL"}));
  f.core.on_client_closed();
  CHECK(f.env.fences_done.empty());
  SUBCASE("link breaks") {
    f.core.on_link_failed(0, true);
    CHECK(f.env.fences_done == std::vector<uint64_t>{1});
    CHECK(f.core.finished());
  }
  SUBCASE("-LOADING under the queue policy") {
    // It did not run, and nobody waits for it again: the fence lifts with its answer.
    f.reply("-LOADING Redis is loading the dataset in memory\r\n");
    CHECK(f.env.fences_done == std::vector<uint64_t>{1});
    CHECK(f.env.queued == 0);
    CHECK(f.core.finished());
    f.verdict(backend_state::loading);
    f.set_state(backend_state::ready);
    CHECK_FALSE(f.core.link_has_output(0));  // not resent for a client that left
  }
  SUBCASE("the shell closes for good") {
    f.core.on_client_closed(true);
    CHECK(f.env.fences_done == std::vector<uint64_t>{1});
  }
}

TEST_CASE("DEBUG RELOAD moves the epoch when it is sent; other DEBUG subcommands do not") {
  session_fixture f;
  f.client(cmd({"DEBUG", "SLEEP", "0"}));
  CHECK(f.written() == cmd({"DEBUG", "SLEEP", "0"}));
  CHECK(f.env.epochs[0] == 0);
  f.reply("+OK\r\n");
  f.client(cmd({"debug", "Reload"}));
  CHECK(f.written() == cmd({"debug", "Reload"}));
  CHECK(f.env.epochs[0] == 1);
  CHECK(f.env.last_epoch_reason == "debug_reload_through_proxy");
  f.reply("+OK\r\n");
  CHECK(f.output() == "+OK\r\n+OK\r\n");
}

TEST_CASE("fence from another session: earlier commands go, later ones wait") {
  session_fixture f;
  f.client(cmd({"GET", "a"}));
  f.written();
  ++f.env.views[0].fence_level;  // another session's flush raised the fence
  CHECK_FALSE(f.core.fence_begin(7, {0}));
  f.client(cmd({"GET", "b"}));
  CHECK(f.written().empty());
  f.reply("$-1\r\n");
  CHECK(f.env.drained == std::vector<uint64_t>{7});
  --f.env.views[0].fence_level;
  f.core.resume();
  CHECK(f.written() == cmd({"GET", "b"}));
}

TEST_CASE("a client that goes away frees its queued work; none of it is ever sent") {
  session_fixture f;
  f.env.set_state(0, backend_state::loading);
  f.client(cmd({"GET", "a"}) + cmd({"SET", "b", "1"}));
  CHECK(f.env.queued == 2);  // the SET waits in order, and counts (admit_in_order)
  f.core.on_client_closed();
  CHECK(f.env.queued == 0);
  CHECK(f.env.watchers.empty());
  f.set_state(backend_state::ready);
  CHECK_FALSE(f.core.link_has_output(0));
}

TEST_CASE("large pipelines stream through a small window with replies trickling back") {
  session_fixture f;
  std::string req;
  std::string expect;
  for (int i = 0; i < 3000; ++i) {
    req += cmd({"SET", "key:" + std::to_string(i), std::string(50, 'x')});
  }
  // Deliver in 1000-byte chunks, answering what was written after each chunk.
  size_t answered = 0;
  std::string out;
  for (size_t off = 0; off < req.size(); off += 1000) {
    f.client(req.substr(off, 1000));
    const std::string w = f.written();
    size_t n = 0;
    for (size_t p = w.find("*3\r\n"); p != std::string::npos; p = w.find("*3\r\n", p + 1)) ++n;
    std::string rep;
    for (size_t i = 0; i < n; ++i) rep += "+OK\r\n";
    if (!rep.empty()) f.reply(rep);
    answered += n;
    out += f.output();
  }
  CHECK(answered == 3000);
  CHECK(out.size() == 3000 * 5);
}

TEST_CASE("an idle session gives its buffers back and works again afterwards") {
  session_fixture f;
  f.client(cmd({"SET", "a", std::string(50000, 'x')}));
  f.written();
  f.client(cmd({"GET", "a"}));  // in flight: nothing may be released
  f.core.release_buffers();
  CHECK(f.written() == cmd({"GET", "a"}));
  f.reply("+OK\r\n$1\r\nx\r\n");
  CHECK(f.output() == "+OK\r\n$1\r\nx\r\n");
  f.core.release_buffers();
  f.client(cmd({"GET", "b"}));
  CHECK(f.written() == cmd({"GET", "b"}));
  f.reply("$-1\r\n");
  CHECK(f.output() == "$-1\r\n");
}

TEST_CASE("the backend lost inside MULTI: the rest of the block never runs on its own") {
  session_fixture f;
  f.client(cmd({"MULTI"}) + cmd({"SET", "a", "1"}));
  f.written();
  f.reply("+OK\r\n+QUEUED\r\n");
  CHECK(f.output() == "+OK\r\n+QUEUED\r\n");
  f.core.on_link_failed(0, true);
  f.client(cmd({"INCR", "b"}) + cmd({"EXEC"}) + cmd({"PING"}));
  const std::string out = f.output();
  CHECK(out.find("-ERR respfence: connection to the backend was lost") == 0);
  CHECK(out.find("-EXECABORT Transaction discarded because of previous errors.\r\n") != std::string::npos);
  CHECK(f.written() == cmd({"PING"}));
}

TEST_CASE("a loading-safe command whose connect failed waits too, instead of failing") {
  session_fixture f;
  f.client(cmd({"MULTI"}) + cmd({"SET", "a", "1"}) + cmd({"EXEC"}));
  f.core.on_link_connecting(0);
  f.core.on_link_failed(0, false);
  CHECK(f.output().empty());
  CHECK(f.core.held_count() == 3);
  f.set_state(backend_state::ready);
  CHECK(f.written() == cmd({"MULTI"}) + cmd({"SET", "a", "1"}) + cmd({"EXEC"}));
  f.reply("+OK\r\n+QUEUED\r\n*1\r\n+OK\r\n");
  CHECK(f.output() == "+OK\r\n+QUEUED\r\n*1\r\n+OK\r\n");
}

TEST_CASE("end of file: what came before it is answered, then the session is finished") {
  // redis-server runs and answers what it read before a client's FIN (a half-closed
  // client, `nc -N`, reads those replies), then frees the client.
  session_fixture f;
  f.client(cmd({"SET", "a", "1"}) + cmd({"GET", "a"}));
  CHECK(f.written() == cmd({"SET", "a", "1"}) + cmd({"GET", "a"}));
  CHECK(f.core.on_client_eof());
  CHECK_FALSE(f.core.wants_client_read());
  CHECK_FALSE(f.core.finished());  // two replies to come
  f.reply("+OK\r\n");
  CHECK_FALSE(f.core.finished());
  f.reply("$1\r\n1\r\n");
  CHECK(f.output() == "+OK\r\n$1\r\n1\r\n");
  CHECK(f.core.finished());
}

TEST_CASE("end of file: a blocking command or a subscriber closes at once") {
  // Direct, the FIN frees the client and unblocks it: a BLPOP left waiting through the
  // proxy would pop a later push for nobody.
  session_fixture f;
  f.client(cmd({"BLPOP", "q", "0"}));
  CHECK_FALSE(f.core.on_client_eof());
  session_fixture g;
  g.client(cmd({"SUBSCRIBE", "a"}));
  g.reply("*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n");
  CHECK_FALSE(g.core.on_client_eof());
}

TEST_CASE("end of file: commands still queued for a loading backend go with the client") {
  // They have not run; the client that is gone gets no say in when they would.
  session_fixture f;
  f.set_state(backend_state::loading);
  f.client(cmd({"INCR", "n"}));
  CHECK(f.written().empty());
  CHECK_FALSE(f.core.on_client_eof());
}

namespace {
// GET a in flight; FLUSHALL (then `after`) held by the fence that waits for it; the
// client's end of file; GET answered and the fence lowered: FLUSHALL goes out.
void flush_behind_a_get_then_eof(session_fixture& f, const std::string& after = "") {
  f.client(cmd({"GET", "a"}));
  f.written();
  f.client(cmd({"FLUSHALL"}) + after);
  CHECK(f.written().empty());  // the fence waits for GET a
  CHECK(f.core.on_client_eof());
  f.reply("$-1\r\n");
  f.core.fence_ready(1);
  CHECK(f.written() == cmd({"FLUSHALL"}));
}
}  // namespace

TEST_CASE("end of file: a flush held by its fence still runs, then the session closes") {
  // `echo FLUSHALL | nc -N`: direct, the flush runs. Its fence ends by itself soon.
  session_fixture f;
  flush_behind_a_get_then_eof(f);
  f.reply("+OK\r\n");
  CHECK(f.output() == "$-1\r\n+OK\r\n");
  CHECK(f.core.finished());
}

TEST_CASE("end of file: WAIT closes at once; a command sent back to loading ends the session") {
  session_fixture f;
  f.client(cmd({"WAIT", "1", "0"}));
  CHECK_FALSE(f.core.on_client_eof());  // direct, the close ends the WAIT
  session_fixture g;
  g.client(cmd({"SET", "a", "1"}));
  CHECK(g.written() == cmd({"SET", "a", "1"}));
  CHECK(g.core.on_client_eof());
  CHECK_FALSE(g.core.finished());
  g.reply(loading_err);
  CHECK_FALSE(g.core.finished());     // the prober's verdict first (a script's own error?)
  g.verdict(backend_state::loading);  // it did not run: it would wait for the load, for nobody
  CHECK(g.core.finished());
}

TEST_CASE("end of file: a blocking command held until after it is not sent, nor what follows") {
  // Direct, the server blocks BLPOP, never reaches the SET behind it, and frees the client
  // at EOF. Sent after the EOF, BLPOP would block for nobody and pop a later push.
  session_fixture f;
  flush_behind_a_get_then_eof(f, cmd({"BLPOP", "q", "0"}) + cmd({"SET", "b", "1"}));
  f.reply("+OK\r\n");
  f.core.resume();
  CHECK(f.written().empty());
  CHECK(f.core.finished());
}

// Review 21 (3ada63c): CLIENT SETNAME "" no longer leaves anything to replay, but a name
// set by HELLO ... SETNAME stays inside the replayed HELLO: a new connection (the eager
// reconnect, or the next command's) is named again, with the name the client cleared.
TEST_CASE("review21: a name set by HELLO and cleared by CLIENT SETNAME \"\" is not replayed") {
  session_fixture f;  // dedicated
  f.client(cmd({"HELLO", "2", "SETNAME", "x"}));
  f.written();
  f.reply("*2\r\n$6\r\nserver\r\n$5\r\nredis\r\n");
  f.output();
  f.client(cmd({"CLIENT", "SETNAME", ""}));
  CHECK(f.written() == cmd({"CLIENT", "SETNAME", ""}));
  f.reply("+OK\r\n");
  CHECK(f.output() == "+OK\r\n");
  // Direct, the connection now has no name. The server closes it; a new one is opened.
  f.core.on_link_failed(0, true);
  f.client(cmd({"CLIENT", "GETNAME"}));
  const std::string w = f.written();
  const std::string names_x = cmd({"HELLO", "2", "SETNAME", "x"});
  const std::string clears = cmd({"CLIENT", "SETNAME", ""});
  const size_t at_x = w.find(names_x);
  INFO("replayed: " << w);
  // The replay must leave the new connection without a name, as the client left it.
  CHECK((at_x == std::string::npos || w.find(clears, at_x) != std::string::npos));
}

// Review 21 (3ada63c): a restart closes the connection as the server exits; the eager
// reconnect is refused, and that refusal marks the backend down (report_unreachable)
// although the client sent nothing meanwhile. Its next command, once the server is back,
// waits for the prober's verdict instead of connecting (before 3ada63c it connected).
TEST_CASE("review21: an eager reconnect refused does not hold the client's next command") {
  session_fixture f;  // dedicated
  f.client(cmd({"SELECT", "2"}));
  f.written();
  f.reply("+OK\r\n");
  f.output();
  f.core.on_link_failed(0, true);  // the server exits
  REQUIRE(f.core.link_needs_connect(0));
  f.core.on_link_connecting(0);
  f.core.on_link_failed(0, false);  // nobody listens yet
  CHECK(f.env.unreachable_reports == 0);
  // The server is back; the prober has not looked yet. Direct, GET is answered.
  f.client(cmd({"GET", "a"}));
  CHECK(f.written() == cmd({"SELECT", "2"}) + cmd({"GET", "a"}));
}

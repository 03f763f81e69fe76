// session_core under CLIENT REPLY OFF/SKIP: what the client hears is decided once per
// command, in its order; what the server connection answers is tracked apart from it,
// since a new connection (or another backend) answers every command.

#include <doctest/doctest.h>

#include "session_fixture.hpp"

using namespace respfence;
using namespace respfence::test;

namespace {
const std::string loading_err = "-LOADING Redis is loading the dataset in memory\r\n";
}

TEST_CASE("CLIENT REPLY OFF across a reconnect: the new connection's answers are dropped") {
  session_fixture f;
  f.client(cmd({"SELECT", "9"}));
  f.written();
  f.reply("+OK\r\n");
  CHECK(f.output() == "+OK\r\n");
  f.client(cmd({"CLIENT", "REPLY", "OFF"}) + cmd({"SET", "a", "1"}));
  CHECK(f.written() == cmd({"CLIENT", "REPLY", "OFF"}) + cmd({"SET", "a", "1"}));
  // The server answers nothing; the connection is killed, and reopened with SELECT.
  f.core.on_link_failed(0, true);
  CHECK(f.output().empty());
  f.client(cmd({"SET", "b", "2"}) + cmd({"CLIENT", "REPLY", "ON"}) + cmd({"GET", "a"}));
  CHECK(f.written() == cmd({"SELECT", "9"}) + cmd({"SET", "b", "2"}) +
                           cmd({"CLIENT", "REPLY", "ON"}) + cmd({"GET", "a"}));
  // The new connection has replies on: it answers the SET, which the client must not see.
  f.reply("+OK\r\n+OK\r\n+OK\r\n$1\r\n1\r\n");
  CHECK(f.output() == "+OK\r\n$1\r\n1\r\n");
  CHECK(f.core.pipeline_size() == 0);
}

TEST_CASE("CLIENT REPLY OFF queued before the connection opens still silences it") {
  // Shared and dedicated links open after the first command is queued: the OFF among
  // what was queued already describes the new connection.
  session_fixture f;
  f.client(cmd({"CLIENT", "REPLY", "OFF"}));
  f.client(cmd({"SET", "a", "1"}) + cmd({"CLIENT", "REPLY", "ON"}) + cmd({"GET", "a"}));
  CHECK(f.written() == cmd({"CLIENT", "REPLY", "OFF"}) + cmd({"SET", "a", "1"}) +
                           cmd({"CLIENT", "REPLY", "ON"}) + cmd({"GET", "a"}));
  f.reply("+OK\r\n$1\r\n1\r\n");
  CHECK(f.output() == "+OK\r\n$1\r\n1\r\n");
  CHECK(f.core.pipeline_size() == 0);
}

TEST_CASE("a command held for loading keeps the CLIENT REPLY state it arrived under") {
  session_fixture f;
  f.env.set_state(0, policy::backend_state::loading);
  f.client(cmd({"CLIENT", "REPLY", "SKIP"}) + cmd({"GET", "a"}) + cmd({"GET", "b"}));
  CHECK(f.written() == cmd({"CLIENT", "REPLY", "SKIP"}));  // loading-safe, sent at once
  f.set_state(policy::backend_state::ready);
  CHECK(f.written() == cmd({"GET", "a"}) + cmd({"GET", "b"}));
  f.reply("$1\r\n2\r\n");  // the server skipped GET a
  CHECK(f.output() == "$1\r\n2\r\n");
  CHECK(f.core.pipeline_size() == 0);
}

TEST_CASE("RESET under OFF is answered, and a CLIENT REPLY OFF after it stays in force") {
  session_fixture f;
  f.client(cmd({"CLIENT", "REPLY", "OFF"}) + cmd({"RESET"}) + cmd({"CLIENT", "REPLY", "OFF"}));
  f.written();
  f.reply("+RESET\r\n");
  CHECK(f.output() == "+RESET\r\n");
  // RESET's answer came after the OFF that followed it was sent: replies are still off.
  f.client(cmd({"GET", "a"}) + cmd({"CLIENT", "REPLY", "ON"}));
  CHECK(f.written() == cmd({"GET", "a"}) + cmd({"CLIENT", "REPLY", "ON"}));
  f.reply("+OK\r\n");  // GET a silenced by the server; ON answers
  CHECK(f.output() == "+OK\r\n");
  CHECK(f.core.pipeline_size() == 0);
}

TEST_CASE("CLIENT REPLY inside MULTI is refused, and EXEC aborts") {
  session_fixture f;
  f.client(cmd({"MULTI"}) + cmd({"CLIENT", "REPLY", "OFF"}) + cmd({"SET", "a", "1"}) +
           cmd({"EXEC"}));
  CHECK(f.written() == cmd({"MULTI"}) + cmd({"SET", "a", "1"}) + cmd({"DISCARD"}));
  f.reply("+OK\r\n+QUEUED\r\n+OK\r\n");
  CHECK(f.output() ==
        "+OK\r\n-ERR Command not allowed inside a transaction\r\n+QUEUED\r\n"
        "-EXECABORT Transaction discarded because of previous errors.\r\n");
  CHECK(f.core.pipeline_size() == 0);
}

TEST_CASE("a transaction under OFF that fails at EXEC waits for no DISCARD answer") {
  // Inside MULTI under OFF the server answers nothing, DISCARD included.
  policy::policy_config cfg;
  cfg.on_loading = policy::action::reject;
  session_fixture f(1, cfg);
  f.client(cmd({"CLIENT", "REPLY", "OFF"}) + cmd({"MULTI"}) + cmd({"SET", "a", "1"}));
  CHECK(f.written() == cmd({"CLIENT", "REPLY", "OFF"}) + cmd({"MULTI"}) + cmd({"SET", "a", "1"}));
  f.env.set_state(0, policy::backend_state::loading);
  f.client(cmd({"SET", "b", "2"}) + cmd({"EXEC"}) + cmd({"CLIENT", "REPLY", "ON"}));
  f.env.set_state(0, policy::backend_state::ready);
  f.client(cmd({"PING"}));
  const std::string w = f.written();
  CHECK(w == cmd({"DISCARD"}) + cmd({"CLIENT", "REPLY", "ON"}) + cmd({"PING"}));
  f.reply("+OK\r\n+PONG\r\n");
  CHECK(f.output() == "+OK\r\n+PONG\r\n");
  CHECK(f.core.pipeline_size() == 0);
}

TEST_CASE("a block held mid-MULTI under OFF waits for no answer its silent connection never sends") {
  // CLIENT REPLY OFF, MULTI, SET a 1 go to the server (silent); the backend then loads, so
  // the rest of the block is held and sent at EXEC on the same connection, inside MULTI
  // under OFF: the server answers none of it, EXEC included, as direct.
  session_fixture f;
  f.client(cmd({"CLIENT", "REPLY", "OFF"}) + cmd({"MULTI"}) + cmd({"SET", "a", "1"}));
  CHECK(f.written() == cmd({"CLIENT", "REPLY", "OFF"}) + cmd({"MULTI"}) + cmd({"SET", "a", "1"}));
  f.env.set_state(0, policy::backend_state::loading);
  f.client(cmd({"SET", "b", "2"}) + cmd({"EXEC"}));
  CHECK(f.written().empty());
  f.set_state(policy::backend_state::ready);
  CHECK(f.written() == cmd({"SET", "b", "2"}) + cmd({"EXEC"}));
  f.client(cmd({"CLIENT", "REPLY", "ON"}) + cmd({"GET", "a"}));
  CHECK(f.written() == cmd({"CLIENT", "REPLY", "ON"}) + cmd({"GET", "a"}));
  f.reply("+OK\r\n$1\r\n1\r\n");
  CHECK(f.output() == "+OK\r\n$1\r\n1\r\n");
  CHECK(f.core.pipeline_size() == 0);
}

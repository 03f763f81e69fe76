// Review of the changes since 1e8489d (issue 12's fixes, issue 13's SYNC/PSYNC tunnel,
// slots-mode classes). Each case is a client sequence whose outcome through respfence
// differs from direct redis on commit a35d79a. Every TEST_CASE here FAILS on that
// commit; the comment says what redis does.

#include <doctest/doctest.h>

#include <cstring>
#include <string>

#include "session_fixture.hpp"

using namespace respfence;
using namespace respfence::test;
using policy::backend_state;

// ------------------------------------------------------------ CLIENT REPLY OFF / SKIP

TEST_CASE("review13: CLIENT REPLY SKIP then a PING rewritten during loading: the next reply is not turned into PONG") {
  // Direct, while the server loads: CLIENT REPLY SKIP (no reply), PING (its reply is
  // skipped), then GET k. The proxy rides through loading: GET k waits and is answered
  // once the server is ready. The client must get GET's value and nothing for PING.
  //
  // The proxy sends PING as ECHO (send_rewritten_ping) without consuming the SKIP: the
  // server skips ECHO's reply, but the proxy still waits for one; it then skips GET
  // locally (answers it with nothing), and the server's reply to GET is taken as ECHO's,
  // which is a bulk string and so becomes "+PONG".
  session_fixture f;
  f.env.set_state(0, backend_state::loading);
  f.client(cmd({"CLIENT", "REPLY", "SKIP"}) + cmd({"PING"}) + cmd({"GET", "k"}));
  f.written();  // CLIENT REPLY SKIP and the ECHO go now; the server answers neither
  f.set_state(backend_state::ready);
  const std::string w = f.written();
  CHECK(w == cmd({"GET", "k"}));
  f.reply("$1\r\nv\r\n");  // the server's answer to GET k
  CHECK(f.output() == "$1\r\nv\r\n");
}

TEST_CASE("review13: CLIENT REPLY OFF: what the proxy answers itself is not sent either") {
  // Direct, while the server loads: CLIENT REPLY OFF, then MULTI: the server answers
  // nothing at all. Through the proxy, MULTI on a loading backend is held by the proxy
  // (tx.cpp) and answered "+OK" locally: the client gets a reply it never gets direct
  // (and the same for +QUEUED, the LOADING error of a rejected or expired command, a
  // locally answered PONG, ...: answer_local ignores CLIENT REPLY).
  session_fixture f;
  f.client(cmd({"PING"}));
  f.written();
  f.reply("+PONG\r\n");
  CHECK(f.output() == "+PONG\r\n");
  f.client(cmd({"CLIENT", "REPLY", "OFF"}));
  f.written();
  f.env.set_state(0, backend_state::loading);
  f.client(cmd({"MULTI"}) + cmd({"SET", "k", "v"}));
  CHECK(f.output().empty());
}

TEST_CASE("review13: CLIENT REPLY OFF then CLIENT REPLY with a bad mode expects no reply") {
  // Direct: CLIENT REPLY OFF, CLIENT REPLY BOGUS (a syntax error, not sent: replies are
  // off), CLIENT REPLY ON (+OK), PING (+PONG). Two replies, and nothing is pending.
  // Through the proxy, send() treats "CLIENT REPLY BOGUS" as a command with a reply even
  // though replies are off: every later reply is matched to the command before it, and
  // one command stays unanswered for ever (a flush fence then waits for it until its
  // timeout; a LOADING retry would resend the wrong command).
  session_fixture f;
  f.client(cmd({"CLIENT", "REPLY", "OFF"}) + cmd({"CLIENT", "REPLY", "BOGUS"}) +
           cmd({"CLIENT", "REPLY", "ON"}) + cmd({"PING"}));
  f.written();
  f.reply("+OK\r\n+PONG\r\n");
  CHECK(f.output() == "+OK\r\n+PONG\r\n");
  CHECK(f.core.pipeline_size() == 0);
}

// ------------------------------------------------------------ SYNC/PSYNC tunnel

TEST_CASE("review13: SYNC after commands sent with CLIENT REPLY OFF: their bytes are not overwritten") {
  // Direct: CLIENT REPLY OFF, SET k v, SYNC, then (a replica's) REPLCONF ACK 0: the
  // server runs SET k v and starts the stream.
  // Through the proxy, CLIENT REPLY OFF and SET k v are answered (with nothing) at once,
  // but their bytes still wait in the client input buffer to be written to the backend
  // link (not open yet). start_tunnel() resets the input buffer to offset 0, so the next
  // bytes the client sends are read over them: the backend receives REPLCONF's bytes
  // where SET k v was.
  session_fixture f;
  const std::string head = cmd({"CLIENT", "REPLY", "OFF"}) + cmd({"SET", "k", "v"});
  f.client(head + cmd({"SYNC"}));
  REQUIRE(f.core.tunnel());
  const std::string ack = cmd({"REPLCONF", "ACK", "0"});
  f.client(ack);  // before the backend connection is open
  const std::string w = f.written();
  CHECK(w == head + cmd({"SYNC"}) + ack);
}

// The server's limits for a client that has not authenticated, as the session learns and
// applies them (review 24/25); and a request the server refuses with a protocol error.

#include <doctest/doctest.h>

#include "session_fixture.hpp"

using namespace respfence;
using namespace respfence::test;

namespace {
const std::string noauth = "-NOAUTH Authentication required.\r\n";
const std::string unauth_mbulk = "-ERR Protocol error: unauthenticated multibulk length\r\n";
const std::string mset12 = cmd({"MSET", "a", "1", "b", "2", "c", "3", "d", "4", "e", "5", "f", "6"});
}  // namespace

TEST_CASE("limits: learned from a -NOAUTH, refused at the header, then nothing more") {
  session_fixture f;
  f.client(cmd({"GET", "x"}));
  CHECK(f.written() == cmd({"GET", "x"}));
  f.reply(noauth);
  CHECK(f.output() == noauth);
  f.client("*11\r\n$4\r\nPING\r\n");  // the other ten never come
  CHECK(f.written().empty());
  CHECK(f.output() == unauth_mbulk);
  CHECK(f.core.finished());
}

TEST_CASE("limits: not before the server said a password is wanted, nor once it served") {
  session_fixture f;
  f.client(mset12);
  CHECK(f.written() == mset12);
  f.reply("+OK\r\n");
  // Another client's -NOAUTH (a requirepass set since): this one's connection was served.
  f.env.note_auth_required(0, true);
  f.client(mset12);
  CHECK(f.written() == mset12);
  f.reply("+OK\r\n");
  CHECK(f.output() == "+OK\r\n+OK\r\n");
}

TEST_CASE("limits: a client's own AUTH in flight lifts them; the server decides") {
  session_fixture f;
  f.client(cmd({"GET", "x"}));
  f.written();
  f.reply(noauth);
  f.output();
  f.client(cmd({"AUTH", "pw"}) + mset12);
  CHECK(f.written() == cmd({"AUTH", "pw"}) + mset12);
  // The AUTH failed: the server refuses the MSET at its header and closes; so does the
  // proxy, after the two answers.
  f.reply("-WRONGPASS invalid username-password pair or user is disabled.\r\n" + unauth_mbulk);
  f.client(cmd({"PING"}));
  CHECK(f.written().empty());
  CHECK(f.output() ==
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n" + unauth_mbulk);
  CHECK(f.core.finished());
}

TEST_CASE("limits: slots mode: wanted once every backend said so") {
  fake_env env(2);
  env.route = routing::router::slots(routing::slot_map::even(2));
  env.note_auth_required(0, true);
  CHECK_FALSE(env.auth_required());
  env.note_auth_required(1, true);
  CHECK(env.auth_required());
  env.note_auth_required(0, false);
  CHECK_FALSE(env.auth_required());
}

TEST_CASE("a protocol error that is a script's reply closes nothing") {
  session_fixture f;
  const std::string eval = cmd({"EVAL", "return redis.error_reply('ERR Protocol error: invalid bulk length')", "0"});
  f.client(eval + cmd({"PING"}));
  CHECK(f.written() == eval + cmd({"PING"}));
  f.reply("-ERR Protocol error: invalid bulk length\r\n+PONG\r\n");
  CHECK(f.output() == "-ERR Protocol error: invalid bulk length\r\n+PONG\r\n");
  CHECK_FALSE(f.core.finished());
  // A SET over the lowest proto-max-bulk-len refused so: nothing after it is sent again
  // or answered, and the client closes. (A script's request can be refused too: its
  // shape decides, test_review27.)
  const std::string big(1024 * 1024 + 1, 'v');
  f.client(cmd({"SET", "k", big}) + cmd({"PING"}));
  f.written();
  f.reply("-ERR Protocol error: invalid bulk length\r\n");
  f.core.on_link_failed(0, true);
  CHECK(f.output() == "-ERR Protocol error: invalid bulk length\r\n");
  CHECK(f.core.finished());
}

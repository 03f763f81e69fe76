// Request framing: every case is fed whole, at every split point into two reads, and one
// byte at a time; all must give the same commands and the same error.

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "proxy/resp/request_framer.hpp"

using namespace respfence::proxy;

namespace {

struct outcome {
  std::vector<std::vector<std::string>> commands;
  size_t empties = 0;
  proto_error error = proto_error::none;
  std::string error_reply;
  size_t consumed = 0;  // bytes framed before the end or the error
  bool operator==(const outcome& o) const {
    return commands == o.commands && empties == o.empties && error == o.error &&
           error_reply == o.error_reply && consumed == o.consumed;
  }
};

// The framer reads as for a client the server takes as unauthenticated (its stricter
// limits), in the cases that set it.
bool g_unauth = false;

// Feeds `input` in chunks whose boundaries are `cuts`.
outcome run(const std::string& input, const std::vector<size_t>& cuts) {
  outcome out;
  request_framer f;
  f.set_unauthenticated(g_unauth);
  std::string buf;
  size_t start = 0;
  size_t fed = 0;
  auto drain = [&]() {
    while (true) {
      const frame_status s = f.next(std::string_view(buf).substr(start));
      if (s == frame_status::need_more) return true;
      if (s == frame_status::error) {
        out.error = f.error();
        out.error_reply = f.error_reply();
        return false;
      }
      if (s == frame_status::complete) {
        std::vector<std::string> args;
        for (size_t i = 0; i < f.argc(); ++i) {
          args.emplace_back(f.arg(std::string_view(buf).substr(start), i));
        }
        out.commands.push_back(std::move(args));
      } else {
        ++out.empties;
      }
      start += f.consumed();
      out.consumed = start;
    }
  };
  for (size_t c : cuts) {
    buf.append(input, fed, c - fed);
    fed = c;
    if (!drain()) return out;
  }
  buf.append(input, fed, std::string::npos);
  drain();
  return out;
}

// Runs every split and returns the whole-input outcome after checking they all agree.
outcome check_all_splits(const std::string& input) {
  const outcome whole = run(input, {});
  for (size_t k = 1; k < input.size(); ++k) {
    const outcome split = run(input, {k});
    INFO("split at " << k);
    CHECK(split == whole);
  }
  if (input.size() < 4096) {
    std::vector<size_t> each;
    for (size_t k = 1; k < input.size(); ++k) each.push_back(k);
    CHECK(run(input, each) == whole);
  }
  return whole;
}

using cmds = std::vector<std::vector<std::string>>;

}  // namespace

TEST_CASE("multibulk commands, pipelined") {
  const std::string in =
      "*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
  const outcome o = check_all_splits(in);
  CHECK(o.error == proto_error::none);
  CHECK(o.commands == cmds{{"PING"}, {"SET", "k", "hello"}, {"GET", "k"}});
  CHECK(o.consumed == in.size());
}

TEST_CASE("binary-safe bulk arguments, empty bulks") {
  std::string payload("a\0b\r\nc", 6);
  std::string in = "*3\r\n$3\r\nSET\r\n$0\r\n\r\n$6\r\n" + payload + "\r\n";
  const outcome o = check_all_splits(in);
  CHECK(o.commands == cmds{{"SET", "", payload}});
}

TEST_CASE("the bulk CRLF is skipped unchecked, as the server does") {
  const outcome o = check_all_splits("*1\r\n$4\r\nPINGxx*1\r\n$4\r\nPING\r\n");
  CHECK(o.commands == cmds{{"PING"}, {"PING"}});
}

TEST_CASE("multibulk count <= 0 is an empty request") {
  const outcome o = check_all_splits("*0\r\n*-1\r\n*-5\r\n*1\r\n$4\r\nPING\r\n");
  CHECK(o.empties == 3);
  CHECK(o.commands == cmds{{"PING"}});
}

TEST_CASE("invalid multibulk length") {
  for (const char* bad : {"*abc\r\n", "*+1\r\n", "*01\r\n", "*\r\n", "*2147483648\r\n",
                          "*99999999999999999999\r\n", "* 1\r\n"}) {
    INFO(bad);
    const outcome o = check_all_splits(std::string("*1\r\n$4\r\nPING\r\n") + bad);
    CHECK(o.commands == cmds{{"PING"}});
    CHECK(o.error == proto_error::invalid_multibulk_length);
    CHECK(o.error_reply == "-ERR Protocol error: invalid multibulk length\r\n");
  }
  // INT_MAX itself is accepted (and then needs more data).
  CHECK(run("*2147483647\r\n", {}).error == proto_error::none);
}

TEST_CASE("invalid bulk length") {
  for (const char* bad : {"*1\r\n$-1\r\n", "*1\r\n$x\r\n", "*1\r\n$536870913\r\n", "*1\r\n$\r\n",
                          "*2\r\n$1\r\na\r\n$01\r\n"}) {
    INFO(bad);
    const outcome o = check_all_splits(bad);
    CHECK(o.error == proto_error::invalid_bulk_length);
    CHECK(o.error_reply == "-ERR Protocol error: invalid bulk length\r\n");
  }
  // 512 MB exactly is within the limit.
  CHECK(run("*1\r\n$536870912\r\n", {}).error == proto_error::none);
}

TEST_CASE("an unauthenticated client's limits, at each header") {
  g_unauth = true;
  // 11 arguments: refused at the count, before any argument has arrived.
  for (const char* bad : {"*11\r\n", "*11\r\n$4\r\nPING\r\n"}) {
    INFO(bad);
    const outcome o = check_all_splits(bad);
    CHECK(o.error == proto_error::unauth_multibulk_length);
    CHECK(o.error_reply == "-ERR Protocol error: unauthenticated multibulk length\r\n");
  }
  // A bulk of 16385 bytes: refused at its header, after the earlier commands.
  const outcome o = check_all_splits("*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$16385\r\n");
  CHECK(o.commands == cmds{{"PING"}});
  CHECK(o.error == proto_error::unauth_bulk_length);
  CHECK(o.error_reply == "-ERR Protocol error: unauthenticated bulk length\r\n");
  // The server's own limits come first: an invalid length is invalid, whoever sends it.
  CHECK(run("*2147483648\r\n", {}).error == proto_error::invalid_multibulk_length);
  CHECK(run("*1\r\n$536870913\r\n", {}).error == proto_error::invalid_bulk_length);
  // 10 arguments of 16384 bytes are within them; so are empty and negative counts.
  const std::string big(16384, 'x');
  std::string ten = "*10\r\n";
  for (int i = 0; i < 10; ++i) ten += "$16384\r\n" + big + "\r\n";
  const outcome ok = run(ten + "*-1\r\n*0\r\n", {});
  CHECK(ok.error == proto_error::none);
  CHECK(ok.commands.size() == 1);
  CHECK(ok.empties == 2);
  g_unauth = false;
  // Authenticated (or no password wanted): the ordinary limits.
  CHECK(run("*11\r\n", {}).error == proto_error::none);
  CHECK(run("*1\r\n$16385\r\n", {}).error == proto_error::none);
}

TEST_CASE("expected '$'") {
  const outcome o = check_all_splits("*1\r\n:4\r\nPING\r\n");
  CHECK(o.error == proto_error::expected_dollar);
  CHECK(o.error_reply == "-ERR Protocol error: expected '$', got ':'\r\n");
  // CR and LF in the message become spaces.
  CHECK(run("*1\r\n\n\r\n", {}).error_reply == "-ERR Protocol error: expected '$', got ' '\r\n");
}

TEST_CASE("too big count strings and inline requests") {
  const std::string long_line(64 * 1024 + 1, 'a');
  CHECK(run("*" + long_line, {}).error_reply ==
        "-ERR Protocol error: too big mbulk count string\r\n");
  CHECK(run("*1\r\n$" + long_line, {}).error_reply ==
        "-ERR Protocol error: too big bulk count string\r\n");
  CHECK(run(long_line, {}).error_reply == "-ERR Protocol error: too big inline request\r\n");
  // Exactly the limit is still waiting for more.
  CHECK(run(std::string(64 * 1024, 'a'), {}).error == proto_error::none);
  // Arriving in pieces gives the same answer.
  CHECK(run(long_line, {1000, 30000, 65536}).error == proto_error::too_big_inline);
}

TEST_CASE("a NUL hides the line end, as the server's strchr does") {
  std::string in("GET a\0b\r\n", 9);
  const outcome o = run(in, {});
  CHECK(o.error == proto_error::none);
  CHECK(o.commands.empty());
  std::string mb("*1\0\r\n", 5);
  CHECK(run(mb, {}).commands.empty());
  CHECK(run(mb, {}).error == proto_error::none);
  // Header lines are scanned byte by byte for a short prefix, then with memchr: a NUL
  // hides the CR on either side of that boundary, in a count and in a bulk length, and
  // without a NUL the same long line is read and refused.
  for (size_t at = 1; at < 3 * scan_prefix; ++at) {
    INFO("NUL at " << at);
    std::string count = "*" + std::string(3 * scan_prefix, '1') + "\r\n";
    CHECK(check_all_splits(count).error == proto_error::invalid_multibulk_length);
    count[at] = '\0';
    const outcome c = check_all_splits(count);
    CHECK(c.error == proto_error::none);
    CHECK(c.commands.empty());
    std::string bulk = "*1\r\n$" + std::string(3 * scan_prefix, '4') + "\r\nPING\r\n";
    CHECK(check_all_splits(bulk).error == proto_error::invalid_bulk_length);
    bulk[4 + at] = '\0';
    const outcome b = check_all_splits(bulk);
    CHECK(b.error == proto_error::none);
    CHECK(b.commands.empty());
  }
}

TEST_CASE("line ends found past the short scan, in requests and at every split") {
  // A header line longer than the byte-by-byte prefix (leading spaces are not digits,
  // so only a count of the right length can be this long: pad with the argument).
  const std::string arg(2 * scan_prefix + 3, 'x');
  const std::string in = "*2\r\n$3\r\nGET\r\n$" + std::to_string(arg.size()) + "\r\n" + arg +
                         "\r\nPING " + arg + "\r\n";
  const outcome o = check_all_splits(in);
  CHECK(o.error == proto_error::none);
  CHECK(o.commands == cmds{{"GET", arg}, {"PING", arg}});
}

TEST_CASE("inline commands: splitting and quoting as sdssplitargs") {
  const outcome o = check_all_splits(
      "PING\r\nset k \"a b\\x41\\n\"\n  get   'it\\'s'  \r\n\r\n   \r\necho \"\"\r\n");
  CHECK(o.commands == cmds{{"PING"}, {"set", "k", "a bA\n"}, {"get", "it's"}, {"echo", ""}});
  CHECK(o.empties == 2);
}

TEST_CASE("inline unbalanced quotes") {
  for (const char* bad : {"get \"abc\r\n", "get 'abc\r\n", "get \"a\"b\r\n", "get 'a'b\r\n"}) {
    INFO(bad);
    const outcome o = check_all_splits(std::string("PING\r\n") + bad);
    CHECK(o.commands == cmds{{"PING"}});
    CHECK(o.error_reply == "-ERR Protocol error: unbalanced quotes in request\r\n");
  }
}

TEST_CASE("large bulk needs only what it declares") {
  const std::string big(200000, 'x');
  const std::string in = "*2\r\n$4\r\nECHO\r\n$200000\r\n" + big + "\r\n";
  CHECK(run(in, {}).commands == cmds{{"ECHO", big}});
  CHECK(run(in, {10, 25, 1000, 150000, 200020}).commands == cmds{{"ECHO", big}});
  request_framer f;
  CHECK(f.next(std::string_view(in).substr(0, 40)) == frame_status::need_more);
  CHECK(f.bytes_needed_hint() == in.size());
}

TEST_CASE("string2ll is the server's") {
  long long v = 0;
  CHECK(redis_string2ll("0", v));
  CHECK(v == 0);
  CHECK(redis_string2ll("-9223372036854775808", v));
  CHECK(v == INT64_MIN);
  CHECK_FALSE(redis_string2ll("9223372036854775808", v));
  CHECK_FALSE(redis_string2ll("-0", v));
  CHECK_FALSE(redis_string2ll("007", v));
  CHECK_FALSE(redis_string2ll("", v));
  CHECK_FALSE(redis_string2ll("-", v));
  CHECK_FALSE(redis_string2ll("1 ", v));
}

// shared_link (design.md §12): one backend connection shared by several sessions, as a
// state machine. Replies go to their owners in the order the owners' bytes were written,
// the handshake's answers are the link's own, and a session that left loses its replies
// without shifting anyone else's.

#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "proxy/upstream/shared_link.hpp"

using namespace respfence::proxy;

namespace {

int a_tag, b_tag;
shared_link::owner const A = &a_tag;
shared_link::owner const B = &b_tag;

std::string written(shared_link& l) {
  std::string out;
  for (const out_span& s : l.take_output()) out.append(s.data, s.size);
  l.output_done();
  return out;
}

// Feeds `bytes` in pieces of `step`; returns (owner, reply) in delivery order.
std::vector<std::pair<shared_link::owner, std::string>> feed(shared_link& l, const std::string& bytes,
                                                             size_t step) {
  std::vector<std::pair<shared_link::owner, std::string>> got;
  for (size_t i = 0; i < bytes.size(); i += step) {
    const size_t n = std::min(step, bytes.size() - i);
    auto [p, cap] = l.read_buffer();
    REQUIRE(cap >= n);
    std::memcpy(p, bytes.data() + i, n);
    REQUIRE(l.on_data(n, [&](shared_link::owner o, std::string_view r, const reply_info&) {
      got.emplace_back(o, std::string(r));
      return false;  // (no refusals here)
    }));
  }
  return got;
}

}  // namespace

TEST_CASE("shared_link: replies go to their owners in write order, at every split point") {
  const std::string a1 = "*2\r\n$3\r\nGET\r\n$1\r\na\r\n";
  const std::string b1 = "*1\r\n$4\r\nPING\r\n";
  const std::string replies = "$2\r\nva\r\n+PONG\r\n:7\r\n";
  for (size_t step = 1; step <= replies.size(); ++step) {
    shared_link l(pool_key{});
    l.on_connected();
    l.add(A, {out_span{a1.data(), a1.size()}}, 1);
    l.add(B, {out_span{b1.data(), b1.size()}}, 1);
    l.add(A, {out_span{a1.data(), a1.size()}}, 1);
    CHECK(written(l) == a1 + b1 + a1);
    CHECK(l.replies_due() == 3);
    const auto got = feed(l, replies, step);
    REQUIRE(got.size() == 3);
    CHECK(got[0] == std::make_pair(A, std::string("$2\r\nva\r\n")));
    CHECK(got[1] == std::make_pair(B, std::string("+PONG\r\n")));
    CHECK(got[2] == std::make_pair(A, std::string(":7\r\n")));
    CHECK(l.idle());
  }
}

TEST_CASE("shared_link: the handshake goes first and its answers are the link's own") {
  pool_key key;
  key.auth = "*3\r\n$4\r\nAUTH\r\n$1\r\nu\r\n$1\r\np\r\n";
  key.resp3 = true;
  key.db = 2;
  shared_link l(key);
  const std::string a1 = "*1\r\n$4\r\nPING\r\n";
  l.add(A, {out_span{a1.data(), a1.size()}}, 1);  // queued before the connection is up
  l.on_connected();
  const std::string w = written(l);
  CHECK(w == key.auth + "*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n2\r\n" + a1);
  const auto got = feed(l, "+OK\r\n%1\r\n+server\r\n+redis\r\n+OK\r\n+PONG\r\n", 3);
  REQUIRE(got.size() == 1);
  CHECK(got[0].first == A);
  CHECK(got[0].second == "+PONG\r\n");
  CHECK_FALSE(l.bad());
}

TEST_CASE("shared_link: a failed handshake marks the link unfit") {
  pool_key key;
  key.db = 99;
  shared_link l(key);
  l.on_connected();
  written(l);
  CHECK(feed(l, "-ERR DB index is out of range\r\n", 4).empty());
  CHECK(l.bad());
}

TEST_CASE("shared_link: a session that left loses its replies, and only its own") {
  shared_link l(pool_key{});
  l.on_connected();
  const std::string c = "*1\r\n$4\r\nPING\r\n";
  l.add(A, {out_span{c.data(), c.size()}}, 2);
  l.add(B, {out_span{c.data(), c.size()}}, 1);
  written(l);
  l.forget(A);
  const auto got = feed(l, ":1\r\n:2\r\n:3\r\n", 5);
  REQUIRE(got.size() == 1);
  CHECK(got[0] == std::make_pair(B, std::string(":3\r\n")));
}

TEST_CASE("shared_link: a push is nobody's reply") {
  shared_link l(pool_key{});
  l.on_connected();
  const std::string c = "*1\r\n$4\r\nPING\r\n";
  l.add(A, {out_span{c.data(), c.size()}}, 1);
  written(l);
  const auto got = feed(l, ">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n+PONG\r\n", 7);
  REQUIRE(got.size() == 1);
  CHECK(got[0] == std::make_pair(A, std::string("+PONG\r\n")));
}

TEST_CASE("shared_link: a broken connection names each owner once") {
  shared_link l(pool_key{});
  l.on_connected();
  const std::string c = "*1\r\n$4\r\nPING\r\n";
  l.add(A, {out_span{c.data(), c.size()}}, 1);
  l.add(B, {out_span{c.data(), c.size()}}, 1);
  l.add(A, {out_span{c.data(), c.size()}}, 1);
  (void)l.take_output();  // being written when the connection breaks
  l.add(B, {out_span{c.data(), c.size()}}, 1);  // batched, not written yet
  const shared_link::failure f = l.on_failed();
  CHECK(f.due == std::vector<shared_link::owner>{A, B});
  CHECK(f.batched == std::vector<shared_link::owner>{B, A});
  CHECK(l.idle());
  CHECK(l.replies_due() == 0);
}

TEST_CASE("shared_link: a script keeps the link solo until its run is answered") {
  shared_link l(pool_key{});
  l.on_connected();
  const std::string get = "*2\r\n$3\r\nGET\r\n$1\r\na\r\n";
  const std::string eval = "*3\r\n$4\r\nEVAL\r\n$8\r\nreturn 1\r\n$1\r\n0\r\n";
  l.add(B, {out_span{get.data(), get.size()}}, 1);
  CHECK_FALSE(l.solo_due());
  l.add(A, {out_span{eval.data(), eval.size()}}, 1, shared_link::mark_solo);
  CHECK(l.solo_due());
  // More of the same owner joins its run, which stays solo until all of it is answered.
  l.add(A, {out_span{get.data(), get.size()}}, 1);
  CHECK(written(l) == get + eval + get);
  CHECK(l.replies_due() == 3);
  auto got = feed(l, "$-1\r\n:1\r\n", 1);
  CHECK(got.size() == 2);
  CHECK(l.solo_due());
  got = feed(l, "$-1\r\n", 2);
  CHECK(got.size() == 1);
  CHECK_FALSE(l.solo_due());
  CHECK(l.replies_due() == 0);
  // A failure forgets it too.
  l.add(A, {out_span{eval.data(), eval.size()}}, 1, shared_link::mark_solo);
  CHECK(l.solo_due());
  (void)l.on_failed();
  CHECK_FALSE(l.solo_due());
  CHECK(l.replies_due() == 0);
}

TEST_CASE("shared_link: the name a client gave the link is cleared when it goes") {
  pool_key key;
  key.db = 3;
  shared_link l(key);
  const std::string setname = "*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n$1\r\nx\r\n";
  l.add(A, {out_span{setname.data(), setname.size()}}, 1);
  l.set_named_by(A);  // the upstream does, once the session saw +OK
  CHECK(l.named_by() == A);
  l.forget(B);
  CHECK(l.named_by() == A);
  // A leaves before the connection is even up: the handshake, A's bytes (its reply is
  // dropped) and the clearing SETNAME go in that order, each of the link's own spans
  // with its own bytes.
  l.forget(A);
  CHECK(l.named_by() == nullptr);
  l.on_connected();
  CHECK(written(l) == "*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n" + setname +
                          "*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n$0\r\n\r\n");
  const auto got = feed(l, "+OK\r\n+OK\r\n+OK\r\n", 1);
  CHECK(got.empty());
  CHECK(l.idle());
  CHECK_FALSE(l.bad());
}

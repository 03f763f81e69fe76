// Reply framing: RESP2 cases are checked against hiredis's reader as an oracle; RESP3
// cases against hand-written expectations. Everything at every split point.

#include <doctest/doctest.h>
#include <hiredis/hiredis.h>

#include <random>
#include <string>
#include <vector>

#include "proxy/resp/reply_framer.hpp"
#include "proxy/resp/resp_value.hpp"
#include "proxy/resp/resp_writer.hpp"

using namespace respfence::proxy;

namespace {

struct framed {
  std::vector<std::string> replies;  // the bytes of each reply
  std::vector<reply_info> infos;
  bool error = false;
  bool operator==(const framed& o) const { return replies == o.replies && error == o.error; }
};

framed frame_all(const std::string& input, const std::vector<size_t>& cuts) {
  framed out;
  reply_framer f;
  std::string buf;
  size_t start = 0;
  size_t fed = 0;
  auto drain = [&]() {
    while (true) {
      const frame_status s = f.next(std::string_view(buf).substr(start));
      if (s == frame_status::need_more) return true;
      if (s == frame_status::error) {
        out.error = true;
        return false;
      }
      out.replies.push_back(buf.substr(start, f.consumed()));
      out.infos.push_back(f.info());
      start += f.consumed();
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

framed check_all_splits(const std::string& input) {
  const framed whole = frame_all(input, {});
  for (size_t k = 1; k < input.size(); ++k) {
    INFO("split at " << k);
    CHECK(frame_all(input, {k}) == whole);
  }
  if (input.size() < 2048) {
    std::vector<size_t> each;
    for (size_t k = 1; k < input.size(); ++k) each.push_back(k);
    CHECK(frame_all(input, each) == whole);
  }
  return whole;
}

// hiredis: how many complete replies does this RESP2 stream hold, and does each of our
// frames parse, alone, as exactly one reply?
size_t hiredis_count(const std::string& s, bool* error) {
  redisReader* r = redisReaderCreate();
  redisReaderFeed(r, s.data(), s.size());
  size_t n = 0;
  *error = false;
  while (true) {
    void* reply = nullptr;
    if (redisReaderGetReply(r, &reply) != REDIS_OK) {
      *error = true;
      break;
    }
    if (reply == nullptr) break;
    freeReplyObject(reply);
    ++n;
  }
  redisReaderFree(r);
  return n;
}

void random_resp2(std::mt19937& rng, std::string& out, int depth) {
  std::uniform_int_distribution<int> kind(0, depth < 5 ? 6 : 4);
  switch (kind(rng)) {
    case 0:
      out += "+OK\r\n";
      break;
    case 1:
      out += "-ERR something went wrong\r\n";
      break;
    case 2:
      write_to(out).integer(static_cast<int64_t>(rng()) - 1000000);
      break;
    case 3: {
      std::string s(rng() % 40, 'v');
      if (!s.empty()) s[rng() % s.size()] = '\r';
      write_to(out).bulk(s);
      break;
    }
    case 4:
      out += "$-1\r\n";
      break;
    case 5:
      out += (rng() % 2) ? "*-1\r\n" : "*0\r\n";
      break;
    default: {
      const int n = 1 + static_cast<int>(rng() % 4);
      write_to(out).array(n);
      for (int i = 0; i < n; ++i) random_resp2(rng, out, depth + 1);
    }
  }
}

}  // namespace

TEST_CASE("RESP2 replies agree with hiredis, at every split") {
  std::mt19937 rng(12345);
  for (int round = 0; round < 60; ++round) {
    std::string stream;
    const int n = 1 + round % 5;
    for (int i = 0; i < n; ++i) random_resp2(rng, stream, 0);
    bool herr = false;
    const size_t expect = hiredis_count(stream, &herr);
    REQUIRE_FALSE(herr);
    const framed f = check_all_splits(stream);
    CHECK_FALSE(f.error);
    CHECK(f.replies.size() == expect);
    for (const auto& one : f.replies) {
      CHECK(hiredis_count(one, &herr) == 1);
      CHECK_FALSE(herr);
    }
  }
}

TEST_CASE("top-level info for pub/sub recognition") {
  const std::string msg = "*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n";
  const framed f = check_all_splits(msg + ":42\r\n");
  REQUIRE(f.replies.size() == 2);
  const reply_info& i = f.infos[0];
  CHECK(i.type == '*');
  CHECK(i.count == 3);
  REQUIRE(i.n_el == 3);
  CHECK(i.element(f.replies[0], 0) == "message");
  CHECK(i.element(f.replies[0], 2) == "hello");
  CHECK(f.infos[1].type == ':');
  const framed sub = frame_all("*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n", {});
  REQUIRE(sub.replies.size() == 1);
  CHECK(sub.infos[0].el[2].type == ':');
  CHECK(sub.infos[0].el[2].integer == 1);
}

TEST_CASE("RESP3 types, pushes and attributes") {
  const std::string in =
      "_\r\n"
      ",3.14\r\n"
      "#t\r\n"
      "(3492890328409238509324850943850943825024385\r\n"
      "!21\r\nSYNTAX invalid syntax\r\n"
      "=15\r\ntxt:Some string\r\n"
      "%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n"
      "~3\r\n+a\r\n+b\r\n+c\r\n"
      ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n"
      "|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n*2\r\n:2039123\r\n:9543892\r\n"
      "*2\r\n|1\r\n+ttl\r\n:3600\r\n$3\r\nval\r\n:7\r\n";
  const framed f = check_all_splits(in);
  CHECK_FALSE(f.error);
  REQUIRE(f.replies.size() == 11);
  CHECK(f.infos[0].type == '_');
  CHECK(f.infos[4].type == '!');
  CHECK(f.infos[4].is_error());
  CHECK(f.infos[6].type == '%');
  CHECK(f.infos[6].count == 2);
  CHECK(f.infos[8].is_push());
  CHECK(f.infos[8].element(f.replies[8], 0) == "message");
  // The attribute belongs to the reply that follows it.
  CHECK(f.infos[9].attribute);
  CHECK(f.infos[9].type == '*');
  CHECK(f.replies[9].substr(0, 4) == "|1\r\n");
  // An attribute on an element is skipped when listing the elements.
  CHECK(f.infos[10].n_el == 2);
  CHECK(f.infos[10].element(f.replies[10], 0) == "val");
  CHECK(f.infos[10].el[1].integer == 7);
}

TEST_CASE("RESP3 streamed strings and aggregates") {
  const std::string in =
      "$?\r\n;4\r\nHell\r\n;5\r\no wor\r\n;1\r\nd\r\n;0\r\n"
      "*?\r\n:1\r\n:2\r\n*?\r\n+x\r\n.\r\n.\r\n"
      "%?\r\n+a\r\n:1\r\n.\r\n"
      "+after\r\n";
  const framed f = check_all_splits(in);
  CHECK_FALSE(f.error);
  REQUIRE(f.replies.size() == 4);
  CHECK(f.infos[0].type == '$');
  CHECK(f.infos[1].type == '*');
  CHECK(f.infos[1].count == -2);
  CHECK(f.replies[3] == "+after\r\n");
}

TEST_CASE("bad replies are errors, not hangs") {
  for (const char* bad : {"?\r\n", "+OK\rX", "$3\r\nabcde\r\n", "*x\r\n", ".\r\n", ":1.5\r\n",
                          "$-2\r\n", "%-1\r\n"}) {
    INFO(bad);
    CHECK(frame_all(bad, {}).error);
  }
}

TEST_CASE("replies of any depth the server produces are framed and parsed, without recursion") {
  // A script's recursive table comes back about 8,000 levels deep, ending in an error;
  // 10,000 levels here, in RESP2 and RESP3 shapes, at split points all along the reply.
  for (const std::string level : {"*1\r\n", "%1\r\n+k\r\n", ">1\r\n", "|1\r\n+a\r\n+b\r\n*1\r\n"}) {
    std::string deep;
    for (int i = 0; i < 10000; ++i) deep += level;
    deep += "-ERR reached lua stack limit\r\n";
    deep += "+next\r\n";
    const framed whole = frame_all(deep, {});
    CHECK_FALSE(whole.error);
    REQUIRE(whole.replies.size() == 2);
    CHECK(whole.replies[0].size() + 7 == deep.size());
    CHECK(whole.replies[1] == "+next\r\n");
    for (size_t k = 1; k < deep.size(); k += deep.size() / 97 + 1) {
      INFO("split at " << k);
      CHECK(frame_all(deep, {k}) == whole);
    }
    const auto v = parse_resp(whole.replies[0]);
    REQUIRE(v.has_value());
    const resp_value* p = &*v;
    size_t depth = 0;
    while (!p->elems.empty()) {
      p = &p->elems.back();
      ++depth;
    }
    CHECK(depth >= 10000);
    CHECK(p->type == '-');
  }
}

TEST_CASE("a chain of attributes adds no depth, for the framer and the value parser alike") {
  // Found by fuzz_reply_framer: 600 empty attributes before a value framed as one reply but
  // nested the value parser 600 deep, past its limit.
  std::string chain;
  for (int i = 0; i < 600; ++i) chain += (i % 2 == 0) ? "|0\r\n" : "|1\r\n+k\r\n+v\r\n";
  chain += ":42\r\n";
  const framed f = frame_all(chain, {});
  CHECK_FALSE(f.error);
  REQUIRE(f.replies.size() == 1);
  const auto v = respfence::proxy::parse_resp(f.replies[0]);
  REQUIRE(v.has_value());
  CHECK(v->type == ':');
  CHECK(v->integer == 42);
  // Counts so large that doubling them for a map would overflow are refused.
  CHECK(frame_all("%4611686018427387905\r\n", {}).error);
  CHECK_FALSE(respfence::proxy::parse_resp("%4611686018427387905\r\n").has_value());
}

TEST_CASE("an attribute right before a streamed aggregate's end marker is an error") {
  // Found by fuzz_reply_framer: the framer took "|0" then "." as the end of a streamed array,
  // but an attribute annotates the value after it, so the value parser refused the reply.
  for (const char* bad :
       {"*?\r\n|0\r\n.\r\n", "*?\r\n:1\r\n|1\r\n+k\r\n+v\r\n.\r\n", "~?\r\n|0\r\n|0\r\n.\r\n",
        "*?\r\n|1\r\n$?\r\n;1\r\nk\r\n;0\r\n+v\r\n.\r\n"}) {
    INFO(bad);
    CHECK(check_all_splits(bad).error);
    CHECK_FALSE(parse_resp(bad).has_value());
  }
  // The same attributes followed by the value they annotate are fine.
  for (const char* good :
       {"*?\r\n|0\r\n:1\r\n.\r\n", "*?\r\n:1\r\n|1\r\n+k\r\n+v\r\n:2\r\n.\r\n"}) {
    INFO(good);
    const framed f = check_all_splits(good);
    CHECK_FALSE(f.error);
    REQUIRE(f.replies.size() == 1);
    CHECK(parse_resp(f.replies[0]).has_value());
  }
}

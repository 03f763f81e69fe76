// A hiredis client driven by the integration tests: it talks to the proxy whose port is
// in RESPFENCE_PORT, as an application linked against hiredis would.

#include <doctest/doctest.h>
#include <hiredis/hiredis.h>

#include <cstdlib>
#include <memory>
#include <string>

namespace {

struct ctx_deleter {
  void operator()(redisContext* c) const { redisFree(c); }
};
using ctx_ptr = std::unique_ptr<redisContext, ctx_deleter>;

struct reply_deleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using reply_ptr = std::unique_ptr<redisReply, reply_deleter>;

ctx_ptr connect() {
  const char* port = std::getenv("RESPFENCE_PORT");
  REQUIRE(port != nullptr);
  timeval tv{5, 0};
  ctx_ptr c(redisConnectWithTimeout("127.0.0.1", std::atoi(port), tv));
  REQUIRE(c);
  REQUIRE(c->err == 0);
  redisSetTimeout(c.get(), tv);
  return c;
}

reply_ptr get_reply(redisContext* c) {
  void* r = nullptr;
  REQUIRE(redisGetReply(c, &r) == REDIS_OK);
  return reply_ptr(static_cast<redisReply*>(r));
}

}  // namespace

TEST_CASE("pipelined SET/GET through hiredis come back in order") {
  ctx_ptr c = connect();
  const int n = 5000;
  for (int i = 0; i < n; ++i) {
    redisAppendCommand(c.get(), "SET hk%d value-%d", i, i);
    redisAppendCommand(c.get(), "GET hk%d", i);
  }
  for (int i = 0; i < n; ++i) {
    reply_ptr set = get_reply(c.get());
    CHECK(set->type == REDIS_REPLY_STATUS);
    reply_ptr get = get_reply(c.get());
    REQUIRE(get->type == REDIS_REPLY_STRING);
    CHECK(std::string(get->str, get->len) == "value-" + std::to_string(i));
  }
}

TEST_CASE("binary values and large values survive the round trip") {
  ctx_ptr c = connect();
  std::string big(3 * 1024 * 1024 + 17, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131 % 251);
  reply_ptr set(static_cast<redisReply*>(
      redisCommand(c.get(), "SET hbig %b", big.data(), big.size())));
  REQUIRE(set);
  CHECK(set->type == REDIS_REPLY_STATUS);
  reply_ptr get(static_cast<redisReply*>(redisCommand(c.get(), "GET hbig")));
  REQUIRE(get);
  REQUIRE(get->type == REDIS_REPLY_STRING);
  CHECK(std::string(get->str, get->len) == big);
}

TEST_CASE("errors from the server pass through") {
  ctx_ptr c = connect();
  reply_ptr r(static_cast<redisReply*>(redisCommand(c.get(), "NOSUCHCOMMAND a b")));
  REQUIRE(r);
  REQUIRE(r->type == REDIS_REPLY_ERROR);
  CHECK(std::string(r->str) == "ERR unknown command 'NOSUCHCOMMAND', with args beginning with: 'a' 'b' ");
}

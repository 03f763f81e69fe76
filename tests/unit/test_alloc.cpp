// The steady state allocates nothing per command: a counting global operator new
// watches a session carry pipelines of GET/SET (and PING rewrites) once it is warm.

#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "session_fixture.hpp"

namespace {
std::atomic<size_t> g_allocs{0};
}

// These operators replace the global ones, so memory from new is malloc'ed and free() is
// right; GCC 12 at -Os inlines them into libstdc++'s containers and, not knowing that they
// replace the global ones, reports -Wmismatched-new-delete (a MinSizeRel build fails with
// RESPFENCE_WERROR).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

void* operator new(size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }

using namespace respfence;
using namespace respfence::test;

namespace {
// One round: a client pipeline in, forwarded, answered, replies out.
void round(session_fixture& f, const std::string& req, const std::string& rep, size_t n) {
  f.client(req);
  if (f.core.link_needs_connect(0)) {
    f.core.on_link_connecting(0);
    f.core.on_link_connected(0);
  }
  REQUIRE(f.core.link_has_output(0));
  (void)f.core.take_link_output(0);
  f.core.link_output_done(0);
  f.reply(rep);
  while (f.core.has_client_output()) {
    (void)f.core.take_client_output();
    f.core.client_output_done();
  }
  REQUIRE(f.core.pipeline_size() == 0);
  (void)n;
}
}  // namespace

TEST_CASE("no allocation per command once warm: single GET/SET, and a 16-deep pipeline") {
  session_fixture f;
  std::string one = cmd({"SET", "key:000001", "xxx"});
  std::string pipe16;
  std::string rep16;
  for (int i = 0; i < 8; ++i) {
    pipe16 += cmd({"SET", "key:000001", "xxx"});
    pipe16 += cmd({"GET", "key:000001"});
    rep16 += "+OK\r\n$3\r\nxxx\r\n";
  }
  for (int i = 0; i < 100; ++i) {
    round(f, one, "+OK\r\n", 1);
    round(f, pipe16, rep16, 16);
  }
  const size_t before = g_allocs.load();
  for (int i = 0; i < 10000; ++i) {
    round(f, one, "+OK\r\n", 1);
    round(f, pipe16, rep16, 16);
  }
  CHECK(g_allocs.load() - before == 0);
}

TEST_CASE("no allocation per command while PING is rewritten during loading") {
  session_fixture f;
  f.env.set_state(0, policy::backend_state::loading);
  const std::string ping = cmd({"PING"});
  for (int i = 0; i < 100; ++i) round(f, ping, "$4\r\nPONG\r\n", 1);
  const size_t before = g_allocs.load();
  for (int i = 0; i < 10000; ++i) round(f, ping, "$4\r\nPONG\r\n", 1);
  CHECK(g_allocs.load() - before == 0);
}

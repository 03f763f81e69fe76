// The session's FIFO: emplace_back hands out a slot without writing it, so every slot
// outside the live range must hold a value-initialised element, whatever was popped,
// pushed at the front, or moved when the array grew.

#include <doctest/doctest.h>

#include <string>

#include "proxy/session/ring.hpp"

using respfence::proxy::ring;

namespace {
struct item {
  int n = 0;
  std::string s;
  bool flag = false;
};

bool pristine(const item& i) {
  return i.n == 0 && i.s.empty() && !i.flag;
}
}  // namespace

TEST_CASE("ring: emplace_back gives a fresh element after pops, front pushes and growth") {
  ring<item> r;
  int next = 1;
  auto fill = [&](item& i) {
    i.n = next++;
    i.s = std::string(40, 'x');  // past the small-string buffer
    i.flag = true;
  };
  for (int round = 0; round < 50; ++round) {
    // Grow past the first array (16) and wrap around several times.
    for (int k = 0; k < 7 + round % 13; ++k) {
      item& e = r.emplace_back();
      CHECK(pristine(e));
      fill(e);
    }
    if (round % 3 == 0) r.push_front(item{-1, "front", true});
    for (int k = 0; k < 5 + round % 11 && !r.empty(); ++k) r.pop_front();
    if (round % 4 == 0 && !r.empty()) r.pop_back();
  }
  // What is left is in order and whole.
  int last = 0;
  for (size_t i = 0; i < r.size(); ++i) {
    if (r[i].n == -1) continue;
    CHECK(r[i].n > last);
    CHECK(r[i].s.size() == 40);
    last = r[i].n;
  }
  r.clear();
  for (int k = 0; k < 40; ++k) CHECK(pristine(r.emplace_back()));
}

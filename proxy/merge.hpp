#pragma once
// Merging the replies of a command split over several backends, or fanned out to all of
// them (slots mode, SPEC §6). Pure: replies in, one reply out.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "routing/router.hpp"

namespace respfence::proxy {

struct merge_state {
  routing::merge_rule rule = routing::merge_rule::none;
  uint16_t parts = 0;
  uint16_t answered = 0;
  std::vector<uint16_t> part_backend;  // backend of each part
  std::vector<std::string> replies;    // reply of each part
  // MGET: for each key of the original command, (part, index within that part).
  std::vector<std::pair<uint16_t, uint32_t>> order;
  uint16_t scan_shard = 0;             // SCAN: the shard this cursor walks
  std::vector<std::string> names;      // INFO: backend names

  void reset(routing::merge_rule r, uint16_t n) {
    rule = r;
    parts = n;
    answered = 0;
    part_backend.assign(n, 0);
    replies.assign(n, std::string());
    order.clear();
    scan_shard = 0;
    names.clear();
  }
};

// The merged reply. `resp3` picks the null form.
std::string merge_replies(const merge_state& m, bool resp3, size_t shards);

}  // namespace respfence::proxy

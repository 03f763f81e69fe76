#pragma once
// Merging the replies of a command split over several backends, or fanned out to all of
// them (slots mode, design.md §10). Pure: part replies in, one reply out.

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "policy/loading_policy.hpp"
#include "routing/router.hpp"

namespace respfence::proxy {

enum class part_state : uint8_t { pending, sent, answered };

struct merge_state {
  routing::merge_rule rule = routing::merge_rule::none;
  uint16_t parts = 0;
  uint16_t answered = 0;
  std::vector<uint16_t> part_backend;  // backend of each part
  std::vector<part_state> state;
  std::vector<uint8_t> ping_bare;      // PING part sent as ECHO for a bare PING
  std::vector<uint8_t> asking;         // cluster: send ASKING before this part (-ASK)
  std::vector<std::string> replies;    // reply of each part
  std::vector<std::string> requests;   // generated command of each part ("" = the client's bytes)
  // MGET: for each key of the original command, (part, index within that part).
  std::vector<std::pair<uint16_t, uint32_t>> order;
  uint16_t scan_shard = 0;  // SCAN: the shard this call walks
  uint16_t shards = 0;      // backends in the slot map
  std::vector<std::string> names;  // INFO: backend names, per part
  // The command's loading rule, kept for when it is decided again after waiting.
  policy::action act = policy::action::forward;
  bool loading_safe = false;
  bool overridden = false;
  std::string ping_message;  // PING msg: what ECHO sends while a backend loads
  bool has_message = false;
  bool reload = false;  // DEBUG RELOAD: each backend's epoch moves as its part is sent

  void reset(routing::merge_rule r, uint16_t n);
};

// SCAN over shards: the proxy's cursor carries the shard in its low bits.
struct scan_cursor {
  uint64_t backend_cursor = 0;
  uint16_t shard = 0;
};
unsigned shard_bits(size_t shards);
bool decode_scan_cursor(std::string_view text, size_t shards, scan_cursor& out);
// The cursor to give the client after shard `shard` answered `backend_next`; 0 when the
// walk is over.
uint64_t next_scan_cursor(uint64_t backend_next, uint16_t shard, size_t shards);

// The merged reply. `resp3` picks the null form.
std::string merge_replies(const merge_state& m, bool resp3);

// INFO of several backends as one: sections and fields in the first backend's order (then
// any the others add), counters added (clients blocked, keys, commandstats, ...), states
// combined (a save in progress anywhere), everything else the first backend's. `texts`
// are the bodies of the bulk (or verbatim) strings.
std::string merge_info_text(const std::vector<std::string_view>& texts);

// The top-level elements of an aggregate reply, as byte ranges of `reply` (a map's keys
// and values alternate; *count is its number of pairs).
bool split_elements(std::string_view reply, std::vector<std::string_view>& out,
                    int64_t* count = nullptr);

}  // namespace respfence::proxy

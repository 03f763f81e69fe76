#pragma once
// Slots mode (and cluster mode): the routing class of every command, so that several
// servers behave as one (design.md §10, README "Slots mode"). Pure: names in, classes out.
//
// Every command of the table has exactly one class. Commands with keys are `keyed` unless
// listed; every keyless command is listed by name (tests/unit/test_routing.cpp checks
// both against the built-in table). DEBUG has no subcommands in the command table: its
// subcommands are listed here as "debug|sub", and DEBUG routes by its argv[1].

#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "policy/command_table.hpp"

namespace respfence::routing {

enum class command_class : uint8_t {
  keyed,    // by the slots of its keys: one backend, or -CROSSSLOT (keyless: the first)
  split,    // keys on several backends: one part per backend, replies merged
  fanout,   // every backend, one merged reply
  first,    // the first backend (the one that owns slot 0)
  refused,  // answered by the proxy: an error that names the command and the mode
};
const char* to_string(command_class c);
std::ostream& operator<<(std::ostream& os, command_class c);

// How the replies of a split or fan-out command become one. Every rule but `any_ok`
// answers the first error when a part failed.
enum class merge_rule : uint8_t {
  none,         // the first answer (HELLO, BGSAVE, ...)
  mget,         // values back in key order
  all_ok,       // +OK if every part is +OK, else the first answer that is not
  sum,          // integers added (DEL, EXISTS, DBSIZE, ...)
  concat,       // arrays joined (KEYS, PUBSUB SHARDCHANNELS)
  scan,         // SCAN: the cursor carries the shard
  random_value,  // RANDOMKEY: a non-null part, picked at random
  ping,         // PING: PONG when every part answers
  info,         // INFO: field by field (counters added, the rest the first backend's)
  agree,        // every part the same answer (FUNCTION LOAD's name, SCRIPT LOAD's sha)
  any_ok,       // SCRIPT KILL, FUNCTION KILL: +OK if any part is, else the first error
  min,          // WAIT: the smallest integer
  max,          // LATENCY RESET: the largest integer
  digest,       // DEBUG DIGEST: the 20-byte digests XORed
  numsub,       // PUBSUB SHARDNUMSUB: [name, count, ...] with counts added
};
const char* to_string(merge_rule r);

// rule flags
inline constexpr uint8_t rule_server_state = 1;  // changes server or connection state on
                                                 // every backend: refused inside MULTI
inline constexpr uint8_t rule_checked = 2;       // its arguments may refuse it (SORT's
                                                 // BY/GET patterns, CLIENT TRACKING REDIRECT,
                                                 // CONFIG SET port)

struct class_rule {
  std::string_view name;  // as in the command table: lower case, "parent|sub"
  command_class cls = command_class::first;
  merge_rule merge = merge_rule::none;
  uint8_t flags = 0;
  // Key positions of a DEBUG subcommand that names keys (as first/last/step).
  int8_t first_key = 0;
  int8_t last_key = 0;
  int8_t key_step = 0;
  std::string_view note;  // why, for --check and the README

  bool has(uint8_t f) const { return (flags & f) != 0; }
};

// The class of a command of the table (built-in or learned from a backend).
const class_rule& class_of(const policy::command_entry& cmd);
// The class of a DEBUG subcommand, case-insensitive (unlisted ones: the first backend).
const class_rule& debug_class(std::string_view sub);
// The rule listed under this exact name (lower case), or null: the command is classed by
// its key spec.
const class_rule* listed_class(std::string_view name);
// Every listed rule, in the table's order (for --check and the tests).
const std::vector<class_rule>& listed_classes();
// Commands of unknown names: the first backend, whose server answers them.
const class_rule& unknown_class();

// Refusals that depend on the arguments.
const class_rule& sort_pattern_refusal(bool ro);
const class_rule& tracking_redirect_refusal();
// CONFIG SET of what each backend must have for itself (port, tls-port, dir).
const class_rule& config_own_refusal();

// "config|set" -> "CONFIG SET".
std::string display_name(std::string_view name);
// "keyed", "fanout (all_ok)", "refused"...: the class as --check prints it.
std::string describe(const class_rule& r);

// Redis Cluster's patternHashSlot: the slot every key a SORT BY/GET pattern can form
// hashes to, or -1 when the pattern may form keys of any slot.
int pattern_slot(std::string_view pattern);

}  // namespace respfence::routing

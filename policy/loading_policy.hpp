#pragma once
// The loading policy (design.md §5): which commands are loading-safe, what to do with the
// others while their backend is not ready, and the decision function that puts the two
// together with the backend's state. Pure: no I/O.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "policy/backend_state.hpp"
#include "policy/command_table.hpp"

namespace respfence::policy {

enum class action : uint8_t { forward, queue, reject };
const char* to_string(action a);
std::ostream& operator<<(std::ostream& os, action a);
std::optional<action> parse_action(std::string_view s);

// What the proxy does with one command, now.
enum class decision : uint8_t {
  forward,       // send the client's bytes as they are
  rewrite_ping,  // send ECHO instead of PING, answer as PING would
  answer_pong,   // answer PING locally: the backend is alive but ECHO is not loading-safe
  queue,         // hold until the backend is ready (or the deadline passes)
  reject,        // answer the LOADING error now; the backend never sees it
};
const char* to_string(decision d);
std::ostream& operator<<(std::ostream& os, decision d);

// One [policy.commands] entry.
struct command_override {
  std::string name;  // lower case, "cmd" or "cmd|sub"
  action act = action::queue;
  std::optional<uint32_t> timeout_ms;
};

struct policy_config {
  action on_loading = action::queue;
  uint32_t queue_timeout_ms = 10000;
  uint64_t queue_max = 100000;
  uint64_t queue_max_bytes = 268435456;
  bool ping_rewrite = true;
  bool learn_from_backend = true;
  // The flush fence (design.md §7). Off only to show, in tests, the torn reads it prevents.
  bool flush_fence = true;
  std::vector<command_override> commands;
};

// The effective rule of one command.
struct rule {
  action act = action::forward;  // while the target backend is not ready
  uint32_t timeout_ms = 0;       // queue deadline
  bool loading_safe = false;     // the server runs it while loading
  bool overridden = false;       // set by [policy.commands]
};

struct decide_input {
  backend_state state = backend_state::ready;
  rule r;
  bool is_ping = false;
  bool ping_rewrite = true;         // [policy] ping_rewrite
  bool echo_loading_safe = true;    // the backend's own COMMAND INFO ECHO has `loading`
  bool resp2_subscribed = false;    // ECHO is not allowed there
};

decision decide(const decide_input& in);

// The built-in loading-safe names (policy/data/loading-safe-redis-7.0.txt).
const std::unordered_set<std::string>& builtin_loading_safe();
std::unordered_set<std::string> parse_name_list(std::string_view text);

// What a backend told us about its commands (COMMAND at connect).
struct learned_commands {
  std::vector<command_entry> entries;  // name, arity, keys, flags (flag_loading included)
  bool echo_loading_safe() const;
};

// The command table with every command's effective rule: built-in defaults, refined by
// what the backend said (learn_from_backend), overridden by [policy.commands]. Immutable
// once built; the proxy swaps whole tables on reload or after learning.
class policy_table {
 public:
  static std::shared_ptr<const policy_table> build(const policy_config& cfg,
                                                   const learned_commands* learned = nullptr);

  const policy_config& config() const { return cfg_; }
  const command_table& commands() const { return commands_; }
  const rule& rule_for(const command_entry& e) const { return rules_[e.index]; }
  // A command the table does not know goes to the server, which answers it at once
  // (unknown command) or with -LOADING (a module command; then it is retried).
  const rule& unknown_rule() const { return unknown_; }
  bool learned() const { return learned_; }

  // The effective table as text, one command per line (respfence --check). `extra`, when
  // given, adds a last column headed `extra_header` (main adds each command's routing
  // class in slots mode, which policy/ knows nothing of).
  using column = std::function<std::string(const command_entry&)>;
  void print(std::ostream& os, const column& extra = {}, std::string_view extra_header = {}) const;

 private:
  policy_config cfg_;
  command_table commands_;
  std::vector<rule> rules_;
  rule unknown_;
  bool learned_ = false;
};

}  // namespace respfence::policy

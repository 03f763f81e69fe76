#pragma once
// Where a command's keys are: the command table's first/last/step, and for commands
// with movable keys (EVAL, ZUNIONSTORE, XREAD, ...) their own rules.

#include <cstddef>
#include <string_view>
#include <vector>

#include "policy/command_table.hpp"

namespace respfence::routing {

// The arguments of one command, however the caller holds them.
class arg_source {
 public:
  virtual ~arg_source() = default;
  virtual size_t argc() const = 0;
  virtual std::string_view arg(size_t i) const = 0;
};

// Appends the argument indices that are keys. Returns false when the arguments are
// malformed for the rule (a bad numkeys): the caller sends the command to one backend and
// lets the server answer the syntax error.
bool key_positions(const policy::command_entry& cmd, const arg_source& args,
                   std::vector<size_t>& out);

}  // namespace respfence::routing

#pragma once
// The command table: every command the proxy knows by name, with its arity, its legacy
// key positions (first/last/step, as COMMAND INFO gives them) and the flags the proxy
// acts on. Built from data generated off a real redis-server (policy/data/), refined at
// run time from a backend's own COMMAND reply. Pure: no I/O.

#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace respfence::policy {

// Flags as the server reports them; only the ones the proxy looks at.
enum command_flag : uint32_t {
  flag_write = 1u << 0,
  flag_readonly = 1u << 1,
  flag_loading = 1u << 2,  // the server's own "ok while loading"
  flag_blocking = 1u << 3,
  flag_pubsub = 1u << 4,
  flag_movablekeys = 1u << 5,
  flag_no_multi = 1u << 6,
  flag_admin = 1u << 7,
  flag_fast = 1u << 8,
  flag_noscript = 1u << 9,
  flag_no_mandatory_keys = 1u << 10,
};

uint32_t parse_command_flag(std::string_view server_flag);

// Commands whose semantics the proxy itself has to track or rewrite. Everything else is
// `plain`: forwarded as the client sent it.
enum class command_kind : uint8_t {
  plain,
  ping,
  echo,
  multi,
  exec,
  discard,
  watch,
  unwatch,
  select,
  auth,
  hello,
  client_setname,
  client_reply,
  client_tracking,
  quit,
  reset,
  subscribe,
  psubscribe,
  ssubscribe,
  unsubscribe,
  punsubscribe,
  sunsubscribe,
  monitor,
  flushall,
  flushdb,
  debug,  // DEBUG RELOAD swaps the dataset
  swapdb,  // changes what a db holds, as a flush does
  ends_busy,  // SCRIPT KILL, FUNCTION KILL, SHUTDOWN: what a busy server still runs
  replicate,  // SYNC, PSYNC: the connection becomes a replication stream
  // Routing merge rules (slots mode).
  mget,
  mset,
  msetnx,
  del,
  unlink,
  exists,
  touch,
  dbsize,
  keys,
  scan,
  randomkey,
  info,
  eval,
  evalsha,
  eval_ro,
  evalsha_ro,
  fcall,
  fcall_ro,
  sort,
  sort_ro,
  zunionstore,
  zinterstore,
  zdiffstore,
  zunion,
  zinter,
  zdiff,
  zintercard,
  sintercard,
  lmpop,
  blmpop,
  zmpop,
  bzmpop,
  xread,
  xreadgroup,
  migrate,
  georadius,
  georadiusbymember,
  wait,
  script_load,
  script_flush,
};

const char* to_string(command_kind k);
// FLUSHALL, FLUSHDB, SWAPDB: they change what a db holds; the flush epoch moves and the
// flush fence orders them against every other client's commands.
inline bool is_flush_kind(command_kind k) {
  return k == command_kind::flushall || k == command_kind::flushdb || k == command_kind::swapdb;
}
std::ostream& operator<<(std::ostream& os, command_kind k);

struct command_entry {
  std::string name;  // lower case; subcommands as "parent|sub"
  int32_t arity = 0;
  int32_t first_key = 0;
  int32_t last_key = 0;
  int32_t key_step = 0;
  uint32_t flags = 0;
  command_kind kind = command_kind::plain;
  bool container = false;  // has subcommands: look up argv[1] too
  uint32_t index = 0;      // dense, stable for the life of a table

  bool has(command_flag f) const { return (flags & f) != 0; }
  // The server's own arity rule (processCommand's commandCheckArity).
  bool arity_ok(size_t argc) const {
    return arity > 0 ? static_cast<size_t>(arity) == argc : argc >= static_cast<size_t>(-arity);
  }
};

// Case-insensitive lookup with no allocation: an open-addressing table hashed over the
// lower-cased bytes. Names longer than max_name are never commands.
class command_table {
 public:
  static constexpr size_t max_name = 64;

  command_table() = default;

  // The built-in table for Redis 7.0 (policy/data/commands-redis-7.0.txt).
  static const command_table& builtin();

  // Parses "name arity first last step flags" lines; '#' starts a comment.
  static command_table from_text(std::string_view text);

  const command_entry* find(std::string_view name) const;
  // "parent|sub" lookup for a container command; nullptr if the subcommand is unknown.
  const command_entry* find_sub(const command_entry& parent, std::string_view sub) const;

  // Adds an entry, or replaces arity/keys/flags of an existing one (learning from a
  // backend). Keeps `index` stable for existing names.
  const command_entry& upsert(command_entry e);

  const std::vector<command_entry>& entries() const { return entries_; }
  size_t size() const { return entries_.size(); }

 private:
  void rehash(size_t slots);
  const command_entry* lookup(const char* lower, size_t n, uint64_t h) const;

  std::vector<command_entry> entries_;
  std::vector<uint32_t> slots_;  // index+1 into entries_, 0 = empty
};

// Lower-cases `in` into `out` (capacity >= in.size()); returns the hash used by the table.
uint64_t lower_hash(std::string_view in, char* out);

}  // namespace respfence::policy

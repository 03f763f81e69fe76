#include "policy/command_table.hpp"

#include <array>
#include <charconv>
#include <utility>

#include "policy/text.hpp"

namespace respfence::policy {

namespace data {
extern const std::string_view commands_redis_70;
}

namespace {

struct kind_name {
  std::string_view name;
  command_kind kind;
};

// Names the proxy gives meaning to. Everything else is plain.
constexpr std::array k_kinds{
    kind_name{"ping", command_kind::ping},
    kind_name{"echo", command_kind::echo},
    kind_name{"multi", command_kind::multi},
    kind_name{"exec", command_kind::exec},
    kind_name{"discard", command_kind::discard},
    kind_name{"watch", command_kind::watch},
    kind_name{"unwatch", command_kind::unwatch},
    kind_name{"select", command_kind::select},
    kind_name{"auth", command_kind::auth},
    kind_name{"hello", command_kind::hello},
    kind_name{"client|setname", command_kind::client_setname},
    kind_name{"client|reply", command_kind::client_reply},
    kind_name{"client|tracking", command_kind::client_tracking},
    kind_name{"quit", command_kind::quit},
    kind_name{"reset", command_kind::reset},
    kind_name{"subscribe", command_kind::subscribe},
    kind_name{"psubscribe", command_kind::psubscribe},
    kind_name{"ssubscribe", command_kind::ssubscribe},
    kind_name{"unsubscribe", command_kind::unsubscribe},
    kind_name{"punsubscribe", command_kind::punsubscribe},
    kind_name{"sunsubscribe", command_kind::sunsubscribe},
    kind_name{"monitor", command_kind::monitor},
    kind_name{"flushall", command_kind::flushall},
    kind_name{"flushdb", command_kind::flushdb},
    kind_name{"debug", command_kind::debug},
    kind_name{"swapdb", command_kind::swapdb},
    kind_name{"script|kill", command_kind::ends_busy},
    kind_name{"function|kill", command_kind::ends_busy},
    kind_name{"shutdown", command_kind::ends_busy},
    kind_name{"sync", command_kind::replicate},
    kind_name{"psync", command_kind::replicate},
    kind_name{"mget", command_kind::mget},
    kind_name{"mset", command_kind::mset},
    kind_name{"msetnx", command_kind::msetnx},
    kind_name{"del", command_kind::del},
    kind_name{"unlink", command_kind::unlink},
    kind_name{"exists", command_kind::exists},
    kind_name{"touch", command_kind::touch},
    kind_name{"dbsize", command_kind::dbsize},
    kind_name{"keys", command_kind::keys},
    kind_name{"scan", command_kind::scan},
    kind_name{"randomkey", command_kind::randomkey},
    kind_name{"info", command_kind::info},
    kind_name{"eval", command_kind::eval},
    kind_name{"evalsha", command_kind::evalsha},
    kind_name{"eval_ro", command_kind::eval_ro},
    kind_name{"evalsha_ro", command_kind::evalsha_ro},
    kind_name{"fcall", command_kind::fcall},
    kind_name{"fcall_ro", command_kind::fcall_ro},
    kind_name{"sort", command_kind::sort},
    kind_name{"sort_ro", command_kind::sort_ro},
    kind_name{"zunionstore", command_kind::zunionstore},
    kind_name{"zinterstore", command_kind::zinterstore},
    kind_name{"zdiffstore", command_kind::zdiffstore},
    kind_name{"zunion", command_kind::zunion},
    kind_name{"zinter", command_kind::zinter},
    kind_name{"zdiff", command_kind::zdiff},
    kind_name{"zintercard", command_kind::zintercard},
    kind_name{"sintercard", command_kind::sintercard},
    kind_name{"lmpop", command_kind::lmpop},
    kind_name{"blmpop", command_kind::blmpop},
    kind_name{"zmpop", command_kind::zmpop},
    kind_name{"bzmpop", command_kind::bzmpop},
    kind_name{"xread", command_kind::xread},
    kind_name{"xreadgroup", command_kind::xreadgroup},
    kind_name{"migrate", command_kind::migrate},
    kind_name{"georadius", command_kind::georadius},
    kind_name{"georadiusbymember", command_kind::georadiusbymember},
    kind_name{"wait", command_kind::wait},
    kind_name{"script|load", command_kind::script_load},
    kind_name{"script|flush", command_kind::script_flush},
};

command_kind kind_of(std::string_view name) {
  for (const auto& k : k_kinds) {
    if (k.name == name) return k.kind;
  }
  return command_kind::plain;
}

constexpr char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

uint64_t hash_bytes(const char* p, size_t n) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (size_t i = 0; i < n; ++i) {
    h ^= static_cast<unsigned char>(p[i]);
    h *= 1099511628211ull;
  }
  return h;
}

bool parse_int(std::string_view s, int32_t& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

uint32_t parse_command_flag(std::string_view f) {
  if (f == "write") return flag_write;
  if (f == "readonly") return flag_readonly;
  if (f == "loading") return flag_loading;
  if (f == "blocking") return flag_blocking;
  if (f == "pubsub") return flag_pubsub;
  if (f == "movablekeys") return flag_movablekeys;
  if (f == "no_multi") return flag_no_multi;
  if (f == "admin") return flag_admin;
  if (f == "fast") return flag_fast;
  if (f == "noscript") return flag_noscript;
  if (f == "no_mandatory_keys") return flag_no_mandatory_keys;
  return 0;
}

const char* to_string(command_kind k) {
  if (k == command_kind::plain) return "plain";
  for (const auto& e : k_kinds) {
    if (e.kind == k) return e.name.data();
  }
  return "?";
}

std::ostream& operator<<(std::ostream& os, command_kind k) { return os << to_string(k); }

uint64_t lower_hash(std::string_view in, char* out) {
  for (size_t i = 0; i < in.size(); ++i) out[i] = lower(in[i]);
  return hash_bytes(out, in.size());
}

const command_table& command_table::builtin() {
  static const command_table table = from_text(data::commands_redis_70);
  return table;
}

command_table command_table::from_text(std::string_view text) {
  command_table t;
  for_each_line(text, [&](std::string_view line) {
    if (line.empty() || line[0] == '#') return;
    std::array<std::string_view, 6> field{};
    size_t n = 0;
    size_t i = 0;
    while (i < line.size() && n < field.size()) {
      size_t sp = line.find(' ', i);
      if (sp == std::string_view::npos) sp = line.size();
      field[n++] = line.substr(i, sp - i);
      i = sp + 1;
    }
    if (n < 5) return;
    command_entry e;
    e.name = std::string(field[0]);
    if (!parse_int(field[1], e.arity) || !parse_int(field[2], e.first_key) ||
        !parse_int(field[3], e.last_key) || !parse_int(field[4], e.key_step)) {
      return;
    }
    std::string_view flags = n > 5 ? field[5] : std::string_view{};
    while (!flags.empty()) {
      size_t c = flags.find(',');
      e.flags |= parse_command_flag(flags.substr(0, c));
      if (c == std::string_view::npos) break;
      flags.remove_prefix(c + 1);
    }
    t.upsert(std::move(e));
  });
  return t;
}

const command_entry* command_table::lookup(const char* lower_name, size_t n, uint64_t h) const {
  if (slots_.empty()) return nullptr;
  const size_t mask = slots_.size() - 1;
  for (size_t i = h & mask;; i = (i + 1) & mask) {
    uint32_t s = slots_[i];
    if (s == 0) return nullptr;
    const command_entry& e = entries_[s - 1];
    if (e.name.size() == n && e.name.compare(0, n, lower_name, n) == 0) return &e;
  }
}

const command_entry* command_table::find(std::string_view name) const {
  if (name.empty() || name.size() > max_name) return nullptr;
  char buf[max_name];
  uint64_t h = lower_hash(name, buf);
  return lookup(buf, name.size(), h);
}

const command_entry* command_table::find_sub(const command_entry& parent,
                                             std::string_view sub) const {
  const size_t n = parent.name.size() + 1 + sub.size();
  if (sub.empty() || n > max_name) return nullptr;
  char buf[max_name];
  parent.name.copy(buf, parent.name.size());
  buf[parent.name.size()] = '|';
  for (size_t i = 0; i < sub.size(); ++i) buf[parent.name.size() + 1 + i] = lower(sub[i]);
  return lookup(buf, n, hash_bytes(buf, n));
}

const command_entry& command_table::upsert(command_entry e) {
  for (auto& c : e.name) c = lower(c);
  if (const command_entry* existing = find(e.name)) {
    auto& x = entries_[existing->index];
    x.arity = e.arity;
    x.first_key = e.first_key;
    x.last_key = e.last_key;
    x.key_step = e.key_step;
    x.flags = e.flags;
    return x;
  }
  e.kind = kind_of(e.name);
  e.index = static_cast<uint32_t>(entries_.size());
  const size_t bar = e.name.find('|');
  std::string parent = bar == std::string::npos ? std::string() : e.name.substr(0, bar);
  entries_.push_back(std::move(e));
  if (!parent.empty()) {
    // A subcommand makes its parent a container, even if the parent came first.
    for (auto& p : entries_) {
      if (p.name == parent) p.container = true;
    }
  } else {
    const std::string prefix = entries_.back().name + "|";
    for (const auto& s : entries_) {
      if (s.name.compare(0, prefix.size(), prefix) == 0) entries_.back().container = true;
    }
  }
  if ((entries_.size() + 1) * 2 > slots_.size()) {
    rehash(slots_.empty() ? 1024 : slots_.size() * 2);
  } else {
    const auto& x = entries_.back();
    const size_t mask = slots_.size() - 1;
    size_t i = hash_bytes(x.name.data(), x.name.size()) & mask;
    while (slots_[i] != 0) i = (i + 1) & mask;
    slots_[i] = x.index + 1;
  }
  return entries_.back();
}

void command_table::rehash(size_t n) {
  slots_.assign(n, 0);
  const size_t mask = n - 1;
  for (const auto& e : entries_) {
    size_t i = hash_bytes(e.name.data(), e.name.size()) & mask;
    while (slots_[i] != 0) i = (i + 1) & mask;
    slots_[i] = e.index + 1;
  }
}

}  // namespace respfence::policy

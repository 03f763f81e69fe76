#include "routing/keys.hpp"

#include <charconv>

#include "policy/text.hpp"

namespace respfence::routing {

using policy::command_kind;

namespace {

bool parse_count(std::string_view s, size_t& out) {
  long long v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < 0) return false;
  out = static_cast<size_t>(v);
  return true;
}

using policy::iequals_lower;

// numkeys at argv[at], keys right after it.
bool numkeys_at(const arg_source& a, size_t at, std::vector<size_t>& out) {
  size_t n = 0;
  if (a.argc() <= at || !parse_count(a.arg(at), n) || at + 1 + n > a.argc()) return false;
  for (size_t i = 0; i < n; ++i) out.push_back(at + 1 + i);
  return true;
}

void legacy_range(const policy::command_entry& cmd, size_t argc, std::vector<size_t>& out) {
  if (cmd.first_key <= 0 || cmd.key_step <= 0) return;
  const long long argcl = static_cast<long long>(argc);
  long long last = cmd.last_key >= 0 ? cmd.last_key : argcl + cmd.last_key;
  if (last >= argcl) last = argcl - 1;
  for (long long i = cmd.first_key; i <= last; i += cmd.key_step) {
    out.push_back(static_cast<size_t>(i));
  }
}

// An optional "STORE key"/"STOREDIST key" among the arguments after `from`.
void store_option(const arg_source& a, size_t from, std::vector<size_t>& out) {
  for (size_t i = from; i + 1 < a.argc(); ++i) {
    if (iequals_lower(a.arg(i), "store") || iequals_lower(a.arg(i), "storedist")) out.push_back(i + 1);
  }
}

}  // namespace

bool key_positions(const policy::command_entry& cmd, const arg_source& a,
                   std::vector<size_t>& out) {
  const size_t argc = a.argc();
  switch (cmd.kind) {
    case command_kind::eval:
    case command_kind::evalsha:
    case command_kind::eval_ro:
    case command_kind::evalsha_ro:
    case command_kind::fcall:
    case command_kind::fcall_ro:
      return numkeys_at(a, 2, out);
    case command_kind::zunionstore:
    case command_kind::zinterstore:
    case command_kind::zdiffstore:
      if (argc < 2) return false;
      out.push_back(1);
      return numkeys_at(a, 2, out);
    case command_kind::zunion:
    case command_kind::zinter:
    case command_kind::zdiff:
    case command_kind::zintercard:
    case command_kind::sintercard:
    case command_kind::lmpop:
    case command_kind::zmpop:
      return numkeys_at(a, 1, out);
    case command_kind::blmpop:
    case command_kind::bzmpop:
      return numkeys_at(a, 2, out);
    case command_kind::xread:
    case command_kind::xreadgroup: {
      for (size_t i = 1; i < argc; ++i) {
        if (!iequals_lower(a.arg(i), "streams")) continue;
        const size_t rest = argc - i - 1;
        if (rest == 0 || rest % 2 != 0) return false;
        for (size_t k = 0; k < rest / 2; ++k) out.push_back(i + 1 + k);
        return true;
      }
      return false;
    }
    case command_kind::sort:
    case command_kind::sort_ro:
      if (argc < 2) return false;
      out.push_back(1);
      if (cmd.kind == command_kind::sort) store_option(a, 2, out);
      return true;
    case command_kind::georadius:
    case command_kind::georadiusbymember:
      if (argc < 2) return false;
      out.push_back(1);
      store_option(a, 2, out);
      return true;
    case command_kind::migrate: {
      // MIGRATE host port key|"" db timeout [... KEYS k1 k2 ...]
      if (argc < 6) return false;
      if (!a.arg(3).empty()) {
        out.push_back(3);
        return true;
      }
      for (size_t i = 6; i < argc; ++i) {
        if (!iequals_lower(a.arg(i), "keys")) continue;
        for (size_t k = i + 1; k < argc; ++k) out.push_back(k);
        return true;
      }
      return true;
    }
    default:
      legacy_range(cmd, argc, out);
      return true;
  }
}

}  // namespace respfence::routing

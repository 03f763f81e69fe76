#include "proxy/resp/errors.hpp"

namespace respfence::proxy::err {

namespace {
// The server replaces CR and LF inside an error message with spaces.
void append_clean(std::string& out, std::string_view s) {
  for (char c : s) out.push_back((c == '\r' || c == '\n') ? ' ' : c);
}
// printf's %s stops at a NUL byte.
std::string_view c_str_view(std::string_view s) { return s.substr(0, s.find('\0')); }
}  // namespace

std::string unknown_command(std::string_view name, const std::string_view* args, size_t nargs) {
  // server.c commandCheckExistence: "'%.128s'" for the name, then argument quotes while
  // the list is shorter than 128 bytes, each cut to what is left of the 128.
  std::string list;
  for (size_t i = 0; i < nargs && list.size() < 128; ++i) {
    const size_t room = 128 - list.size();
    list += '\'';
    list.append(c_str_view(args[i]).substr(0, room));
    list += "' ";
  }
  std::string s = "-ERR unknown command '";
  append_clean(s, c_str_view(name).substr(0, 128));
  s += "', with args beginning with: ";
  append_clean(s, list);
  s += "\r\n";
  return s;
}

std::string not_supported(std::string_view command, std::string_view mode,
                          std::string_view reason) {
  std::string s = "-ERR respfence: '";
  append_clean(s, command);
  s += "' is not supported with routing.mode = \"";
  append_clean(s, mode);
  s += '"';
  if (!reason.empty()) {
    s += " (";
    append_clean(s, reason);
    s += ')';
  }
  s += "\r\n";
  return s;
}

std::string fanout_in_multi(std::string_view command, std::string_view mode) {
  std::string s = "-ERR respfence: '";
  append_clean(s, command);
  s += "' inside MULTI would reach one shard; send it outside MULTI with routing.mode = \"";
  append_clean(s, mode);
  s += "\"\r\n";
  return s;
}

std::string unknown_subcommand(std::string_view container, std::string_view sub) {
  std::string upper(container);
  for (auto& c : upper) c = (c >= 'a' && c <= 'z') ? static_cast<char>(c - 32) : c;
  std::string s = "-ERR unknown subcommand '";
  append_clean(s, c_str_view(sub).substr(0, 128));
  s += "'. Try ";
  append_clean(s, upper);
  s += " HELP.\r\n";
  return s;
}

redirect parse_redirect(std::string_view line) {
  redirect r;
  if (line.size() < 2 || line[0] != '-') return r;
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  const std::string_view body = line.substr(1);
  auto starts = [&](std::string_view w) {
    return body.substr(0, w.size()) == w && (body.size() == w.size() || body[w.size()] == ' ');
  };
  if (starts("TRYAGAIN")) {
    r.kind = redirect_kind::tryagain;
    return r;
  }
  if (starts("CLUSTERDOWN")) {
    r.kind = redirect_kind::clusterdown;
    return r;
  }
  const bool moved = starts("MOVED");
  if (!moved && !starts("ASK")) return r;
  // "MOVED <slot> <host:port>"
  std::string_view rest = body.substr(moved ? 6 : 4);
  const size_t sp = rest.find(' ');
  if (sp == std::string_view::npos || sp == 0 || sp + 1 >= rest.size()) return r;
  unsigned slot = 0;
  for (char c : rest.substr(0, sp)) {
    if (c < '0' || c > '9') return r;
    slot = slot * 10 + static_cast<unsigned>(c - '0');
    if (slot > 16383) return r;
  }
  r.kind = moved ? redirect_kind::moved : redirect_kind::ask;
  r.slot = static_cast<uint16_t>(slot);
  r.target = rest.substr(sp + 1);
  return r;
}

bool is_loading_error(std::string_view line) {
  // Exact, whole error lines of servers that say "loading" under another code. Free text
  // that merely mentions loading (a script's error_reply, a module) is a command's own
  // answer and never matches: a match can send a command again.
  static constexpr std::string_view exact[] = {
      "-ERR LOADING kvrocks is restoring the db from backup",  // Kvrocks before 2.x
  };
  if (line.empty() || (line[0] != '-' && line[0] != '!')) return false;
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  for (std::string_view e : exact) {
    if (line == e) return true;
  }
  // RESP2 "-CODE message"; RESP3 blob errors ("!<len>\r\nCODE message") come framed, and
  // their first line holds only the length: the proxy never sees those from a loading server.
  const std::string_view body = line.substr(1);
  return body.substr(0, 7) == "LOADING" && (body.size() == 7 || body[7] == ' ');
}

std::string wrong_arity(std::string_view fullname) {
  std::string s = "-ERR wrong number of arguments for '";
  append_clean(s, fullname);
  s += "' command\r\n";
  return s;
}

}  // namespace respfence::proxy::err

#include "policy/config.hpp"

#include <algorithm>
#include <charconv>

namespace respfence::policy {

namespace {
bool parse_u32(std::string_view s, uint32_t& out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}
}  // namespace

std::string endpoint::to_string() const {
  if (is_unix()) return "unix:" + unix_path;
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

std::optional<endpoint> parse_endpoint(std::string_view s, std::string* why) {
  auto fail = [&](const char* msg) -> std::optional<endpoint> {
    if (why) *why = msg;
    return std::nullopt;
  };
  endpoint ep;
  if (s.substr(0, 5) == "unix:") {
    ep.unix_path = std::string(s.substr(5));
    if (ep.unix_path.empty()) return fail("unix: needs a path");
    return ep;
  }
  std::string_view host;
  std::string_view port;
  if (!s.empty() && s.front() == '[') {
    const size_t close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':') {
      return fail("expected [ipv6]:port");
    }
    host = s.substr(1, close - 1);
    port = s.substr(close + 2);
  } else {
    const size_t colon = s.rfind(':');
    if (colon == std::string_view::npos) return fail("expected host:port or unix:/path");
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
  }
  uint32_t p = 0;
  if (host.empty()) return fail("missing host");
  if (!parse_u32(port, p) || p == 0 || p > 65535) return fail("port must be 1-65535");
  ep.host = std::string(host);
  ep.port = static_cast<uint16_t>(p);
  return ep;
}

std::optional<std::vector<slot_range>> parse_slot_ranges(std::string_view s, std::string* why) {
  std::vector<slot_range> out;
  auto fail = [&](std::string msg) -> std::optional<std::vector<slot_range>> {
    if (why) *why = std::move(msg);
    return std::nullopt;
  };
  if (s.empty()) return fail("empty slot list");
  while (!s.empty()) {
    size_t comma = s.find(',');
    std::string_view part = s.substr(0, comma);
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    while (!part.empty() && part.back() == ' ') part.remove_suffix(1);
    uint32_t a = 0;
    uint32_t b = 0;
    const size_t dash = part.find('-');
    if (dash == std::string_view::npos) {
      if (!parse_u32(part, a)) return fail("bad slot '" + std::string(part) + "'");
      b = a;
    } else if (!parse_u32(part.substr(0, dash), a) || !parse_u32(part.substr(dash + 1), b)) {
      return fail("bad slot range '" + std::string(part) + "'");
    }
    if (a > 16383 || b > 16383) return fail("slots are 0-16383");
    if (a > b) return fail("slot range '" + std::string(part) + "' is backwards");
    out.push_back({static_cast<uint16_t>(a), static_cast<uint16_t>(b)});
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
  }
  return out;
}

const char* to_string(log_level l) {
  switch (l) {
    case log_level::debug:
      return "debug";
    case log_level::info:
      return "info";
    case log_level::warn:
      return "warn";
    case log_level::error:
      return "error";
  }
  return "?";
}

std::optional<log_level> parse_log_level(std::string_view s) {
  if (s == "debug") return log_level::debug;
  if (s == "info") return log_level::info;
  if (s == "warn") return log_level::warn;
  if (s == "error") return log_level::error;
  return std::nullopt;
}

const char* to_string(connection_model m) {
  switch (m) {
    case connection_model::shared:
      return "shared";
    case connection_model::dedicated:
      return "dedicated";
  }
  return "?";
}

const char* to_string(routing_mode m) {
  switch (m) {
    case routing_mode::single:
      return "single";
    case routing_mode::slots:
      return "slots";
    case routing_mode::cluster:
      return "cluster";
  }
  return "?";
}

const char* to_string(read_from r) {
  return r == read_from::primary ? "primary" : "replica-preferred";
}

config default_config(std::string listen, std::string backend) {
  config c;
  c.server.listen = std::move(listen);
  backend_config b;
  b.name = "main";
  b.address = std::move(backend);
  c.backends.push_back(std::move(b));
  return c;
}

std::string validate(const config& c) {
  std::string why;
  if (!parse_endpoint(c.server.listen, &why)) return "server.listen: " + why;
  if (!c.server.admin.empty() && !parse_endpoint(c.server.admin, &why)) {
    return "server.admin: " + why;
  }
  if (c.routing.mode == routing_mode::cluster) {
    if (c.routing.seeds.empty()) return "routing.mode = \"cluster\" needs routing.seeds";
    if (!c.backends.empty()) {
      return "routing.mode = \"cluster\" takes its nodes from the cluster: no [[backend]]";
    }
    for (const auto& s : c.routing.seeds) {
      if (!parse_endpoint(s, &why)) return "routing.seeds: '" + s + "': " + why;
    }
    if (c.routing.refresh_interval_ms == 0) return "routing.refresh_interval_ms must be > 0";
    return {};
  }
  if (c.backends.empty()) return "at least one [[backend]] is needed";
  if (c.routing.mode == routing_mode::single && c.backends.size() != 1) {
    return "routing.mode = \"single\" takes exactly one [[backend]]; use \"slots\" for more";
  }
  for (size_t i = 0; i < c.backends.size(); ++i) {
    const auto& b = c.backends[i];
    if (!parse_endpoint(b.address, &why)) return "backend '" + b.name + "' address: " + why;
    for (size_t j = 0; j < i; ++j) {
      if (c.backends[j].name == b.name) return "backend name '" + b.name + "' is used twice";
    }
  }
  if (c.routing.mode == routing_mode::slots) {
    const bool any = std::any_of(c.backends.begin(), c.backends.end(),
                                 [](const backend_config& b) { return !b.slots.empty(); });
    const bool all = std::all_of(c.backends.begin(), c.backends.end(),
                                 [](const backend_config& b) { return !b.slots.empty(); });
    if (any && !all) return "either every [[backend]] has `slots` or none does";
    if (all) {
      std::vector<int> owner(16384, -1);
      for (size_t i = 0; i < c.backends.size(); ++i) {
        for (const auto& r : c.backends[i].slots) {
          for (uint32_t s = r.first; s <= r.last; ++s) {
            if (owner[s] >= 0) {
              return "slot " + std::to_string(s) + " is assigned to both '" +
                     c.backends[static_cast<size_t>(owner[s])].name + "' and '" +
                     c.backends[i].name + "'";
            }
            owner[s] = static_cast<int>(i);
          }
        }
      }
      for (uint32_t s = 0; s < 16384; ++s) {
        if (owner[s] < 0) return "slot " + std::to_string(s) + " has no backend";
      }
    }
  } else {
    for (const auto& b : c.backends) {
      if (!b.slots.empty()) return "backend '" + b.name + "': `slots` needs routing.mode = \"slots\"";
    }
  }
  if (c.health.interval_ms == 0 || c.health.loading_interval_ms == 0 || c.health.timeout_ms == 0) {
    return "health intervals and timeout must be > 0";
  }
  return {};
}

}  // namespace respfence::policy

#include "policy/config_loader.hpp"

// Config loading is not on the data path, but the proxy is built without relying on
// exceptions; toml++ then reports errors through parse_result.
#define TOML_EXCEPTIONS 0
#include <toml++/toml.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <limits>
#include <sstream>

namespace respfence::policy {

namespace {

// toml++ 3.3 reaches TOML_UNREACHABLE (undefined behaviour) on some non-ASCII code
// points outside strings, and it does not always agree with a simple scanner on what is
// a string (fuzzing found both). respfence's config needs no non-ASCII text, so it is
// accepted in comments only, where both agree; anywhere else it is refused here first.
std::string check_non_ascii(std::string_view text, const std::string& source) {
  enum class in { code, comment, basic, literal, ml_basic, ml_literal };
  in mode = in::code;
  size_t line = 1;
  size_t col = 1;
  for (size_t i = 0; i < text.size(); ++i, ++col) {
    const char c = text[i];
    if (c == '\n') {
      if (mode == in::comment || mode == in::basic || mode == in::literal) mode = in::code;
      ++line;
      col = 0;
      continue;
    }
    if (static_cast<unsigned char>(c) >= 0x80 && mode != in::comment) {
      return source + ":" + std::to_string(line) + ":" + std::to_string(col) +
             ": non-ASCII character outside a comment (names and values must be ASCII)";
    }
    const bool starts3 = i + 2 < text.size() && text[i + 1] == c && text[i + 2] == c;
    switch (mode) {
      case in::code:
        if (c == '#') mode = in::comment;
        if (c == '"') mode = starts3 ? in::ml_basic : in::basic;
        if (c == '\'') mode = starts3 ? in::ml_literal : in::literal;
        if (starts3 && (c == '"' || c == '\'')) i += 2, col += 2;
        break;
      case in::basic:
        if (c == '\\') {
          ++i, ++col;
        } else if (c == '"') {
          mode = in::code;
        }
        break;
      case in::literal:
        if (c == '\'') mode = in::code;
        break;
      case in::ml_basic:
        if (c == '\\') {
          ++i, ++col;
        } else if (c == '"' && starts3) {
          mode = in::code;
          i += 2, col += 2;
        }
        break;
      case in::ml_literal:
        if (c == '\'' && starts3) {
          mode = in::code;
          i += 2, col += 2;
        }
        break;
      case in::comment:
        break;
    }
  }
  return {};
}

class loader {
 public:
  explicit loader(std::string source) : source_(std::move(source)) {}

  load_result run(std::string_view text) {
    load_result out;
    if (std::string bad = check_non_ascii(text, source_); !bad.empty()) {
      out.error = std::move(bad);
      return out;
    }
    toml::parse_result parsed = toml::parse(text, source_);
    if (!parsed) {
      const auto& e = parsed.error();
      out.error = at(e.source()) + std::string(e.description());
      return out;
    }
    cfg_.source = source_;
    top(parsed.table());
    if (error_.empty()) {
      if (std::string why = validate(cfg_); !why.empty()) error_ = source_ + ": " + why;
    }
    out.cfg = std::move(cfg_);
    out.error = std::move(error_);
    return out;
  }

 private:
  std::string at(const toml::source_region& r) const {
    return source_ + ":" + std::to_string(r.begin.line) + ":" + std::to_string(r.begin.column) +
           ": ";
  }
  void fail(const toml::source_region& r, const std::string& msg) {
    if (error_.empty()) error_ = at(r) + msg;
  }
  void unknown(const toml::key& k, std::string_view section) {
    fail(k.source(), "unknown key '" + std::string(k.str()) + "' in " + std::string(section));
  }

  bool get_string(const toml::node& n, std::string& out, std::string_view name) {
    if (auto v = n.value<std::string>(); v && n.is_string()) {
      out = *v;
      return true;
    }
    fail(n.source(), std::string(name) + " must be a string");
    return false;
  }
  bool get_bool(const toml::node& n, bool& out, std::string_view name) {
    if (n.is_boolean()) {
      out = *n.value<bool>();
      return true;
    }
    fail(n.source(), std::string(name) + " must be true or false");
    return false;
  }
  template <typename T>
  bool get_uint(const toml::node& n, T& out, std::string_view name, uint64_t min = 0) {
    if (!n.is_integer()) {
      fail(n.source(), std::string(name) + " must be an integer");
      return false;
    }
    const int64_t v = *n.value<int64_t>();
    if (v < 0 || static_cast<uint64_t>(v) < min ||
        static_cast<uint64_t>(v) > std::numeric_limits<T>::max()) {
      fail(n.source(), std::string(name) + " is out of range");
      return false;
    }
    out = static_cast<T>(v);
    return true;
  }
  // One of a fixed set of strings, named in the error as: must be "a", "b" or "c".
  template <typename E, size_t N>
  void get_choice(const toml::node& n, E& out, std::string_view name,
                  const std::array<std::pair<std::string_view, E>, N>& choices) {
    std::string s;
    if (!get_string(n, s, name)) return;
    std::string expected;
    for (size_t i = 0; i < N; ++i) {
      if (choices[i].first == s) {
        out = choices[i].second;
        return;
      }
      expected += (i == 0 ? "\"" : i + 1 == N ? " or \"" : ", \"");
      expected += std::string(choices[i].first) + "\"";
    }
    fail(n.source(), std::string(name) + " must be " + expected);
  }
  const toml::table* table_of(const toml::node& n, std::string_view name) {
    if (const toml::table* t = n.as_table()) return t;
    fail(n.source(), std::string(name) + " must be a table");
    return nullptr;
  }

  void top(const toml::table& t) {
    for (auto&& [k, v] : t) {
      if (k == "server") {
        if (auto* s = table_of(v, "[server]")) server(*s);
      } else if (k == "backend") {
        const toml::array* arr = v.as_array();
        if (arr == nullptr || !arr->is_array_of_tables()) {
          fail(v.source(), "backend must be an array of tables: [[backend]]");
          continue;
        }
        for (const auto& b : *arr) backend(*b.as_table());
      } else if (k == "routing") {
        if (auto* s = table_of(v, "[routing]")) routing(*s);
      } else if (k == "policy") {
        if (auto* s = table_of(v, "[policy]")) policy(*s);
      } else if (k == "health") {
        if (auto* s = table_of(v, "[health]")) health(*s);
      } else {
        unknown(k, "the top level");
      }
    }
    if (cfg_.backends.empty() && error_.empty() && cfg_.routing.mode != routing_mode::cluster) {
      error_ = source_ + ": at least one [[backend]] is needed";
    }
  }

  void check_endpoint(const toml::node& n, const std::string& s, std::string_view name,
                      bool allow_empty) {
    if (allow_empty && s.empty()) return;
    std::string why;
    if (!parse_endpoint(s, &why)) fail(n.source(), std::string(name) + ": " + why);
  }

  void server(const toml::table& t) {
    auto& s = cfg_.server;
    for (auto&& [k, v] : t) {
      if (k == "listen") {
        if (get_string(v, s.listen, "server.listen")) {
          check_endpoint(v, s.listen, "server.listen", false);
        }
      } else if (k == "admin") {
        if (get_string(v, s.admin, "server.admin")) {
          check_endpoint(v, s.admin, "server.admin", true);
        }
      } else if (k == "threads") {
        get_uint(v, s.threads, "server.threads");
        if (s.threads > 1024) fail(v.source(), "server.threads is out of range (0-1024)");
      } else if (k == "connections") {
        get_choice(v, s.connections, "server.connections",
                   std::array<std::pair<std::string_view, connection_model>, 2>{
                       {{"shared", connection_model::shared},
                        {"dedicated", connection_model::dedicated}}});
      } else if (k == "shared_connections") {
        get_uint(v, s.shared_connections, "server.shared_connections", 1);
        if (s.shared_connections > 64) {
          fail(v.source(), "server.shared_connections is out of range (1-64)");
        }
      } else if (k == "client_output_limit") {
        get_uint(v, s.client_output_limit, "server.client_output_limit", 1024);
      } else if (k == "client_input_window") {
        get_uint(v, s.client_input_window, "server.client_input_window", 1024);
        if (s.client_input_window > (uint64_t{1} << 30)) {
          fail(v.source(), "server.client_input_window is out of range (1024-1073741824)");
        }
      } else if (k == "shutdown_timeout_ms") {
        get_uint(v, s.shutdown_timeout_ms, "server.shutdown_timeout_ms");
      } else if (k == "log_level") {
        std::string lv;
        if (get_string(v, lv, "server.log_level")) {
          if (auto l = parse_log_level(lv)) {
            s.log = *l;
          } else {
            fail(v.source(), "server.log_level must be debug, info, warn or error");
          }
        }
      } else {
        unknown(k, "[server]");
      }
    }
  }

  void backend(const toml::table& t) {
    backend_config b;
    bool named = false;
    for (auto&& [k, v] : t) {
      if (k == "name") {
        named = get_string(v, b.name, "backend.name");
        if (named && b.name.empty()) fail(v.source(), "backend.name must not be empty");
      } else if (k == "address") {
        if (get_string(v, b.address, "backend.address")) {
          check_endpoint(v, b.address, "backend.address", false);
        }
      } else if (k == "username") {
        get_string(v, b.username, "backend.username");
      } else if (k == "password") {
        get_string(v, b.password, "backend.password");
      } else if (k == "slots") {
        std::string s;
        if (get_string(v, s, "backend.slots")) {
          std::string why;
          if (auto r = parse_slot_ranges(s, &why)) {
            b.slots = std::move(*r);
          } else {
            fail(v.source(), "backend.slots: " + why);
          }
        }
      } else {
        unknown(k, "[[backend]]");
      }
    }
    if (!named) b.name = cfg_.backends.empty() ? "main" : "backend" + std::to_string(cfg_.backends.size());
    cfg_.backends.push_back(std::move(b));
  }

  void routing(const toml::table& t) {
    for (auto&& [k, v] : t) {
      if (k == "mode") {
        get_choice(v, cfg_.routing.mode, "routing.mode",
                   std::array<std::pair<std::string_view, routing_mode>, 3>{
                       {{"single", routing_mode::single},
                        {"slots", routing_mode::slots},
                        {"cluster", routing_mode::cluster}}});
      } else if (k == "seeds") {
        const toml::array* arr = v.as_array();
        if (arr == nullptr) {
          fail(v.source(), "routing.seeds must be an array of \"host:port\" strings");
          continue;
        }
        for (const auto& e : *arr) {
          std::string seed;
          if (get_string(e, seed, "routing.seeds[]")) {
            check_endpoint(e, seed, "routing.seeds[]", false);
            cfg_.routing.seeds.push_back(std::move(seed));
          }
        }
      } else if (k == "refresh_interval_ms") {
        get_uint(v, cfg_.routing.refresh_interval_ms, "routing.refresh_interval_ms", 1);
      } else if (k == "read_from") {
        get_choice(v, cfg_.routing.reads, "routing.read_from",
                   std::array<std::pair<std::string_view, read_from>, 2>{
                       {{"primary", read_from::primary},
                        {"replica-preferred", read_from::replica_preferred}}});
      } else {
        unknown(k, "[routing]");
      }
    }
  }

  bool get_action(const toml::node& n, action& out, std::string_view name) {
    std::string s;
    if (!get_string(n, s, name)) return false;
    if (auto a = parse_action(s)) {
      out = *a;
      return true;
    }
    fail(n.source(), std::string(name) + " must be \"queue\", \"reject\" or \"forward\"");
    return false;
  }

  void policy(const toml::table& t) {
    auto& p = cfg_.policy;
    for (auto&& [k, v] : t) {
      if (k == "on_loading") {
        get_action(v, p.on_loading, "policy.on_loading");
      } else if (k == "queue_timeout_ms") {
        get_uint(v, p.queue_timeout_ms, "policy.queue_timeout_ms");
      } else if (k == "queue_max") {
        get_uint(v, p.queue_max, "policy.queue_max");
      } else if (k == "queue_max_bytes") {
        get_uint(v, p.queue_max_bytes, "policy.queue_max_bytes");
      } else if (k == "ping_rewrite") {
        get_bool(v, p.ping_rewrite, "policy.ping_rewrite");
      } else if (k == "learn_from_backend") {
        get_bool(v, p.learn_from_backend, "policy.learn_from_backend");
      } else if (k == "flush_fence") {
        get_bool(v, p.flush_fence, "policy.flush_fence");
      } else if (k == "commands") {
        if (auto* c = table_of(v, "[policy.commands]")) commands(*c);
      } else {
        unknown(k, "[policy]");
      }
    }
  }

  void commands(const toml::table& t) {
    for (auto&& [k, v] : t) {
      command_override o;
      o.name = std::string(k.str());
      std::transform(o.name.begin(), o.name.end(), o.name.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      if (o.name.empty() || o.name.size() > command_table::max_name ||
          o.name.find_first_of(" \t") != std::string::npos) {
        // Appended, not `"'" + std::string(...)`: GCC 12 inlines that operator+ into a
        // false -Wrestrict in libstdc++ at -O2 and above (GCC bug 105329).
        std::string why = "'";
        why.append(k.str());
        why += "' is not a command name";
        fail(k.source(), why);
        continue;
      }
      const std::string where = "policy.commands." + std::string(k.str());
      if (v.is_string()) {
        get_action(v, o.act, where);
      } else if (const toml::table* rt = v.as_table()) {
        bool has_action = false;
        for (auto&& [rk, rv] : *rt) {
          if (rk == "action") {
            has_action = get_action(rv, o.act, where + ".action");
          } else if (rk == "timeout_ms") {
            uint32_t ms = 0;
            if (get_uint(rv, ms, where + ".timeout_ms")) o.timeout_ms = ms;
          } else {
            unknown(rk, "[policy.commands] entry (action, timeout_ms)");
          }
        }
        if (!has_action && error_.empty()) fail(v.source(), where + " needs an action");
      } else {
        fail(v.source(), where + " must be an action string or { action = ..., timeout_ms = ... }");
        continue;
      }
      for (const auto& prev : cfg_.policy.commands) {
        if (prev.name == o.name) fail(k.source(), "'" + o.name + "' is listed twice");
      }
      cfg_.policy.commands.push_back(std::move(o));
    }
  }

  void health(const toml::table& t) {
    auto& h = cfg_.health;
    for (auto&& [k, v] : t) {
      if (k == "interval_ms") {
        get_uint(v, h.interval_ms, "health.interval_ms", 1);
      } else if (k == "loading_interval_ms") {
        get_uint(v, h.loading_interval_ms, "health.loading_interval_ms", 1);
      } else if (k == "timeout_ms") {
        get_uint(v, h.timeout_ms, "health.timeout_ms", 1);
      } else {
        unknown(k, "[health]");
      }
    }
  }

  std::string source_;
  std::string error_;
  config cfg_;
};

}  // namespace

load_result load_config_text(std::string_view text, std::string_view source) {
  return loader(std::string(source)).run(text);
}

load_result load_config_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    load_result r;
    r.error = path + ":1:1: cannot open the file";
    return r;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return load_config_text(ss.str(), path);
}

}  // namespace respfence::policy

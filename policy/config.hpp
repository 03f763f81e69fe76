#pragma once
// The whole configuration (design.md §3) as plain data. Every field has its default here, so
// a config built by the CLI (--listen/--backend, no file) and one read from TOML agree.

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "policy/loading_policy.hpp"

namespace respfence::policy {

// "host:port", "[v6]:port" or "unix:/path".
struct endpoint {
  std::string host;  // empty for unix
  uint16_t port = 0;
  std::string unix_path;
  bool is_unix() const { return !unix_path.empty(); }
  std::string to_string() const;
};
std::optional<endpoint> parse_endpoint(std::string_view s, std::string* why = nullptr);

struct slot_range {
  uint16_t first = 0;
  uint16_t last = 0;  // inclusive
};
// "0-8191", "0-100,200,300-400"; nullopt with `why` on a bad list.
std::optional<std::vector<slot_range>> parse_slot_ranges(std::string_view s, std::string* why);

enum class log_level : uint8_t { debug, info, warn, error };
const char* to_string(log_level l);
std::optional<log_level> parse_log_level(std::string_view s);

// How clients reach a backend (docs/design.md §12): over a few connections per worker
// that clients without connection state share, or each over its own.
enum class connection_model : uint8_t { shared, dedicated };
const char* to_string(connection_model m);

struct server_config {
  std::string listen = "127.0.0.1:7379";
  std::string admin = "127.0.0.1:9379";  // "" disables the admin endpoint
  uint32_t threads = 1;                  // 0 = one per core; why 1: README "Performance"
  connection_model connections = connection_model::shared;
  uint32_t shared_connections = 1;       // per worker, backend and connection state
  uint64_t client_output_limit = 8u << 20;  // per client: past this, stop forwarding its requests
  // Per client: unanswered request bytes read ahead while its output is over the limit
  // (redis's own query-buffer limit is 1 GB). Past it the client waits in its socket.
  uint64_t client_input_window = 64u << 20;
  uint32_t shutdown_timeout_ms = 5000;      // SIGTERM: how long in-flight replies may take
  log_level log = log_level::info;
};

struct backend_config {
  std::string name;
  std::string address = "127.0.0.1:6379";
  std::string username;  // prober only
  std::string password;  // prober only
  std::vector<slot_range> slots;  // routing.mode = "slots"; empty = split evenly
};

enum class routing_mode : uint8_t { single, slots, cluster };
const char* to_string(routing_mode m);

enum class read_from : uint8_t { primary, replica_preferred };
const char* to_string(read_from r);

struct routing_config {
  routing_mode mode = routing_mode::single;
  // Cluster mode: nodes to learn the topology from ("host:port"), how often to refresh it.
  std::vector<std::string> seeds;
  uint32_t refresh_interval_ms = 1000;
  read_from reads = read_from::primary;
};

struct health_config {
  uint32_t interval_ms = 1000;
  uint32_t loading_interval_ms = 100;
  uint32_t timeout_ms = 2000;
};

struct config {
  server_config server;
  std::vector<backend_config> backends;
  routing_config routing;
  policy_config policy;
  health_config health;
  std::string source;  // file it came from, "" for CLI-only
};

// A config with one backend and every default (respfence --listen X --backend Y).
config default_config(std::string listen, std::string backend);

// Cross-field checks shared by the CLI path and the TOML loader; "" when fine.
std::string validate(const config& c);

}  // namespace respfence::policy

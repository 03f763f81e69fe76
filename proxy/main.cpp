// respfence: a RESP proxy sidecar that makes LOADING and FLUSH safe for its clients.

#include <csignal>
#include <iomanip>
#include <cstring>
#include <iostream>
#include <string>

#include "policy/config_loader.hpp"
#include "proxy/log.hpp"
#include "proxy/runtime.hpp"
#include "routing/command_class.hpp"

using namespace respfence;

namespace {

constexpr const char* k_usage =
    "usage: respfence --config FILE [--check]\n"
    "       respfence --listen HOST:PORT --backend HOST:PORT [options]\n"
    "\n"
    "  --config FILE       TOML configuration (see README.md, \"Configuration\")\n"
    "  --check             validate the configuration, print the effective policy, exit\n"
    "  --listen ADDR       client address when no file is given (default 127.0.0.1:7379)\n"
    "  --backend ADDR      the backend when no file is given (host:port or unix:/path)\n"
    "  --admin ADDR        admin HTTP address, \"\" to disable (default 127.0.0.1:9379)\n"
    "  --threads N         I/O threads (default 1), 0 = one per core\n"
    "  --log-level LEVEL   debug | info | warn | error\n"
    "  --version           print the version\n"
    "  --help              this text\n";

void print_check(const policy::config& c) {
  std::cout << "# respfence " << proxy::k_version << ": configuration OK ("
            << (c.source.empty() ? "command line" : c.source) << ")\n"
            << "# listen=" << c.server.listen
            << " admin=" << (c.server.admin.empty() ? "off" : c.server.admin)
            << " threads=" << c.server.threads << " mode=" << policy::to_string(c.routing.mode)
            << "\n";
  if (c.routing.mode == policy::routing_mode::cluster) {
    std::cout << "# cluster seeds";
    for (const auto& seed : c.routing.seeds) std::cout << " " << seed;
    std::cout << " refresh_interval_ms=" << c.routing.refresh_interval_ms
              << " read_from=" << policy::to_string(c.routing.reads) << "\n";
  }
  for (const auto& b : c.backends) {
    std::cout << "# backend " << b.name << " " << b.address;
    if (!b.slots.empty()) {
      std::cout << " slots=";
      for (size_t i = 0; i < b.slots.size(); ++i) {
        if (i) std::cout << ",";
        std::cout << b.slots[i].first;
        if (b.slots[i].last != b.slots[i].first) std::cout << "-" << b.slots[i].last;
      }
    }
    std::cout << "\n";
  }
  std::cout << "# health interval_ms=" << c.health.interval_ms
            << " loading_interval_ms=" << c.health.loading_interval_ms
            << " timeout_ms=" << c.health.timeout_ms << "\n";
  // Each command's routing class in slots (and cluster) mode: routing/command_class.hpp.
  policy::policy_table::build(c.policy)->print(
      std::cout, [](const policy::command_entry& e) { return routing::describe(routing::class_of(e)); },
      "slots class");
  std::cout << "# DEBUG routes by its subcommand in slots mode (others: first)\n";
  for (const routing::class_rule& r : routing::listed_classes()) {
    if (r.name.substr(0, 6) != "debug|") continue;
    std::cout << std::left << std::setw(33) << r.name << ' ' << routing::describe(r) << "\n";
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  std::string listen;
  std::string backend;
  std::string admin;
  bool admin_set = false;
  std::string threads;
  std::string level;
  bool check = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](std::string& out) -> bool {
      if (i + 1 >= argc) {
        std::cerr << "respfence: " << a << " needs a value\n" << k_usage;
        return false;
      }
      out = argv[++i];
      return true;
    };
    if (a == "--help" || a == "-h") {
      std::cout << k_usage;
      return 0;
    } else if (a == "--version" || a == "-v") {
      std::cout << "respfence " << proxy::k_version << "\n";
      return 0;
    } else if (a == "--check") {
      check = true;
    } else if (a == "--config" || a == "-c") {
      if (!value(config_path)) return 2;
    } else if (a == "--listen") {
      if (!value(listen)) return 2;
    } else if (a == "--backend") {
      if (!value(backend)) return 2;
    } else if (a == "--admin") {
      if (!value(admin)) return 2;
      admin_set = true;
    } else if (a == "--threads") {
      if (!value(threads)) return 2;
    } else if (a == "--log-level") {
      if (!value(level)) return 2;
    } else {
      std::cerr << "respfence: unknown option " << a << "\n" << k_usage;
      return 2;
    }
  }

  policy::config cfg;
  if (!config_path.empty()) {
    if (!listen.empty() || !backend.empty()) {
      std::cerr << "respfence: --listen/--backend are for running without --config\n";
      return 2;
    }
    policy::load_result r = policy::load_config_file(config_path);
    if (!r.ok()) {
      std::cerr << r.error << "\n";
      return 1;
    }
    cfg = std::move(r.cfg);
  } else {
    if (backend.empty()) {
      std::cerr << "respfence: give --config FILE, or --backend HOST:PORT\n" << k_usage;
      return 2;
    }
    cfg = policy::default_config(listen.empty() ? "127.0.0.1:7379" : listen, backend);
  }
  if (admin_set) cfg.server.admin = admin;
  if (!threads.empty()) {
    char* end = nullptr;
    const long n = std::strtol(threads.c_str(), &end, 10);
    if (*end != '\0' || n < 0 || n > 1024) {
      std::cerr << "respfence: --threads must be 0-1024\n";
      return 2;
    }
    cfg.server.threads = static_cast<uint32_t>(n);
  }
  if (!level.empty()) {
    auto l = policy::parse_log_level(level);
    if (!l) {
      std::cerr << "respfence: --log-level must be debug, info, warn or error\n";
      return 2;
    }
    cfg.server.log = *l;
  }
  if (std::string why = policy::validate(cfg); !why.empty()) {
    std::cerr << (cfg.source.empty() ? "respfence" : cfg.source) << ": " << why << "\n";
    return 1;
  }
  if (check) {
    print_check(cfg);
    return 0;
  }
  std::signal(SIGPIPE, SIG_IGN);
  proxy::runtime rt(std::move(cfg));
  return rt.run();
}

#include "proxy/runtime.hpp"

#include <unistd.h>

#include <csignal>
#include <thread>

#include "policy/config_loader.hpp"
#include "proxy/admin_http.hpp"
#include "proxy/cluster_topology.hpp"
#include "proxy/log.hpp"
#include "proxy/worker.hpp"

namespace respfence::proxy {

using generic_endpoint = asio::generic::stream_protocol::endpoint;

std::optional<generic_endpoint> resolve_endpoint(const std::string& s, std::string* why) {
  const auto ep = policy::parse_endpoint(s, why);
  if (!ep) return std::nullopt;
  if (ep->is_unix()) return generic_endpoint(asio::local::stream_protocol::endpoint(ep->unix_path));
  asio::error_code ec;
  const asio::ip::address addr = asio::ip::make_address(ep->host, ec);
  if (!ec) return generic_endpoint(asio::ip::tcp::endpoint(addr, ep->port));
  asio::io_context io;
  asio::ip::tcp::resolver r(io);
  auto results = r.resolve(ep->host, std::to_string(ep->port), ec);
  if (ec || results.empty()) {
    if (why) *why = "cannot resolve '" + ep->host + "': " + ec.message();
    return std::nullopt;
  }
  return generic_endpoint(results.begin()->endpoint());
}

namespace {
std::shared_ptr<const routing::router> make_router(const policy::config& c) {
  if (c.routing.mode == policy::routing_mode::single) return routing::router::single();
  if (c.routing.mode == policy::routing_mode::cluster) {
    // Until the topology is known every slot goes to the first seed, which redirects.
    return routing::router::cluster(routing::slot_map(), 1);
  }
  if (c.backends.front().slots.empty()) {
    return routing::router::slots(routing::slot_map::even(c.backends.size()));
  }
  std::vector<std::vector<routing::slot_map::range>> ranges;
  for (const auto& b : c.backends) {
    std::vector<routing::slot_map::range> r;
    for (const auto& s : b.slots) r.push_back({s.first, s.last});
    ranges.push_back(std::move(r));
  }
  return routing::router::slots(routing::slot_map::from_ranges(ranges));
}
}  // namespace

runtime::runtime(policy::config cfg)
    : cfg_(std::move(cfg)), acceptor_(control_), signals_(control_), shutdown_timer_(control_) {
  log::set_level(cfg_.server.log);
  policy_ = policy::policy_table::build(cfg_.policy);
  router_ = make_router(cfg_);
  health_.set(cfg_.health, cfg_.policy.learn_from_backend);
  if (cfg_.routing.mode == policy::routing_mode::cluster) {
    // The seeds are the first backends; the topology adds the rest.
    for (const auto& s : cfg_.routing.seeds) {
      policy::backend_config b;
      b.name = s;
      b.address = s;
      cfg_.backends.push_back(b);
    }
  }
  endpoints_.resize(backend_registry::max_backends);
  for (size_t i = 0; i < cfg_.backends.size() && i < endpoints_.size(); ++i) {
    std::string why;
    // validate() has checked the syntax; a name that does not resolve is fatal in run().
    endpoints_[i] = resolve_endpoint(cfg_.backends[i].address, &why).value_or(generic_endpoint());
  }
  registry_ = std::make_unique<backend_registry>(
      cfg_.backends,
      [this](size_t b, const backend_snapshot& s) { on_backend_change(b, s); },
      [this](size_t b, const policy::learned_commands& c) { on_learned(b, c); });
  size_t threads = cfg_.server.threads;
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  for (size_t i = 0; i < threads; ++i) {
    workers_.push_back(std::make_unique<worker>(*this, i));
    workers_.back()->set_output_limit(cfg_.server.client_output_limit);
    workers_.back()->set_input_window(cfg_.server.client_input_window);
    // Cluster mode keeps dedicated connections: -MOVED/-ASK handling and replica links
    // are per connection there.
    workers_.back()->set_shared(cfg_.server.connections == policy::connection_model::shared &&
                                cfg_.routing.mode != policy::routing_mode::cluster);
  }
}

runtime::~runtime() {
  if (topology_) topology_->stop();
  registry_->stop();
  for (auto& p : probers_) p->join();
  for (auto& w : workers_) w->stop();
  for (auto& w : workers_) w->join();
}

template <typename F>
void runtime::post_to_workers(F f) {
  for (auto& w : workers_) {
    worker* wp = w.get();
    asio::post(wp->io(), [wp, f] { f(*wp); });
  }
}

std::shared_ptr<const routing::router> runtime::router() const {
  std::lock_guard<std::mutex> lock(mu_);
  return router_;
}

size_t runtime::add_backend(const std::string& address) {
  std::lock_guard<std::mutex> lock(backends_mu_);
  policy::backend_config cfg;
  cfg.name = address;
  cfg.address = address;
  bool added = false;
  const size_t b = registry_->add(cfg, &added);
  if (!added || b == SIZE_MAX) return b;
  std::string why;
  endpoints_[b] = resolve_endpoint(address, &why).value_or(generic_endpoint());
  log::info("backend_added", {{"backend", address}, {"index", b}});
  if (auto ep = policy::parse_endpoint(address)) {
    probers_.push_back(std::make_unique<prober>(*registry_, b, *ep, health_));
    if (running_) probers_.back()->start();
  }
  on_backend_change(b, registry_->snapshot(b));
  return b;
}

void runtime::publish_cluster_map(routing::slot_map map, std::vector<int32_t> replica_of,
                                  const std::vector<size_t>& replicas) {
  const size_t n = registry_->size();
  // The nodes this map uses serve; every other known node is retired until it does again.
  std::vector<bool> serving(n, false);
  for (uint32_t s = 0; s < routing::slot_count; ++s) {
    serving[map.owner(static_cast<uint16_t>(s))] = true;
  }
  for (size_t b : replicas) serving[b] = true;
  for (size_t b = 0; b < n; ++b) registry_->set_retired(b, !serving[b]);
  map.set_backends(n);
  auto r = routing::router::cluster(std::move(map), n, std::move(replica_of), replicas);
  {
    std::lock_guard<std::mutex> lock(mu_);
    router_ = r;
  }
  post_to_workers([r](worker& w) { w.set_router(r); });
}

void runtime::refresh_topology() {
  if (topology_) topology_->wake();
}

std::shared_ptr<const policy::policy_table> runtime::current_policy() const {
  std::lock_guard<std::mutex> lock(mu_);
  return policy_;
}

void runtime::on_backend_change(size_t b, const backend_snapshot& s) {
  post_to_workers([b, s](worker& w) { w.set_backend(b, s); });
}

void runtime::on_learned(size_t, const policy::learned_commands& cmds) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    learned_ = cmds;
  }
  publish_policy();
}

void runtime::publish_policy() {
  std::shared_ptr<const policy::policy_table> p;
  {
    std::lock_guard<std::mutex> lock(mu_);
    policy_ = policy::policy_table::build(cfg_.policy, learned_ ? &*learned_ : nullptr);
    p = policy_;
  }
  post_to_workers([p](worker& w) { w.set_policy(p); });
}

int runtime::run() {
  std::string why;
  for (size_t i = 0; i < cfg_.backends.size(); ++i) {
    if (!resolve_endpoint(cfg_.backends[i].address, &why)) {
      log::error("config_error", {{"backend", cfg_.backends[i].name}, {"error", why}});
      return 2;
    }
  }
  const auto listen_ep = resolve_endpoint(cfg_.server.listen, &why);
  if (!listen_ep) {
    log::error("listen_failed", {{"address", cfg_.server.listen}, {"error", why}});
    return 2;
  }
  asio::error_code ec;
  acceptor_.open(listen_ep->protocol(), ec);
  if (!ec && cfg_.server.listen.rfind("unix:", 0) != 0) {
    acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  }
  if (!ec) acceptor_.bind(*listen_ep, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    log::error("listen_failed", {{"address", cfg_.server.listen}, {"error", ec.message()}});
    return 2;
  }
  if (!cfg_.server.admin.empty()) {
    admin_ = std::make_unique<admin_server>(control_, *this);
    if (!admin_->listen(cfg_.server.admin, why)) {
      log::error("admin_listen_failed", {{"address", cfg_.server.admin}, {"error", why}});
      return 2;
    }
  }
  {
    std::lock_guard<std::mutex> lock(backends_mu_);
    for (size_t b = 0; b < cfg_.backends.size(); ++b) {
      auto ep = policy::parse_endpoint(cfg_.backends[b].address);
      probers_.push_back(std::make_unique<prober>(*registry_, b, *ep, health_));
    }
    for (auto& w : workers_) w->start();
    for (auto& p : probers_) p->start();
    running_ = true;
  }
  if (cfg_.routing.mode == policy::routing_mode::cluster) {
    topology_ = std::make_unique<cluster_topology>(*this, cfg_.routing.seeds,
                                                   cfg_.routing.refresh_interval_ms,
                                                   cfg_.health.timeout_ms,
                                                   cfg_.routing.reads ==
                                                       policy::read_from::replica_preferred);
    topology_->start();
  }
  signals_.add(SIGTERM);
  signals_.add(SIGINT);
  signals_.add(SIGHUP);
  wait_signal();
  accept();
  log::info("started", {{"version", k_version},
                        {"listen", cfg_.server.listen},
                        {"admin", cfg_.server.admin.empty() ? "off" : cfg_.server.admin},
                        {"threads", workers_.size()},
                        {"backends", cfg_.backends.size()},
                        {"mode", policy::to_string(cfg_.routing.mode)},
                        {"config", cfg_.source.empty() ? "(command line)" : cfg_.source}});
  control_.run();
  if (topology_) topology_->stop();
  registry_->stop();
  for (auto& p : probers_) p->join();
  for (auto& w : workers_) w->stop();
  for (auto& w : workers_) w->join();
  log::info("stopped");
  return 0;
}

void runtime::accept() {
  worker& w = *workers_[next_worker_];
  next_worker_ = (next_worker_ + 1) % workers_.size();
  // The socket is born on the worker's io_context: that worker owns the client.
  acceptor_.async_accept(w.io(), [this, &w](const asio::error_code& ec,
                                            asio::generic::stream_protocol::socket s) {
    if (shutting_down_) return;
    if (!ec) {
      worker* wp = &w;
      asio::post(wp->io(), [wp, sock = std::move(s)]() mutable { wp->adopt(std::move(sock)); });
      accept();
      return;
    }
    if (ec == asio::error::operation_aborted) return;
    // Out of file descriptors, say: wait a little instead of spinning.
    log::warn("accept_failed", {{"error", ec.message()}});
    auto t = std::make_shared<asio::steady_timer>(control_, std::chrono::milliseconds(100));
    t->async_wait([this, t](const asio::error_code&) { accept(); });
  });
}

void runtime::wait_signal() {
  signals_.async_wait([this](const asio::error_code& ec, int sig) {
    if (ec) return;
    if (sig == SIGHUP) {
      log::info("reload_requested", {{"source", "SIGHUP"}});
      reload();
      wait_signal();
      return;
    }
    log::info("shutdown_requested", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
    begin_shutdown();
    wait_signal();  // a second signal while draining is ignored, not fatal
  });
}

void runtime::begin_shutdown() {
  if (shutting_down_) return;
  shutting_down_ = true;
  asio::error_code ignored;
  acceptor_.close(ignored);
  if (admin_) admin_->close();
  if (cfg_.server.listen.rfind("unix:", 0) == 0) ::unlink(cfg_.server.listen.c_str() + 5);
  shutdown_timer_.expires_after(std::chrono::milliseconds(cfg_.server.shutdown_timeout_ms));
  shutdown_timer_.async_wait([this](const asio::error_code& ec) {
    if (ec) return;
    log::warn("shutdown_timeout", {{"idle_workers", idle_workers_.load()}});
    finish_shutdown();
  });
  post_to_workers([](worker& w) { w.begin_shutdown(); });
}

void runtime::worker_idle(size_t) {
  if (idle_workers_.fetch_add(1) + 1 == workers_.size()) {
    asio::post(control_, [this] { finish_shutdown(); });
  }
}

void runtime::finish_shutdown() {
  shutdown_timer_.cancel();
  signals_.cancel();
  control_.stop();
}

std::string runtime::reload(bool* ok) {
  if (ok) *ok = false;
  if (cfg_.source.empty()) {
    log::warn("reload_failed", {{"error", "no config file (started with --listen/--backend)"}});
    return "no config file to reload: respfence was started without --config";
  }
  policy::load_result r = policy::load_config_file(cfg_.source);
  if (!r.ok()) {
    log::error("reload_failed", {{"error", r.error}});
    return "reload failed, the running config stays: " + r.error;
  }
  const policy::config& n = r.cfg;
  // What cannot change without a restart is reported and left as it is.
  std::string fixed;
  auto note = [&](bool differs, const char* what) {
    if (!differs) return;
    if (!fixed.empty()) fixed += ", ";
    fixed += what;
  };
  note(n.server.listen != cfg_.server.listen, "server.listen");
  note(n.server.admin != cfg_.server.admin, "server.admin");
  note(n.server.threads != cfg_.server.threads, "server.threads");
  note(n.routing.mode != cfg_.routing.mode, "routing.mode");
  note(n.server.connections != cfg_.server.connections, "server.connections");
  note(n.server.shared_connections != cfg_.server.shared_connections,
       "server.shared_connections");
  bool backends_differ = n.backends.size() != cfg_.backends.size();
  for (size_t i = 0; !backends_differ && i < n.backends.size(); ++i) {
    const auto& a = n.backends[i];
    const auto& b = cfg_.backends[i];
    backends_differ = a.name != b.name || a.address != b.address || a.username != b.username ||
                      a.password != b.password || a.slots.size() != b.slots.size();
  }
  note(backends_differ, "[[backend]]");
  {
    std::lock_guard<std::mutex> lock(mu_);
    cfg_.policy = n.policy;
    cfg_.health = n.health;
    cfg_.server.log = n.server.log;
    cfg_.server.client_output_limit = n.server.client_output_limit;
    cfg_.server.client_input_window = n.server.client_input_window;
    cfg_.server.shutdown_timeout_ms = n.server.shutdown_timeout_ms;
  }
  log::set_level(n.server.log);
  health_.set(n.health, n.policy.learn_from_backend);
  const size_t limit = n.server.client_output_limit;
  const size_t window = n.server.client_input_window;
  post_to_workers([limit, window](worker& w) {
    w.set_output_limit(limit);
    w.set_input_window(window);
  });
  publish_policy();
  for (size_t b = 0; b < registry_->size(); ++b) registry_->wake(b);
  if (ok) *ok = true;
  std::string report = "reloaded " + cfg_.source;
  if (!fixed.empty()) report += "; not applied until restart: " + fixed;
  log::info("reloaded", {{"config", cfg_.source}, {"not_applied", fixed.empty() ? "-" : fixed}});
  return report;
}

}  // namespace respfence::proxy

// runtime: what the admin endpoint shows (/status, /metrics, /readyz).

#include <chrono>
#include <cstdio>
#include <sstream>

#include "proxy/runtime.hpp"
#include "proxy/worker.hpp"

namespace respfence::proxy {

namespace {

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

// Prometheus label values escape backslash, quote and newline.
std::string label(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

std::string number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.6g", v);
  return buf;
}

}  // namespace

bool runtime::all_ready(std::string& why) const {
  for (size_t b = 0; b < registry_->size(); ++b) {
    const backend_status s = registry_->status(b);
    if (s.retired) continue;  // a node the cluster no longer uses
    if (s.state != policy::backend_state::ready) {
      why = "backend " + s.name + " (" + s.address + ") is " + policy::to_string(s.state);
      if (s.state == policy::backend_state::loading) {
        why += " (" + number(s.loading_perc) + "%, eta " + std::to_string(s.loading_eta_s) + "s)";
      }
      if (!s.last_error.empty() &&
          (s.state == policy::backend_state::down || s.state == policy::backend_state::busy)) {
        why += ": " + s.last_error;
      }
      return false;
    }
    if (s.cluster_state == "fail") {
      // Loaded, but its cluster does not serve yet: its commands would wait on CLUSTERDOWN.
      why = "backend " + s.name + " (" + s.address + ") is ready, but its cluster_state is fail";
      return false;
    }
  }
  return true;
}

int64_t runtime::backend_connections(size_t b, bool shared) const {
  int64_t n = 0;
  for (const auto& w : workers_) {
    const auto& v = shared ? w->stats().shared_conns : w->stats().dedicated_conns;
    if (b < v.size()) n += v[b].load(std::memory_order_relaxed);
  }
  return n;
}

int64_t runtime::pinned_clients() const {
  int64_t n = 0;
  for (const auto& w : workers_) n += w->stats().pinned_clients.load(std::memory_order_relaxed);
  return n;
}

uint64_t runtime::pins_total(size_t reason) const {
  uint64_t n = 0;
  for (const auto& w : workers_) n += w->stats().pins[reason].load(std::memory_order_relaxed);
  return n;
}

std::string runtime::status_json() const {
  const auto uptime = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::steady_clock::now() - started_)
                          .count();
  int64_t clients = 0;
  for (const auto& w : workers_) clients += w->stats().clients.load(std::memory_order_relaxed);
  std::ostringstream o;
  o << "{\"version\":" << json_string(k_version) << ",\"uptime_s\":" << uptime
    << ",\"clients\":" << clients << ",\"threads\":" << workers_.size()
    << ",\"mode\":" << json_string(policy::to_string(cfg_.routing.mode)) << ",\"backends\":[";
  for (size_t b = 0; b < registry_->size(); ++b) {
    const backend_status s = registry_->status(b);
    uint64_t c[static_cast<size_t>(counter::count_)] = {};
    for (const auto& w : workers_) {
      for (size_t k = 0; k < static_cast<size_t>(counter::count_); ++k) {
        c[k] += w->stats().commands[b][k].load(std::memory_order_relaxed);
      }
    }
    if (b > 0) o << ",";
    o << "{\"name\":" << json_string(s.name) << ",\"address\":" << json_string(s.address)
      << ",\"state\":" << json_string(policy::to_string(s.state))
      << ",\"state_since_s\":" << s.state_since_s
      << ",\"loading_perc\":" << number(s.loading_perc) << ",\"loading_eta_s\":" << s.loading_eta_s
      << ",\"flush_epoch\":" << s.flush_epoch << ",\"queued\":" << s.queued
      << ",\"queued_bytes\":" << s.queued_bytes
      << ",\"rejected\":" << c[static_cast<size_t>(counter::rejected)]
      << ",\"rewritten_pings\":" << c[static_cast<size_t>(counter::rewritten)]
      << ",\"forwarded\":" << c[static_cast<size_t>(counter::forwarded)]
      << ",\"queued_total\":" << c[static_cast<size_t>(counter::queued)]
      << ",\"retried\":" << c[static_cast<size_t>(counter::retried)]
      << ",\"expired\":" << c[static_cast<size_t>(counter::expired)]
      << ",\"loading_seconds_total\":" << number(s.loading_seconds_total)
      << ",\"run_id\":" << json_string(s.run_id) << ",\"last_error\":" << json_string(s.last_error)
      << ",\"retired\":" << (s.retired ? "true" : "false")
      << ",\"cluster_state\":" << json_string(s.cluster_state)
      << ",\"connections\":{\"shared\":" << backend_connections(b, true)
      << ",\"pinned\":" << backend_connections(b, false) << "}}";
  }
  // The model in effect: cluster mode keeps dedicated connections whatever the file says.
  const bool shared = cfg_.server.connections == policy::connection_model::shared &&
                      cfg_.routing.mode != policy::routing_mode::cluster;
  o << "],\"connections\":" << json_string(shared ? "shared" : "dedicated")
    << ",\"pinned_clients\":" << pinned_clients() << ",\"pins\":{";
  for (size_t r = 0; r < static_cast<size_t>(pin_reason::count_); ++r) {
    if (r > 0) o << ",";
    o << json_string(to_string(static_cast<pin_reason>(r))) << ":" << pins_total(r);
  }
  o << "}}\n";
  return o.str();
}

std::string runtime::metrics_text() const {
  std::ostringstream o;
  const policy::backend_state states[] = {
      policy::backend_state::connecting, policy::backend_state::loading,
      policy::backend_state::ready, policy::backend_state::down, policy::backend_state::busy};
  std::vector<backend_status> st;
  for (size_t b = 0; b < registry_->size(); ++b) st.push_back(registry_->status(b));

  o << "# HELP respfence_backend_state Backend state: 1 for the state the backend is in.\n"
    << "# TYPE respfence_backend_state gauge\n";
  for (const auto& s : st) {
    for (auto x : states) {
      o << "respfence_backend_state{backend=\"" << label(s.name) << "\",state=\""
        << policy::to_string(x) << "\"} " << (s.state == x ? 1 : 0) << "\n";
    }
  }
  o << "# HELP respfence_backend_retired 1 for a cluster node the topology no longer uses.\n"
    << "# TYPE respfence_backend_retired gauge\n";
  for (const auto& s : st) {
    o << "respfence_backend_retired{backend=\"" << label(s.name) << "\"} " << (s.retired ? 1 : 0)
      << "\n";
  }
  o << "# HELP respfence_flush_epoch Generation of the backend's dataset as the proxy knows it.\n"
    << "# TYPE respfence_flush_epoch gauge\n";
  for (const auto& s : st) {
    o << "respfence_flush_epoch{backend=\"" << label(s.name) << "\"} " << s.flush_epoch << "\n";
  }
  o << "# HELP respfence_queued_commands Commands held while the backend is not ready.\n"
    << "# TYPE respfence_queued_commands gauge\n";
  for (const auto& s : st) {
    o << "respfence_queued_commands{backend=\"" << label(s.name) << "\"} " << s.queued << "\n";
  }
  o << "# HELP respfence_commands_total Commands by what the proxy did with them.\n"
    << "# TYPE respfence_commands_total counter\n";
  for (size_t b = 0; b < st.size(); ++b) {
    for (size_t k = 0; k < static_cast<size_t>(counter::count_); ++k) {
      uint64_t n = 0;
      for (const auto& w : workers_) n += w->stats().commands[b][k].load(std::memory_order_relaxed);
      o << "respfence_commands_total{backend=\"" << label(st[b].name) << "\",action=\""
        << to_string(static_cast<counter>(k)) << "\"} " << n << "\n";
    }
  }
  o << "# HELP respfence_loading_seconds_total Time the backend has spent loading.\n"
    << "# TYPE respfence_loading_seconds_total counter\n";
  for (const auto& s : st) {
    o << "respfence_loading_seconds_total{backend=\"" << label(s.name) << "\"} "
      << number(s.loading_seconds_total) << "\n";
  }
  o << "# HELP respfence_request_duration_seconds Time from a request's arrival to its reply.\n"
    << "# TYPE respfence_request_duration_seconds histogram\n";
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= k_latency_buckets_us.size(); ++i) {
    for (const auto& w : workers_) cumulative += w->stats().latency[i].load(std::memory_order_relaxed);
    o << "respfence_request_duration_seconds_bucket{le=\"";
    if (i < k_latency_buckets_us.size()) {
      o << number(static_cast<double>(k_latency_buckets_us[i]) / 1e6);
    } else {
      o << "+Inf";
    }
    o << "\"} " << cumulative << "\n";
  }
  uint64_t sum = 0;
  uint64_t count = 0;
  for (const auto& w : workers_) {
    sum += w->stats().latency_sum_us.load(std::memory_order_relaxed);
    count += w->stats().latency_count.load(std::memory_order_relaxed);
  }
  o << "respfence_request_duration_seconds_sum " << number(static_cast<double>(sum) / 1e6) << "\n"
    << "respfence_request_duration_seconds_count " << count << "\n";
  int64_t clients = 0;
  for (const auto& w : workers_) clients += w->stats().clients.load(std::memory_order_relaxed);
  o << "# HELP respfence_client_connections Client connections open now.\n"
    << "# TYPE respfence_client_connections gauge\n"
    << "respfence_client_connections " << clients << "\n";
  o << "# HELP respfence_backend_connections Backend connections open now: shared by unpinned\n"
    << "# clients, or pinned (a client's own).\n"
    << "# TYPE respfence_backend_connections gauge\n";
  for (size_t b = 0; b < st.size(); ++b) {
    for (const bool shared : {true, false}) {
      o << "respfence_backend_connections{backend=\"" << label(st[b].name) << "\",kind=\""
        << (shared ? "shared" : "pinned") << "\"} " << backend_connections(b, shared) << "\n";
    }
  }
  o << "# HELP respfence_pinned_clients Clients with a backend connection of their own (counted once a second).\n"
    << "# TYPE respfence_pinned_clients gauge\n"
    << "respfence_pinned_clients " << pinned_clients() << "\n";
  o << "# HELP respfence_pins_total Clients pinned to a connection of their own, by reason.\n"
    << "# TYPE respfence_pins_total counter\n";
  for (size_t r = 0; r < static_cast<size_t>(pin_reason::count_); ++r) {
    o << "respfence_pins_total{reason=\"" << to_string(static_cast<pin_reason>(r)) << "\"} "
      << pins_total(r) << "\n";
  }
  return o.str();
}

}  // namespace respfence::proxy

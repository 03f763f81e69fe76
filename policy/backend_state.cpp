#include "policy/backend_state.hpp"

#include <cstdlib>

#include "policy/text.hpp"

namespace respfence::policy {

const char* to_string(backend_state s) {
  switch (s) {
    case backend_state::connecting:
      return "connecting";
    case backend_state::loading:
      return "loading";
    case backend_state::ready:
      return "ready";
    case backend_state::down:
      return "down";
    case backend_state::busy:
      return "busy";
  }
  return "?";
}

std::ostream& operator<<(std::ostream& os, backend_state s) { return os << to_string(s); }

transition backend_state_machine::move(backend_state to) {
  transition t{state_, to};
  state_ = to;
  return t;
}

transition backend_state_machine::on_probe_connected() {
  // Only `down` has a reconnect to report; in other states the connection was never lost.
  if (state_ == backend_state::down) return move(backend_state::connecting);
  return {state_, state_};
}

transition backend_state_machine::on_probe_answer(bool loading) {
  return move(loading ? backend_state::loading : backend_state::ready);
}

transition backend_state_machine::on_probe_failed() { return move(backend_state::down); }

transition backend_state_machine::on_probe_busy() { return move(backend_state::busy); }

transition backend_state_machine::on_probe_timeout() {
  return move(serving(state_) ? backend_state::busy : backend_state::down);
}

probe_info parse_info(std::string_view text) {
  probe_info out;
  auto number = [](std::string_view v) -> uint64_t {
    uint64_t n = 0;
    for (char c : v) {
      if (c < '0' || c > '9') break;
      n = n * 10 + static_cast<uint64_t>(c - '0');
    }
    return n;
  };
  // cmdstat_flushall:calls=3,usec=...: the calls counter.
  auto calls = [&](std::string_view v) -> uint64_t {
    const size_t at = v.find("calls=");
    return at == std::string_view::npos ? 0 : number(v.substr(at + 6));
  };
  for_each_line(text, [&](std::string_view line) {
    const size_t colon = line.find(':');
    if (line.empty() || line[0] == '#' || colon == std::string_view::npos) return;
    const std::string_view k = line.substr(0, colon);
    const std::string_view v = line.substr(colon + 1);
    if (k == "loading") {
      out.loading = v == "1";
    } else if (k == "loading_loaded_perc") {
      out.loading_perc = std::strtod(std::string(v).c_str(), nullptr);
    } else if (k == "loading_eta_seconds") {
      out.loading_eta_s = static_cast<int64_t>(number(v));
    } else if (k == "run_id") {
      out.run_id = std::string(v);
    } else if (k == "server_name") {
      out.server_name = std::string(v);
    } else if (k == "cluster_enabled") {
      out.cluster_enabled = v == "1";
    } else if (k == "cluster_state") {
      out.cluster_state = std::string(v);
    } else if (k == "cmdstat_flushall" || k == "cmdstat_flushdb") {
      out.flush_calls += calls(v);
    }
  });
  return out;
}

epoch_bump flush_epoch_tracker::on_probe(const probe_info& info, uint64_t proxy_flushes_total) {
  if (!have_base_ || info.run_id != run_id_) {
    const bool restart = have_base_;
    have_base_ = true;
    run_id_ = info.run_id;
    base_calls_ = info.flush_calls;
    last_calls_ = info.flush_calls;
    base_proxy_ = proxy_flushes_total;
    external_ = 0;
    return restart ? epoch_bump{1, "restart"} : epoch_bump{};
  }
  if (info.flush_calls < last_calls_) {
    // CONFIG RESETSTAT zeroed the counters: start counting again from here.
    base_calls_ = info.flush_calls;
    last_calls_ = info.flush_calls;
    base_proxy_ = proxy_flushes_total;
    external_ = 0;
    return {};
  }
  last_calls_ = info.flush_calls;
  const int64_t server = static_cast<int64_t>(info.flush_calls - base_calls_);
  const int64_t ours = static_cast<int64_t>(proxy_flushes_total - base_proxy_);
  // A flush we sent but the server has not run yet makes this negative for a moment;
  // only growth beyond everything seen so far is someone else's flush.
  const int64_t theirs = server - ours;
  if (theirs > static_cast<int64_t>(external_)) {
    const uint64_t bump = static_cast<uint64_t>(theirs) - external_;
    external_ = static_cast<uint64_t>(theirs);
    return {bump, "external_flush"};
  }
  return {};
}

}  // namespace respfence::policy

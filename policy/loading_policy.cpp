#include "policy/loading_policy.hpp"

#include <algorithm>
#include <iomanip>

#include "policy/text.hpp"

namespace respfence::policy {

namespace data {
extern const std::string_view loading_safe_redis_70;
}

const char* to_string(action a) {
  switch (a) {
    case action::forward:
      return "forward";
    case action::queue:
      return "queue";
    case action::reject:
      return "reject";
  }
  return "?";
}
std::ostream& operator<<(std::ostream& os, action a) { return os << to_string(a); }

std::optional<action> parse_action(std::string_view s) {
  if (s == "forward") return action::forward;
  if (s == "queue") return action::queue;
  if (s == "reject") return action::reject;
  return std::nullopt;
}

const char* to_string(decision d) {
  switch (d) {
    case decision::forward:
      return "forward";
    case decision::rewrite_ping:
      return "rewrite_ping";
    case decision::answer_pong:
      return "answer_pong";
    case decision::queue:
      return "queue";
    case decision::reject:
      return "reject";
  }
  return "?";
}
std::ostream& operator<<(std::ostream& os, decision d) { return os << to_string(d); }

decision decide(const decide_input& in) {
  if (serving(in.state)) return decision::forward;
  // PING is not loading-safe, but a health check must stay green while the backend is
  // alive and loading. An explicit [policy.commands] PING entry wins over the rewrite.
  if (in.is_ping && in.ping_rewrite && !in.r.overridden && !in.resp2_subscribed &&
      in.state == backend_state::loading) {
    return in.echo_loading_safe ? decision::rewrite_ping : decision::answer_pong;
  }
  switch (in.r.act) {
    case action::forward:
      return decision::forward;
    case action::queue:
      return decision::queue;
    case action::reject:
      return decision::reject;
  }
  return decision::forward;
}

std::unordered_set<std::string> parse_name_list(std::string_view text) {
  std::unordered_set<std::string> out;
  for_each_line(text, [&](std::string_view line) {
    while (!line.empty() && line.back() == ' ') line.remove_suffix(1);
    if (line.empty() || line[0] == '#') return;
    std::string name(line);
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    out.insert(std::move(name));
  });
  return out;
}

const std::unordered_set<std::string>& builtin_loading_safe() {
  static const auto set = parse_name_list(data::loading_safe_redis_70);
  return set;
}

bool learned_commands::echo_loading_safe() const {
  for (const auto& e : entries) {
    if (e.name == "echo") return e.has(flag_loading);
  }
  return false;
}

std::shared_ptr<const policy_table> policy_table::build(const policy_config& cfg,
                                                        const learned_commands* learned) {
  auto t = std::make_shared<policy_table>();
  t->cfg_ = cfg;
  t->commands_ = command_table::builtin();
  std::unordered_set<std::string> learned_safe;
  const bool use_learned = cfg.learn_from_backend && learned != nullptr && !learned->entries.empty();
  if (use_learned) {
    for (const auto& e : learned->entries) {
      t->commands_.upsert(e);
      if (e.has(flag_loading)) learned_safe.insert(e.name);
    }
    t->learned_ = true;
  }
  const auto& safe = use_learned ? learned_safe : builtin_loading_safe();
  t->rules_.resize(t->commands_.size());
  for (const auto& e : t->commands_.entries()) {
    rule& r = t->rules_[e.index];
    r.loading_safe = safe.count(e.name) != 0;
    r.act = r.loading_safe ? action::forward : cfg.on_loading;
    r.timeout_ms = cfg.queue_timeout_ms;
  }
  for (const auto& o : cfg.commands) {
    const command_entry* e = t->commands_.find(o.name);
    if (e == nullptr) {
      // An override may name a command the table does not know yet (a module command
      // learned later): keep it as an entry so that the rule is ready when it arrives.
      command_entry added;
      added.name = o.name;
      added.arity = -1;
      e = &t->commands_.upsert(std::move(added));
      t->rules_.resize(t->commands_.size());
    }
    rule& r = t->rules_[e->index];
    r.act = o.act;
    r.timeout_ms = o.timeout_ms.value_or(cfg.queue_timeout_ms);
    r.overridden = true;
    // "cmd" also covers every "cmd|sub" that has no entry of its own.
    if (e->container) {
      const std::string prefix = e->name + "|";
      for (const auto& s : t->commands_.entries()) {
        if (s.name.compare(0, prefix.size(), prefix) != 0) continue;
        const bool own = std::any_of(cfg.commands.begin(), cfg.commands.end(),
                                     [&](const command_override& x) { return x.name == s.name; });
        if (own) continue;
        rule& sr = t->rules_[s.index];
        sr.act = o.act;
        sr.timeout_ms = r.timeout_ms;
        sr.overridden = true;
      }
    }
  }
  t->unknown_ = rule{action::forward, cfg.queue_timeout_ms, false, false};
  return t;
}

void policy_table::print(std::ostream& os, const column& extra,
                         std::string_view extra_header) const {
  os << "# effective loading policy: on_loading=" << cfg_.on_loading
     << " queue_timeout_ms=" << cfg_.queue_timeout_ms << " queue_max=" << cfg_.queue_max
     << " queue_max_bytes=" << cfg_.queue_max_bytes
     << " ping_rewrite=" << (cfg_.ping_rewrite ? "true" : "false")
     << " learn_from_backend=" << (cfg_.learn_from_backend ? "true" : "false") << "\n";
  os << "# source: " << (learned_ ? "backend COMMAND" : "built-in redis 7.0 table")
     << ", then [policy.commands]\n";
  os << std::left << std::setw(34) << "# command" << std::setw(14) << "loading-safe"
     << std::setw(10) << "action";
  if (extra) {
    os << std::setw(12) << "timeout_ms" << extra_header << "\n";
  } else {
    os << "timeout_ms\n";
  }
  std::vector<const command_entry*> sorted;
  for (const auto& e : commands_.entries()) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(),
            [](const command_entry* a, const command_entry* b) { return a->name < b->name; });
  for (const command_entry* e : sorted) {
    // A container's own line is noise unless the user overrode it.
    const rule& r = rules_[e->index];
    if (e->container && !r.overridden) continue;
    os << std::left << std::setw(34) << e->name << std::setw(14)
       << (r.loading_safe ? "yes" : "no") << std::setw(10) << r.act;
    std::string timeout = r.act == action::queue ? std::to_string(r.timeout_ms) : "-";
    if (extra) {
      os << std::setw(12) << timeout << extra(*e);
    } else {
      os << timeout;
    }
    if (r.overridden) os << "  (override)";
    os << "\n";
  }
  os << std::left << std::setw(34) << "(unknown commands)" << std::setw(14) << "-"
     << std::setw(10) << unknown_.act << "-  (the server answers them)\n";
}

}  // namespace respfence::policy

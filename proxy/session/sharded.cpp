// session_core, slots mode: commands split over several backends (MGET, MSET, DEL, ...),
// fanned out to all of them (DBSIZE, KEYS, FLUSHALL, SELECT, CONFIG SET, ...), walked one
// shard at a time (SCAN), or refused (routing/command_class.hpp). A command waits only for
// the backends it needs (design.md §5, §10).

#include <algorithm>

#include "proxy/resp/errors.hpp"
#include "proxy/resp/resp_writer.hpp"
#include "proxy/session/session_core.hpp"
#include "proxy/session/session_internal.hpp"

namespace respfence::proxy {

using policy::backend_state;
using policy::command_kind;
using routing::merge_rule;

bool session_core::refuse_sharded(entry& e, const routing::route& r) {
  const bool cluster = rt().cluster();
  const std::string_view mode = cluster ? "cluster" : "slots";
  // Whether it belongs to a transaction, as dispatch() decides it.
  const bool in_tx = e.decided ? e.in_tx : (tx_open_ || e.ckind == command_kind::multi);
  std::string error;
  if (r.kind == routing::route_kind::refused) {
    if (e.ckind == command_kind::replicate) {
      error = cluster ? err::replication_cluster : err::replication_slots;
    } else {
      error = err::not_supported(routing::display_name(r.rule->name), mode, r.rule->note);
    }
  } else if (in_tx && r.kind == routing::route_kind::fanout &&
             r.rule->has(routing::rule_server_state)) {
    // The transaction runs on one backend: the rest would never see it.
    error = err::fanout_in_multi(routing::display_name(r.rule->name), mode);
  } else {
    return false;
  }
  // As the server does with a command it refuses inside MULTI: EXEC will abort.
  if (in_tx) tx_dirty_ = true;
  answer_local(e, error);
  return true;
}

bool session_core::dispatch_sharded(entry& e, const routing::arg_source& args,
                                    const policy::rule& ru, routing::route r) {
  // e.retry and e.timeout_ms are set: dispatch() decided them from the same rule.
  const command_kind k = e.ckind;
  const routing::router& router = rt();
  const std::vector<uint16_t>& primaries = router.primaries();
  const size_t shards = primaries.size();

  if (k == command_kind::scan) {
    scan_cursor c;
    if (args.argc() < 2 || !decode_scan_cursor(args.arg(1), shards, c)) {
      // Not a cursor the proxy made: the first backend answers the error.
      send(e, primaries.front(), args);
      return true;
    }
    e.merge = merges_.acquire();
    merge_state& m = merges_[e.merge];
    m.reset(merge_rule::scan, 1);
    m.shards = static_cast<uint16_t>(shards);
    m.scan_shard = c.shard;
    m.part_backend[0] = primaries[c.shard];
    auto w = write_to(m.requests[0]);
    w.array(static_cast<int64_t>(args.argc())).bulk(args.arg(0)).bulk(std::to_string(c.backend_cursor));
    for (size_t i = 2; i < args.argc(); ++i) w.bulk(args.arg(i));
  } else if (r.kind == routing::route_kind::fanout) {
    if (policy::is_flush_kind(k) && !e.fence_passed) {
      const std::vector<size_t> all(primaries.begin(), primaries.end());
      const char* why = k == command_kind::swapdb ? "swapdb_through_proxy" : "flush_through_proxy";
      if (!start_flush(e, all, why)) return false;
    }
    if (k == command_kind::reset) {
      // What send() does for RESET on one backend: it ends WATCH wherever it was.
      watch_active_ = false;
      watch_lost_ = false;
      watch_backend_ = -1;
    }
    e.merge = merges_.acquire();
    merge_state& m = merges_[e.merge];
    m.reset(r.rule != nullptr ? r.rule->merge : merge_rule::none, static_cast<uint16_t>(shards));
    m.shards = static_cast<uint16_t>(shards);
    // DEBUG RELOAD replaces each backend's dataset: its epoch moves as the part is sent.
    m.reload = k == command_kind::debug && args.argc() >= 2 &&
               policy::iequals_lower(args.arg(1), "reload");
    for (size_t i = 0; i < shards; ++i) {
      m.part_backend[i] = primaries[i];
      m.names.push_back(env_.view(primaries[i]).name);
    }
  } else {
    // Split: one part per backend, in the order the backends first appear.
    e.merge = merges_.acquire();
    merge_state& m = merges_[e.merge];
    m.reset(routing::merge_rule_for(k), 0);
    m.shards = static_cast<uint16_t>(shards);
    const size_t step = k == command_kind::mset ? 2 : 1;
    std::vector<uint32_t> group;  // per part: its backend (slots) or slot (cluster)
    std::vector<std::vector<size_t>> keys_of;
    for (size_t i : keys_) {
      const uint32_t g = router.group_of(args.arg(i));
      size_t p = std::find(group.begin(), group.end(), g) - group.begin();
      if (p == group.size()) {
        group.push_back(g);
        m.part_backend.push_back(router.owner_of(args.arg(i)));
        keys_of.emplace_back();
      }
      m.order.emplace_back(p, static_cast<uint32_t>(keys_of[p].size()));
      keys_of[p].push_back(i);
    }
    const auto parts = static_cast<uint16_t>(m.part_backend.size());
    m.parts = parts;
    m.state.assign(parts, part_state::pending);
    m.ping_bare.assign(parts, 0);
    m.asking.assign(parts, 0);
    m.replies.assign(parts, std::string());
    m.requests.assign(parts, std::string());
    for (uint16_t p = 0; p < parts; ++p) {
      auto w = write_to(m.requests[p]);
      w.array(static_cast<int64_t>(1 + keys_of[p].size() * step)).bulk(args.arg(0));
      for (size_t i : keys_of[p]) {
        w.bulk(args.arg(i));
        if (step == 2) w.bulk(args.arg(i + 1));
      }
    }
  }
  merge_state& m = merges_[e.merge];
  m.act = ru.act;
  m.loading_safe = ru.loading_safe && !ru.overridden;
  m.overridden = ru.overridden;
  e.kind = reply_kind::merge;
  if (args.argc() >= 2 && k == command_kind::ping) {
    m.ping_message.assign(args.arg(1));
    m.has_message = true;
  }
  // Under CLIENT REPLY OFF/SKIP (e.quiet) the parts are answered to the proxy all the
  // same (send_parts), and the client gets nothing (deliver).
  return send_parts(e);
}

bool session_core::send_parts(entry& e) {
  merge_state& m = merges_[e.merge];
  const policy::policy_table& pol = env_.policy();
  const bool is_ping = e.ckind == command_kind::ping;
  // The fence and the loading policy are decided for the command as a whole: it waits
  // (or fails) if any backend it needs would make it wait (or fail).
  size_t wait_on = SIZE_MAX;
  size_t reject_on = SIZE_MAX;
  for (uint16_t p = 0; p < m.parts; ++p) {
    if (m.state[p] != part_state::pending) continue;
    const size_t t = m.part_backend[p];
    const backend_view& v = env_.view(t);
    if (fenced(e, t)) {
      hold(e, hold_reason::fence);
      return false;
    }
    if (policy::serving(v.state) || m.loading_safe) continue;
    if (is_ping && pol.config().ping_rewrite && !m.overridden &&
        v.state == backend_state::loading) {
      continue;  // rewritten per part below
    }
    if (m.act == policy::action::queue && wait_on == SIZE_MAX) wait_on = t;
    if (m.act == policy::action::reject && reject_on == SIZE_MAX) reject_on = t;
  }
  if (reject_on != SIZE_MAX) {
    env_.count(reject_on, counter::rejected);
    answer_local(e, env_.view(reject_on).loading_error);
    return true;
  }
  if (wait_on != SIZE_MAX) return hold_for_loading(e, wait_on, e.timeout_ms);

  for (uint16_t p = 0; p < m.parts; ++p) {
    if (m.state[p] != part_state::pending) continue;
    const size_t t = m.part_backend[p];
    const backend_view& v = env_.view(t);
    expect_server_reply(t, e.seq);  // each part is waited for, whatever CLIENT REPLY says
    link& l = ensure_link(t);
    if (m.asking[p]) {
      // -ASK: this part goes to the importing node, announced by ASKING right before it.
      send_gen(t, "*1\r\n$6\r\nASKING\r\n", detail::item_swallow, e.seq);
      m.asking[p] = 0;
    }
    if (is_ping && v.state == backend_state::loading && pol.config().ping_rewrite &&
        !m.overridden) {
      const bool bare = !m.has_message;
      if (!v.echo_loading_safe) {
        // The backend is alive but cannot ECHO while loading: answer its part here.
        m.replies[p] = detail::ping_answer(m.has_message, m.ping_message);
        m.state[p] = part_state::answered;
        ++m.answered;
        env_.count(t, counter::rewritten);
        continue;
      }
      const size_t start = l.gen.size();
      detail::write_echo_for_ping(l.gen, m.has_message, m.ping_message);
      l.out.push_back(seg{true, start, l.gen.size() - start});
      m.ping_bare[p] = bare ? 1 : 0;
      env_.count(t, counter::rewritten);
    } else if (m.requests[p].empty()) {
      append_in(l, e.req_off, e.req_len);  // a fan-out sends the client's own bytes
      env_.count(t, counter::forwarded);
    } else {
      const size_t start = l.gen.size();
      l.gen += m.requests[p];
      l.out.push_back(seg{true, start, m.requests[p].size()});
      env_.count(t, counter::forwarded);
    }
    if (e.is_flush) env_.flush_sent(t);
    if (m.reload) env_.bump_epoch(t, "debug_reload_through_proxy");
    push_item(l, inflight_item{e.seq, detail::item_part, p});
    m.state[p] = part_state::sent;
  }
  e.state = entry_state::sent;
  e.kind = reply_kind::merge;
  if (m.answered == m.parts) finish_merge(e);
  return true;
}

void session_core::on_part_reply(entry& e, uint16_t part, std::string_view reply) {
  if (e.merge < 0 || e.state == entry_state::done) return;  // answered already
  merge_state& m = merges_[e.merge];
  if (part >= m.parts || m.state[part] == part_state::answered) return;
  if (m.ping_bare[part] && !reply.empty() && reply[0] == '$') {
    m.replies[part] = rep::pong;
  } else {
    m.replies[part].assign(reply);
  }
  m.state[part] = part_state::answered;
  ++m.answered;
  // A held command waits for its other parts to be sent again before it is answered.
  if (m.answered == m.parts && e.state == entry_state::sent) finish_merge(e);
}

void session_core::retry_part(entry& e, uint16_t part, size_t b) {
  if (e.merge < 0 || e.state == entry_state::done) return;
  merge_state& m = merges_[e.merge];
  if (part < m.parts && m.state[part] == part_state::sent) m.state[part] = part_state::pending;
  env_.count(b, counter::retried);
  if (e.state == entry_state::sent) hold_for_loading(e, b, e.timeout_ms);
}

void session_core::finish_merge(entry& e) {
  const merge_state& m = merges_[e.merge];
  const std::string merged = merge_replies(m, resp3_);
  if (!merged.empty() && merged[0] != '-') record_state(e, merged);
  deliver(e, merged);
}

}  // namespace respfence::proxy

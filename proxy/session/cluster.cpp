// session_core: cluster mode's redirections (-MOVED, -ASK, -TRYAGAIN, -CLUSTERDOWN), handled
// inside the proxy so that clients never see them.

#include <algorithm>
#include <cstring>

#include "proxy/resp/errors.hpp"
#include "proxy/session/session_core.hpp"
#include "proxy/session/session_internal.hpp"

namespace respfence::proxy {

// ---------------------------------------------------------------- cluster redirections

void session_core::hold_retry(entry& e) {
  // 10 ms, doubling, at most half a second: a migration or a failover usually ends soon.
  const int64_t delay = std::min<int64_t>(500, int64_t{10} << std::min<int>(e.redirects, 6));
  e.deadline = env_.now_ms() + delay;
  hold(e, hold_reason::retry);
}

bool session_core::redirected(size_t b, const inflight_item& it, std::string_view line) {
  const err::redirect rd = err::parse_redirect(line);
  if (rd.kind == err::redirect_kind::none || it.what == detail::item_replay) return false;
  if (it.seq < head_seq_ || it.seq >= head_seq_ + pipe_.size()) return false;
  entry& e = at(it.seq);
  if (e.state == entry_state::done) return false;
  size_t target = SIZE_MAX;
  if (rd.kind == err::redirect_kind::moved || rd.kind == err::redirect_kind::ask) {
    target = env_.backend_for(rd.target);
    if (rd.kind == err::redirect_kind::moved) env_.topology_changed();
    if (target == SIZE_MAX) return false;
    if (links_.size() <= target) grow_links(target + 1);
  }
  link& l = links_[b];
  if (it.what == detail::item_swallow) {
    // A command of a held transaction: its EXEC will abort; the block goes again.
    if (e.kind == reply_kind::tx_exec) {
      e.saw_redirect = true;
      if (rd.kind == err::redirect_kind::moved) e.force_backend = static_cast<int32_t>(target);
    }
    l.inflight.pop_front();
    return true;
  }
  if (rd.kind == err::redirect_kind::clusterdown) {
    // Waits like a queued command would, up to its deadline; otherwise the client sees it.
    // Only the deadline bounds it: a primary that has just loaded stays CLUSTERDOWN until
    // the others clear its FAIL flag (twice the node timeout), which takes many retries.
    const int64_t deadline = e.t0_us / 1000 + e.timeout_ms;
    if (!e.retry || env_.now_ms() >= deadline) return false;
    e.redirects = std::min<uint8_t>(e.redirects, 8);
  }
  if (++e.redirects > 16) return false;
  l.inflight.pop_front();
  env_.count(b, counter::retried);
  if (it.what == detail::item_part) {
    merge_state& m = merges_[e.merge];
    m.state[it.part] = part_state::pending;
    if (target != SIZE_MAX) {
      m.part_backend[it.part] = static_cast<uint16_t>(target);
      m.asking[it.part] = rd.kind == err::redirect_kind::ask ? 1 : 0;
    }
    if (e.state == entry_state::sent) {
      if (target != SIZE_MAX) {
        send_parts(e);
      } else {
        hold_retry(e);
      }
    }
    return true;
  }
  if (e.tx >= 0) {
    txs_[e.tx].multi_sent = false;
    // ASKING does not carry over MULTI: a moving slot's transaction waits instead.
    if (rd.kind == err::redirect_kind::ask) target = SIZE_MAX;
  }
  if (target != SIZE_MAX) {
    e.force_backend = static_cast<int32_t>(target);
    e.asking = rd.kind == err::redirect_kind::ask;
    hold(e, hold_reason::order);
    resume();
  } else {
    hold_retry(e);
  }
  return true;
}

}  // namespace respfence::proxy

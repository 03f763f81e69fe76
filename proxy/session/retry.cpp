// session_core: LOADING answers, and when a command may be sent a second time (design.md §6).
//
// A command is sent again only when the server said it did not run it, and nothing
// after it on the same connection ran. So a LOADING answer (its error code is LOADING:
// free text that mentions loading is a command's own answer) is kept, not shown, while
// two things are found out:
//  - what happens to the commands sent after it on that connection. If one of them ran
//    (any answer but LOADING: a SELECT, a CLIENT SETNAME, a PUBLISH pipelined behind it),
//    sending the earlier command again would run it after that one: the client gets the
//    server's LOADING answer instead, exactly what it would have got direct. Once every
//    later command on the connection was answered LOADING too, the wait is "quiet".
//  - whether the backend really loads. The prober checks at once; a quiet command goes
//    back to the queue once the prober says loading, and gets its kept answer once a
//    probe that began after the answer says the backend is serving (a script answered
//    -LOADING itself), or when its deadline passes.
// The backend's state never changes on a reply alone.

#include <algorithm>

#include "proxy/resp/errors.hpp"
#include "proxy/session/session_core.hpp"
#include "proxy/session/session_internal.hpp"

namespace respfence::proxy {

using policy::backend_state;

void session_core::begin_wait(entry& e, size_t b, const inflight_item& it, std::string_view reply) {
  retry_wait w;
  w.seq = e.seq;
  w.part = it.part;
  w.is_part = it.what == detail::item_part;
  w.backend = static_cast<uint16_t>(b);
  w.after_round = env_.report_loading(b);
  w.deadline = env_.now_ms() + e.timeout_ms;
  if (w.is_part) {
    merges_[e.merge].replies[it.part].assign(reply);
  } else {
    e.rep_off = kept_.size();
    e.rep_len = reply.size();
    kept_.append(reply);
    ++kept_live_;
  }
  ++e.waits;
  if (!(e.state == entry_state::held && e.hold == hold_reason::confirm)) {
    hold(e, hold_reason::confirm);
  }
  waits_.push_back(w);
}

void session_core::on_ran(size_t b) {
  for (size_t i = 0; i < waits_.size();) {
    if (waits_[i].backend == b && !waits_[i].quiet) {
      end_wait(i, false);  // erases waits_[i]
    } else {
      ++i;
    }
  }
}

void session_core::check_quiet(size_t b) {
  const bool open_waits = std::any_of(waits_.begin(), waits_.end(), [b](const retry_wait& w) {
    return w.backend == b && !w.quiet;
  });
  if (!open_waits) return;
  const ring<inflight_item>& items = links_[b].inflight;
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].what == detail::item_reply || items[i].what == detail::item_part) return;
  }
  for (retry_wait& w : waits_) {
    if (w.backend == b) w.quiet = true;
  }
}

void session_core::settle_waits() {
  if (waits_.empty()) return;
  const int64_t now = env_.now_ms();
  for (size_t i = 0; i < waits_.size();) {
    const retry_wait& w = waits_[i];
    if (!w.quiet) {
      ++i;
      continue;
    }
    const backend_view& v = env_.view(w.backend);
    if (v.state == backend_state::loading) {
      end_wait(i, true);
    } else if ((policy::serving(v.state) && v.probe_round > w.after_round) || now >= w.deadline) {
      end_wait(i, false);
    } else {
      ++i;  // no verdict yet (the backend is down, or the probe is under way)
    }
  }
}

void session_core::end_wait(size_t i, bool retry) {
  const retry_wait w = waits_[i];
  waits_.erase(waits_.begin() + static_cast<std::ptrdiff_t>(i));
  waits_changed_ = true;
  entry& e = at(w.seq);
  --e.waits;
  if (retry) {
    env_.count(w.backend, counter::retried);
    if (e.is_flush) {
      for (uint8_t n = 0; n < e.flushes; ++n) env_.flush_unsent(w.backend);
    }
  }
  if (w.is_part) {
    merge_state& m = merges_[e.merge];
    if (retry) {
      m.state[w.part] = part_state::pending;
    } else {
      m.state[w.part] = part_state::answered;
      ++m.answered;
    }
    if (e.waits > 0) return;
    --held_;
    e.hold = hold_reason::none;
    e.state = entry_state::sent;
    const bool resend = std::find(m.state.begin(), m.state.end(), part_state::pending) != m.state.end();
    if (resend) {
      hold_for_loading(e, w.backend, e.timeout_ms);
    } else if (m.answered == m.parts) {
      finish_merge(e);
    }
    return;
  }
  const std::string reply(kept_, e.rep_off, e.rep_len);
  if (--kept_live_ == 0) kept_.clear();
  --held_;
  e.hold = hold_reason::none;
  e.state = entry_state::sent;
  if (retry) {
    if (e.tx >= 0) txs_[e.tx].multi_sent = false;
    hold_for_loading(e, w.backend, e.timeout_ms);
  } else {
    deliver(e, reply);
  }
}

void session_core::forget_waits(uint64_t seq) {
  for (size_t i = 0; i < waits_.size();) {
    if (waits_[i].seq != seq) {
      ++i;
      continue;
    }
    if (!waits_[i].is_part && --kept_live_ == 0) kept_.clear();
    waits_.erase(waits_.begin() + static_cast<std::ptrdiff_t>(i));
    --at(seq).waits;
  }
}

}  // namespace respfence::proxy

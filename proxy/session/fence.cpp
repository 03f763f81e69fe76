// session_core: the flush fence (design.md §7) and shutdown, seen from one session.
//
// Any number of fences may be up at once, from any sessions on any threads. Each keeps
// its own mark in every session: what that session accepted before the flush. Fences
// are ordered by their ids (one counter for the process), and so are their flushes: a
// fence waits for the flushes of lower ids, never for higher ones. The messages that
// raise them may reach a thread out of that order; each session keeps its marks in id
// order all the same (a fence's mark is never past that of a higher fence it already
// knows), so that nothing a fence waits for is held by a higher fence: no two fences
// ever wait for each other.

#include <algorithm>
#include <cstring>

#include "proxy/resp/errors.hpp"
#include "proxy/session/session_core.hpp"
#include "proxy/session/session_internal.hpp"

namespace respfence::proxy {

namespace {
bool targets(const std::vector<size_t>& backends, size_t b) {
  return std::find(backends.begin(), backends.end(), b) != backends.end();
}
}  // namespace

// ---------------------------------------------------------------- flush fence

bool session_core::start_flush(entry& e, const std::vector<size_t>& backends, const char* why) {
  // Behind a blocking command of its own client, the flush is not read by the server
  // until that command is answered, and other clients go on meanwhile (one of them may
  // be the LPUSH that ends it): its fence rises only once it is the oldest unanswered.
  if (e.seq != head_seq_) {
    for (size_t i = 0; i < pipe_.size() && pipe_[i].seq < e.seq; ++i) {
      if (pipe_[i].blocks && pipe_[i].state == entry_state::sent) {
        hold(e, hold_reason::barrier);
        return false;
      }
    }
  }
  // The epoch moves first, synchronously: anything stamped before it is stale from now.
  for (size_t b : backends) env_.bump_epoch(b, why);
  e.is_flush = true;
  if (!env_.fence_enabled()) {
    e.fence_passed = true;
    return true;
  }
  hold(e, hold_reason::flush);
  // The env raises the fence on this thread's sessions before it returns, this one
  // included, which must know that the fence is its own while that happens.
  flushing_seq_ = e.seq;
  const uint64_t id = env_.begin_flush(this, backends);
  flushing_seq_ = UINT64_MAX;
  at(e.seq).own_fence = id;
  return false;
}

bool session_core::fence_begin(uint64_t fence_id, const std::vector<size_t>& backends) {
  // Everything accepted so far came before the flush; the flushing session's own later
  // commands come after it.
  const bool own = flushing_seq_ != UINT64_MAX;
  uint64_t mark = own ? flushing_seq_ + 1 : next_seq_;
  for (fence_mark& g : fences_) {
    const bool shared = std::any_of(backends.begin(), backends.end(),
                                    [&](size_t b) { return targets(g.backends, b); });
    if (!shared) continue;
    if (g.id > fence_id) mark = std::min(mark, g.mark);
    // This session's own flush, raised late (it waited behind other commands), comes
    // after the lower fences it already knows; so does everything after it, which a
    // lower fence must then not wait for either (it waits for this flush, which waits
    // for that fence). Only held commands move: nothing after the flush was sent.
    if (own && g.id < fence_id) g.mark = std::min(g.mark, mark);
  }
  fences_.push_back(fence_mark{fence_id, mark, backends, false});
  if (fence_drained(fences_.back())) {
    fences_.back().reported = true;
    return true;
  }
  return false;
}

void session_core::fence_end(uint64_t fence_id) {
  fences_.erase(std::remove_if(fences_.begin(), fences_.end(),
                               [fence_id](const fence_mark& f) { return f.id == fence_id; }),
                fences_.end());
}

bool session_core::fenced(const entry& e, size_t b) const {
  if (env_.view(b).fence_level == 0) return false;
  // A flush waits for its own fence to drain (fence_ready), not behind other fences.
  if (e.own_fence != 0) return false;
  // SCRIPT KILL, FUNCTION KILL, SHUTDOWN: what ends a busy script is never held (the
  // fence may itself wait for that script).
  if (e.ckind == policy::command_kind::ends_busy) return false;
  for (const fence_mark& f : fences_) {
    if (e.seq >= f.mark && targets(f.backends, b)) return true;
  }
  return false;
}

bool session_core::fence_drained(const fence_mark& f) const {
  // Backends on which a blocking command of this client is on the wire: direct, the
  // server reads nothing of the client after it until it is answered, so whatever it
  // sends behind it runs after the flush, and the flush does not wait for it (it could
  // wait for ever: the command that would end the block may be held by this very fence).
  uint64_t blocked = 0;
  auto is_blocked = [&](size_t b) { return b < 64 && (blocked >> b & 1) != 0; };
  for (size_t i = 0; i < pipe_.size(); ++i) {
    const entry& e = pipe_[i];
    if (e.seq >= f.mark) break;
    if (e.state == entry_state::done) continue;
    if (e.blocks && e.state == entry_state::sent && e.backend < 64) {
      blocked |= uint64_t{1} << e.backend;
      continue;
    }
    if (e.exempt) continue;
    // Held behind it (not sent yet), with one backend: it will go behind it too.
    if (blocked != 0 && e.state == entry_state::held && !rt().sharded()) continue;
    if (e.state == entry_state::sent && is_blocked(e.backend)) continue;
    // A busy server answers -BUSY to everything but the script it runs (and to the flush
    // too): a script on the wire may never end, so it is not waited for.
    if (e.state == entry_state::sent && env_.view(e.backend).state == policy::backend_state::busy) {
      continue;
    }
    // Its own flush, or one whose fence rose later (and so waits for this one).
    if (e.own_fence != 0 && e.own_fence >= f.id) continue;
    // A client that left sends nothing more: only what is on the wire counts.
    if (client_gone_ && e.state == entry_state::held) continue;
    // Not yet decided: its backend is not known, so it counts.
    if (e.state == entry_state::held && e.hold != hold_reason::loading) return false;
    if (targets(f.backends, e.backend)) return false;
  }
  return true;
}

void session_core::check_fence_drained() {
  for (fence_mark& f : fences_) {
    if (f.reported || !fence_drained(f)) continue;
    f.reported = true;
    env_.session_drained(f.id);
  }
}

void session_core::fence_ready(uint64_t fence_id) {
  if (fence_id == 0) return;
  for (size_t i = 0; i < pipe_.size(); ++i) {
    entry& e = pipe_[i];
    if (e.own_fence != fence_id) continue;
    if (e.state == entry_state::held && e.hold == hold_reason::flush) {
      e.hold = hold_reason::order;  // resume() decides it now, in its turn
      e.fence_passed = true;
    }
    break;
  }
  resume();
}

bool session_core::own_flush_on_wire() const {
  for (size_t i = 0; i < pipe_.size(); ++i) {
    const entry& e = pipe_[i];
    if (e.own_fence != 0 && e.state == entry_state::sent) return true;
  }
  return false;
}

bool session_core::lingering() const {
  if (!client_gone_) return false;
  if (own_flush_on_wire()) return true;
  return std::any_of(fences_.begin(), fences_.end(), [](const fence_mark& f) { return !f.reported; });
}

// ---------------------------------------------------------------- shutdown

void session_core::begin_shutdown() {
  shutting_down_ = true;
  stop_input_ = true;
  close_when_done_ = true;
  // Held commands would wait for a backend that may take minutes: answer them now.
  for (uint64_t s = head_seq_; s < head_seq_ + pipe_.size(); ++s) {  // by number: see resume()
    entry& e = at(s);
    if (e.state != entry_state::held) continue;
    --held_;
    if (e.hold == hold_reason::confirm) forget_waits(e.seq);
    e.hold = hold_reason::none;
    release_admission(e);
    if (e.tx >= 0) abandon_tx(e);
    answer_local(e, err::shutting_down);
  }
  after_completion();
}

}  // namespace respfence::proxy

// session_core: the flush fence (SPEC §5) and shutdown, seen from one session.

#include <algorithm>
#include <cstring>

#include "proxy/errors.hpp"
#include "proxy/session_core.hpp"
#include "proxy/session_internal.hpp"

namespace respfence::proxy {

// ---------------------------------------------------------------- flush fence

bool session_core::start_flush(entry& e, const std::vector<size_t>& targets) {
  // The epoch moves first, synchronously: anything stamped before it is stale from now.
  for (size_t b : targets) env_.bump_epoch(b, "flush_through_proxy");
  e.is_flush = true;
  if (!env_.fence_enabled()) {
    e.fence_passed = true;
    return true;
  }
  own_fence_seq_ = e.seq;
  hold(e, hold_reason::flush);
  // The env raises the fence on this thread's sessions before it returns; this one must
  // know the fence is its own while that happens.
  own_fence_pending_ = true;
  own_fence_ = env_.begin_flush(this, targets);
  own_fence_pending_ = false;
  return false;
}

bool session_core::fence_begin(uint64_t fence_id, const std::vector<size_t>& backends) {
  // Everything accepted so far came before the flush. The flushing session's own later
  // commands come after it, even if they were read in the same batch.
  const bool own = own_fence_pending_ || (own_fence_ != 0 && fence_id == own_fence_);
  fence_mark_ = own ? own_fence_seq_ + 1 : next_seq_;
  fence_backends_ = backends;
  fence_id_ = fence_id;
  if (fence_drained()) {
    fence_id_ = 0;
    return true;
  }
  return false;
}

bool session_core::fence_drained() const {
  for (size_t i = 0; i < pipe_.size(); ++i) {
    const entry& e = pipe_[i];
    if (e.seq >= fence_mark_) break;
    if (e.state == entry_state::done || e.exempt || e.is_flush) continue;
    // Not yet decided: its backend is not known, so it counts.
    if (e.state == entry_state::held && e.hold != hold_reason::loading) return false;
    if (std::find(fence_backends_.begin(), fence_backends_.end(), e.backend) !=
        fence_backends_.end()) {
      return false;
    }
  }
  return true;
}

void session_core::check_fence_drained() {
  if (fence_id_ == 0 || !fence_drained()) return;
  const uint64_t id = fence_id_;
  fence_id_ = 0;
  env_.session_drained(id);
}

void session_core::fence_ready(uint64_t fence_id) {
  if (fence_id == 0 || fence_id != own_fence_) return;
  for (size_t i = 0; i < pipe_.size(); ++i) {
    entry& e = pipe_[i];
    if (e.seq != own_fence_seq_) continue;
    if (e.state == entry_state::held && e.hold == hold_reason::flush) {
      e.hold = hold_reason::order;  // resume() decides it now, in its turn
      e.fence_passed = true;
    }
    break;
  }
  resume();
}

// ---------------------------------------------------------------- shutdown

void session_core::begin_shutdown() {
  shutting_down_ = true;
  stop_input_ = true;
  close_when_done_ = true;
  // Held commands would wait for a backend that may take minutes: answer them now.
  for (size_t i = 0; i < pipe_.size(); ++i) {
    entry& e = pipe_[i];
    if (e.state != entry_state::held) continue;
    --held_;
    e.hold = hold_reason::none;
    release_admission(e);
    if (e.tx >= 0) abandon_tx(e);
    answer_local(e, err::shutting_down);
  }
  after_completion();
}

}  // namespace respfence::proxy

// session_core: commands held back, and released in their turn (design.md §5, §6, §12):
// for loading, a fence, order behind another, a retry's pause, a connection key change,
// or the shared connection's in-flight cap.

#include <algorithm>

#include "proxy/resp/errors.hpp"
#include "proxy/session/session_core.hpp"
#include "proxy/session/session_internal.hpp"

namespace respfence::proxy {

using policy::backend_state;
using policy::command_kind;
using policy::decision;

void session_core::hold(entry& e, hold_reason why) {
  if (e.state != entry_state::held || e.hold == hold_reason::none) ++held_;
  e.state = entry_state::held;
  e.hold = why;
  if (!watching_) {
    watching_ = true;
    env_.watch(this);
  }
}

bool session_core::hold_for_loading(entry& e, size_t b, uint32_t timeout_ms) {
  e.backend = static_cast<uint16_t>(b);
  // The deadline counts from when it first waited: a backend that flaps between down and
  // connecting decides it again each time, and must not restart its clock; and a command
  // that waited in order behind others (a pipeline behind the first one held) has waited
  // since it arrived (accept_request), so its age is not the sum of theirs.
  const int64_t now = env_.now_ms();
  if (e.queued_at == 0) e.queued_at = now;
  // Not allowed to wait at all, older than the queue allows already, or overflowing the
  // queue: the server's own answer, now.
  if (timeout_ms == 0 || e.queued_at + timeout_ms <= now || !env_.queue_admit(b, e.req_len)) {
    answer_local(e, env_.view(b).loading_error);
    env_.count(b, counter::expired);
    return true;
  }
  e.deadline = e.queued_at + timeout_ms;
  e.admitted = true;
  hold(e, hold_reason::loading);
  env_.count(b, counter::queued);
  return false;
}

void session_core::admit_in_order(entry& e, const routing::arg_source& args) {
  // A command that waits in order behind another (a pipeline behind the first command
  // held for a loading backend) will wait for that backend too: it counts against
  // queue_max and queue_max_bytes from its arrival, as the first one did. Past them it
  // gets the server's LOADING answer in its turn (dispatch), whatever the backend's state
  // by then: the answer it would have had on arrival at the head of the queue, and direct.
  // Before, only each client's first command was counted.
  const routing::router& router = rt();
  if (!router.sharded() && policy::serving(env_.view(0).state)) return;  // the usual case
  const policy::policy_table& pol = env_.policy();
  const policy::command_entry* cmd = detail::lookup(pol, args);
  size_t b = 0;
  if (router.sharded()) {
    if (links_.size() < router.backends()) grow_links(router.backends());
    const routing::route r = router.decide(cmd, args, keys_);
    if (r.kind != routing::route_kind::backend) return;
    b = r.backend;
  }
  const backend_view& v = env_.view(b);
  if (policy::serving(v.state) || (cmd != nullptr && !cmd->arity_ok(args.argc()))) return;
  const policy::rule& ru = cmd ? pol.rule_for(*cmd) : pol.unknown_rule();
  const command_kind k = cmd ? cmd->kind : command_kind::plain;
  if (policy::decide(loading_input(v, ru, k, args)) != decision::queue) return;
  e.backend = static_cast<uint16_t>(b);
  if (env_.queue_admit(b, e.req_len)) {
    e.admitted = true;
  } else {
    e.over_bound = true;
  }
}

void session_core::release_admission(entry& e) {
  if (!e.admitted) return;
  e.admitted = false;
  env_.queue_release(e.backend, e.req_len);
}

void session_core::resume() {
  if (client_gone_) return;  // nothing more is sent for a client that left
  settle_waits();
  waits_changed_ = false;
  // By number, not by index: a command answered here at the head leaves the pipeline,
  // and an index would then skip the one after it (which would run after its successor:
  // a SET after MULTI sent after the EXEC, outside the transaction).
  for (uint64_t s = head_seq_; s < head_seq_ + pipe_.size() && held_ > 0; ++s) {
    entry& e = at(s);
    if (e.state != entry_state::held) continue;
    // A flush waits for its fence; what came after it waits for the flush.
    if (e.hold == hold_reason::flush) break;
    if (e.hold == hold_reason::barrier && e.seq != head_seq_) break;
    if (e.hold == hold_reason::retry) break;  // tick() releases it when it is due
    if (e.hold == hold_reason::confirm) break;  // settle_waits() decides it
    if (e.hold == hold_reason::drain && (e.seq != head_seq_ || !links_quiet())) break;
    if (key_wait_seq_ != UINT64_MAX && e.seq > key_wait_seq_) break;
    if (lim_.shared && (e.seq - head_seq_ >= inflight_cap() || output_over_limit())) break;
    --held_;
    e.hold = hold_reason::none;
    release_admission(e);
    const uint64_t seq = e.seq;
    bool decided = false;
    if (e.tx >= 0) {
      if (e.force_backend >= 0) {
        e.backend = static_cast<uint16_t>(e.force_backend);
        e.force_backend = -1;
      }
      decided = exec_held_tx(e, e.backend);
    } else if (e.merge >= 0) {
      decided = send_parts(e);
    } else {
      const std::string_view view(in_.data() + e.req_off, e.req_len);
      reframer_.reset();
      if (reframer_.next(view) != frame_status::complete) {
        // Cannot happen: these bytes were framed once already.
        answer_local(e, err::backend_protocol);
        continue;
      }
      decided = dispatch(e, detail::framed_args(reframer_, view));
    }
    // dispatch may have grown the pipeline; the entry is found again by its number.
    if (!decided && at(seq).state == entry_state::held) break;
  }
  if (held_ == 0 && watching_) {
    watching_ = false;
    env_.unwatch(this);
  }
  after_completion();
}

void session_core::drop_after(uint64_t seq) {
  dropped_after_ = std::min(dropped_after_, seq);
  for (uint64_t s = seq + 1; s < head_seq_ + pipe_.size(); ++s) {  // by number: see resume()
    entry& e = at(s);
    e.quiet = true;  // sent already (or a part of it): its reply is dropped when it comes
    if (e.state != entry_state::held) continue;
    if (e.hold != hold_reason::none) --held_;
    e.hold = hold_reason::none;
    release_admission(e);
    if (e.tx >= 0) abandon_tx(e);
    answer_local(e, {});
  }
}

void session_core::tick(int64_t now_ms) {
  if (client_gone_) {
    // A lingering flush sent back to wait (a -LOADING reply) is not resent: let it go.
    on_client_closed();
    return;
  }
  bool expired = !waits_.empty();  // their deadlines pass here
  for (uint64_t s = head_seq_; s < head_seq_ + pipe_.size(); ++s) {  // by number: see resume()
    entry& e = at(s);
    if (e.state == entry_state::held && e.hold == hold_reason::retry && e.deadline <= now_ms) {
      e.hold = hold_reason::order;  // due: decided again, in its turn
      expired = true;
      continue;
    }
    if (e.state != entry_state::held || e.hold != hold_reason::loading || e.deadline > now_ms) {
      continue;
    }
    --held_;
    e.hold = hold_reason::none;
    release_admission(e);
    if (e.tx >= 0) abandon_tx(e);
    env_.count(e.backend, counter::expired);
    answer_local(e, env_.view(e.backend).loading_error);
    expired = true;
  }
  // What waited behind an expired command may go now.
  if (expired) resume();
}

}  // namespace respfence::proxy

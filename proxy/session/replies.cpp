// session_core: backend links, replies, and the client's output in request order.

#include <algorithm>
#include <cstring>

#include "proxy/resp/errors.hpp"
#include "proxy/resp/resp_value.hpp"
#include "proxy/session/session_core.hpp"
#include "proxy/session/session_internal.hpp"

namespace respfence::proxy {

using policy::command_kind;
using detail::release_if_big;

namespace {

bool is_confirmation(std::string_view name) {
  return name == "subscribe" || name == "unsubscribe" || name == "psubscribe" ||
         name == "punsubscribe" || name == "ssubscribe" || name == "sunsubscribe";
}

bool is_message(std::string_view name) {
  return name == "message" || name == "pmessage" || name == "smessage";
}

// A command whose effect and answer depend on nothing: that it ran before an earlier
// command sent again is invisible (ECHO, and PING: a health check pipelined behind a
// command must not cost that command its retry).
bool order_free(command_kind k) { return k == command_kind::echo || k == command_kind::ping; }

std::string_view first_line(std::string_view reply) {
  const size_t cr = reply.find('\r');
  return cr == std::string_view::npos ? reply : reply.substr(0, cr + 2);
}

}  // namespace

// ---------------------------------------------------------------- replies

bool session_core::out_of_band(size_t b, std::string_view reply, const reply_info& info) const {
  // Most replies: a plain reply to a client that neither subscribed nor monitors.
  if (!info.is_push() && !monitor_ && (resp3_ || info.type != '*' || info.n_el < 3)) return false;
  const link& l = links_[b];
  bool head_is_sub = false;
  if (!l.inflight.empty() && l.inflight.front().what == detail::item_reply) {
    const uint64_t seq = l.inflight.front().seq;
    head_is_sub = pipe_[seq - head_seq_].kind == reply_kind::subscribe;
  }
  const bool named = info.n_el >= 1 && (info.el[0].type == '$' || info.el[0].type == '+');
  const std::string_view name = named ? info.element(reply, 0) : std::string_view{};
  if (info.is_push()) {
    // Messages, invalidations, and confirmations nobody asked for go out as they come.
    return !(head_is_sub && is_confirmation(name));
  }
  if (!resp3_ && info.type == '*' && info.n_el >= 3 && (subscribed() || head_is_sub)) {
    if (is_message(name)) return true;
    if (is_confirmation(name)) return !head_is_sub;
  }
  if (monitor_ && info.type == '+' && info.payload_len > 0) {
    const char c = reply[info.payload_off];
    if (c >= '0' && c <= '9') return true;  // "+1700000000.123456 [0 ...] ..."
  }
  return false;
}

bool session_core::refuses(const entry& e, std::string_view reply, const reply_info& info) {
  // A protocol error refusing a request respfence forwarded (over a limit of the server's
  // own configuration: a lowered proto-max-bulk-len): its exact text, and a request whose
  // shape can earn it. A script may return any error text, but not make its own request
  // too big after the fact.
  if (!info.is_error() || reply.size() < err::proto_error_prefix.size() ||
      reply.substr(0, err::proto_error_prefix.size()) != err::proto_error_prefix) {
    return false;
  }
  size_t argc = 0;
  size_t max_arg = 0;
  auto shape = [&](size_t off, size_t len) {
    const std::string_view view(in_.data() + off, len);
    reframer_.reset();
    if (reframer_.next(view) != frame_status::complete) return;
    argc = std::max(argc, reframer_.argc());
    for (const arg_ref& a : reframer_.args()) max_arg = std::max(max_arg, a.len);
  };
  if (e.tx >= 0 && e.kind == reply_kind::tx_exec) {
    // A held block's commands, sent with its EXEC: any of them may be the one.
    for (const seg& s : txs_[e.tx].cmds) shape(s.off, s.len);
  } else if (e.req_len > 0) {
    shape(e.req_off, e.req_len);
  }
  return err::refuses_forwarded_request(reply, argc, max_arg);
}

void session_core::refused(size_t b, const entry& e) {
  // The server closes the connection after it, having run nothing it read after it: so
  // does the proxy for this client, which hears nothing more. On a shared connection the
  // upstream hears of it (link_refused): the other clients' commands behind it go again.
  links_[b].refused_seq = e.seq;
  stop_input_ = true;
  close_when_done_ = true;
  drop_after(e.seq);
}

void session_core::on_subscribe_confirmation(std::string_view reply, const reply_info& info) {
  if (info.n_el < 3 || info.el[2].type != ':') return;
  const std::string_view name = info.element(reply, 0);
  const int64_t n = info.el[2].integer;
  // The count is the client's total: channels + patterns, or shard channels alone.
  if (name == "subscribe" || name == "unsubscribe") {
    sub_channels_ = std::max<int64_t>(0, n - sub_patterns_);
  } else if (name == "psubscribe" || name == "punsubscribe") {
    sub_patterns_ = std::max<int64_t>(0, n - sub_channels_);
  } else {
    sub_shard_ = std::max<int64_t>(0, n);
  }
}

void session_core::on_reply(size_t b, std::string_view reply, const reply_info& info) {
  link& l = links_[b];
  l.refused_seq = UINT64_MAX;  // (set again below if this reply refuses its request)
  if (l.inflight.empty() || out_of_band(b, reply, info)) {
    if (info.is_push() || info.type == '*') {
      on_subscribe_confirmation(reply, info);
    }
    out_.append(reply);
    return;
  }
  const inflight_item it = l.inflight.front();
  if (info.is_error() && rt().cluster() && redirected(b, it, first_line(reply))) return;
  const bool loading = info.is_error() && err::is_loading_error(first_line(reply));
  if (it.what == detail::item_swallow || it.what == detail::item_replay) {
    // The proxy's own commands (a replayed SELECT, a held block's MULTI and commands):
    // they decide no client command's retry, except through the block's EXEC.
    l.inflight.pop_front();
    if (it.part == detail::tag_wait_sync && info.is_error() &&
        (reply.rfind("-NOPERM", 0) == 0 || reply.rfind("-ERR unknown command", 0) == 0)) {
      // Refused for good (a user without channels, a server without SPUBLISH); a
      // passing error (-BUSY, -LOADING) tries again next time.
      wait_sync_refused_ = true;
    }
    if (it.what == detail::item_swallow && info.is_error() && it.seq >= head_seq_ &&
        it.seq < head_seq_ + pipe_.size() && refuses(at(it.seq), reply, info)) {
      // A command of a held block, refused: the server closes the connection, and the
      // block's EXEC never runs. The client (which heard +QUEUED from the proxy) hears the
      // refusal in EXEC's place, then nothing more.
      entry& e = at(it.seq);
      refused(b, e);
      deliver(e, reply);
      return;
    }
    if (loading) env_.report_loading(b);
    if (loading && it.what == detail::item_swallow && it.seq >= head_seq_ &&
        it.seq < head_seq_ + pipe_.size()) {
      at(it.seq).saw_loading = true;
    }
    return;
  }
  l.served = true;
  if (it.what == detail::item_part) {
    l.inflight.pop_front();
    // The command may have been answered already (an expired wait, another part's error).
    if (it.seq < head_seq_) {
      if (!loading) on_ran(b);
      return;
    }
    entry& e = at(it.seq);
    if (!loading && !order_free(e.ckind)) on_ran(b);
    const bool deciding = e.state == entry_state::sent ||
                          (e.state == entry_state::held && e.hold == hold_reason::confirm);
    if (loading && e.retry && !client_gone_ && deciding && l.silent_seq <= e.seq) {
      begin_wait(e, b, it, reply);
      return;
    }
    if (loading) env_.report_loading(b);
    if (refuses(e, reply, info)) refused(b, e);
    on_part_reply(e, it.part, reply);
    return;
  }
  entry& e = at(it.seq);
  if (e.kind == reply_kind::tx_exec && e.saw_redirect && info.is_error()) {
    // A command of the block was elsewhere (or moving): the server aborted the block;
    // send it whole again, where -MOVED said, or after a pause.
    l.inflight.pop_front();
    e.saw_redirect = false;
    txs_[e.tx].multi_sent = false;
    if (++e.redirects > 16) {
      deliver(e, reply);
    } else if (e.force_backend >= 0) {
      hold(e, hold_reason::order);
      resume();
    } else {
      hold_retry(e);
    }
    return;
  }
  // The server did not run it (or aborted a held transaction because of it).
  const bool not_run = loading || (e.kind == reply_kind::tx_exec && e.saw_loading && info.is_error());
  if (!not_run && !order_free(e.ckind)) on_ran(b);
  // A command sent after it that answers nothing (CLIENT REPLY OFF/SKIP) may have run.
  if (not_run && e.retry && !client_gone_ && l.silent_seq <= e.seq) {
    l.inflight.pop_front();
    begin_wait(e, b, it, reply);
    return;
  }
  if (loading) env_.report_loading(b);
  if (e.kind == reply_kind::subscribe && !info.is_error() && info.n_el >= 3 &&
      is_confirmation(info.element(reply, 0))) {
    on_subscribe_confirmation(reply, info);
    // Confirmations leave as they come: a subscribe entry is always the head by then.
    out_.append(reply);
    if (--e.expect > 0) return;
    l.inflight.pop_front();
    deliver(e, {});
    return;
  }
  l.inflight.pop_front();
  if (replay_auth_.empty() && auth_inflight_ == 0) {
    // Does the server take this client as authenticated? (For the stricter limits it
    // puts on the requests of one that is not: see parse_input.) A connection opened
    // while no password was wanted stays authenticated; a new one is not, once one is.
    if (info.is_error()) {
      if (reply.substr(0, err::noauth_prefix.size()) == err::noauth_prefix) {
        env_.note_auth_required(b, true);
        auth_seen_ = auth_seen::refused;
      }
    } else if (e.ckind != command_kind::quit && e.ckind != command_kind::reset) {
      // (QUIT and RESET are answered before authentication too.)
      if (auth_seen_ != auth_seen::served) env_.note_auth_required(b, false);
      auth_seen_ = auth_seen::served;
    }
  }
  if (refuses(e, reply, info)) refused(b, e);
  if (reply == rep::queued) ++tx_queued_;
  if (e.ckind == command_kind::exec || e.ckind == command_kind::discard) {
    on_exec_reply(e.ckind == command_kind::exec ? reply : std::string_view{}, info);
  } else if (e.ckind == command_kind::multi) {
    tx_queued_ = 0;
    tx_state_.clear();
  }
  if (!info.is_error()) {
    record_state(e, reply);
    note_shared_reply(e);
  }
  if (e.kind == reply_kind::ping_bare && info.type == '$') {
    deliver(e, rep::pong);
  } else if (e.kind == reply_kind::own_name && !info.is_error()) {
    if (!has_name_) {
      deliver(e, resp3_ ? rep::null_resp3 : rep::null_bulk);
    } else {
      std::string r;
      write_to(r).bulk(client_name_);
      deliver(e, r);
    }
  } else {
    deliver(e, reply);
  }
}

void session_core::record_state(const entry& e, std::string_view reply) {
  switch (e.ckind) {
    case command_kind::select:
    case command_kind::auth:
    case command_kind::hello:
    case command_kind::client_setname:
    case command_kind::reset:
    case command_kind::monitor:
    case command_kind::client_tracking:
      break;
    default:
      return;
  }
  const std::string_view view(in_.data() + e.req_off, e.req_len);
  if (reply == rep::queued) {
    // Inside MULTI nothing has changed yet: EXEC's reply says whether it did (on_exec_reply).
    std::string copy;
    reframer_.reset();
    if (reframer_.next(view) != frame_status::complete) return;
    detail::encode_args(copy, detail::framed_args(reframer_, view));
    tx_state_.push_back(tx_state_cmd{tx_queued_ - 1, e.ckind, std::move(copy)});
    return;
  }
  apply_state(e.ckind, view);
}

void session_core::on_exec_reply(std::string_view reply, const reply_info& info) {
  // The block's SELECT, AUTH, HELLO, CLIENT SETNAME, RESET take effect with EXEC: each that
  // did not fail there is recorded now, so that a replay (a new connection, an unpin)
  // sets the db, user and protocol the client really has.
  std::vector<tx_state_cmd> cmds;
  cmds.swap(tx_state_);
  tx_queued_ = 0;
  if (cmds.empty() || info.type != '*' || info.count <= 0) return;
  const std::optional<resp_value> v = parse_resp(reply);
  if (!v) return;
  for (const tx_state_cmd& c : cmds) {
    if (c.index >= v->elems.size() || v->elems[c.index].is_error()) continue;
    apply_state(c.kind, c.args);
  }
}

void session_core::apply_state(command_kind kind, std::string_view view) {
  reframer_.reset();
  if (reframer_.next(view) != frame_status::complete) return;
  const detail::framed_args a(reframer_, view);
  switch (kind) {
    case command_kind::select:
      db_ = std::atoi(std::string(a.arg(1)).c_str());
      replay_select_.clear();
      if (db_ != 0) detail::encode_args(replay_select_, a);
      break;
    case command_kind::auth:
      replay_auth_.clear();
      detail::encode_args(replay_auth_, a);
      auth_key_ = replay_auth_;
      break;
    case command_kind::hello:
      // HELLO without a protocol version only reports: it changes nothing.
      if (a.argc() < 2) break;
      resp3_ = a.arg(1) == "3";
      // Replayed in its parts: its AUTH as the latest AUTH that succeeded (first, as a
      // later plain AUTH would be), `HELLO protover` alone, its name as CLIENT SETNAME.
      // Kept whole, a later HELLO without AUTH dropped the user, and a later AUTH was
      // undone by the HELLO replayed after it.
      replay_hello_.clear();
      write_to(replay_hello_).array(2).bulk("HELLO").bulk(a.arg(1));
      for (size_t i = 2; i < a.argc(); ++i) {
        if (policy::iequals_lower(a.arg(i), "auth") && i + 2 < a.argc()) {
          auth_key_.clear();
          write_to(auth_key_).array(3).bulk("AUTH").bulk(a.arg(i + 1)).bulk(a.arg(i + 2));
          replay_auth_ = auth_key_;
          i += 2;
        } else if (policy::iequals_lower(a.arg(i), "setname") && i + 1 < a.argc()) {
          client_name_.assign(a.arg(i + 1));
          has_name_ = !client_name_.empty();
          // The latest name is the one replayed (after HELLO) on a new connection.
          replay_setname_.clear();
          if (has_name_) write_to(replay_setname_).array(3).bulk("CLIENT").bulk("SETNAME").bulk(client_name_);
          ++i;
        }
      }
      break;
    case command_kind::client_setname:
      replay_setname_.clear();
      if (a.argc() == 3) {
        client_name_.assign(a.arg(2));
        has_name_ = !client_name_.empty();
      }
      // An empty name clears it: a new connection has none, nothing to replay (the
      // replayed HELLO carries no name).
      if (has_name_) detail::encode_args(replay_setname_, a);
      break;
    case command_kind::reset:
      auth_key_.clear();
      // The server takes the client as authenticated again only if no password is wanted.
      auth_seen_ = auth_seen::unknown;
      client_name_.clear();
      has_name_ = false;
      replay_auth_.clear();
      replay_hello_.clear();
      replay_select_.clear();
      replay_setname_.clear();
      db_ = 0;
      resp3_ = false;
      sub_channels_ = sub_patterns_ = sub_shard_ = 0;
      monitor_ = false;
      tracking_ = false;
      // CLIENT REPLY state was decided when RESET was (decide_reply): a CLIENT REPLY sent
      // after it may already have moved it.
      break;
    case command_kind::monitor:
      monitor_ = true;
      break;
    case command_kind::client_tracking:
      tracking_ = a.argc() >= 3 && policy::iequals_lower(a.arg(2), "on");
      break;
    default:
      break;
  }
  update_key();
}

// ---------------------------------------------------------------- output in order

void session_core::deliver(entry& e, std::string_view reply) {
  if (e.quiet) reply = {};
  if (lim_.shared && e.kind != reply_kind::local) {
    reply_avg_ = reply_avg_ == 0 ? reply.size() : (reply_avg_ * 7 + reply.size()) / 8;
  }
  if (e.seq == head_seq_) {
    out_.append(reply);
    complete(e);
    pipe_.pop_front();
    ++head_seq_;
    flush_head();
  } else {
    e.rep_off = stash_.size();
    e.rep_len = reply.size();
    e.stored = true;
    stash_.append(reply);
    ++stash_live_;
    stash_bytes_ += reply.size();
    complete(e);
  }
}

void session_core::complete(entry& e) {
  e.state = entry_state::done;
  if (e.auth_counted) {
    e.auth_counted = false;
    --auth_inflight_;
  }
  if (e.sub_counted) {
    e.sub_counted = false;
    --sub_inflight_;
  }
  if (e.t0_us != 0 && e.kind != reply_kind::local) {
    env_.record_latency_us(static_cast<uint64_t>(std::max<int64_t>(0, batch_us_ - e.t0_us)));
  }
  if (e.merge >= 0) {
    merges_.release(e.merge);
    e.merge = -1;
  }
  if (e.tx >= 0) {
    free_tx(e.tx);
    e.tx = -1;
  }
  if (e.own_fence != 0) {
    const uint64_t id = e.own_fence;
    e.own_fence = 0;
    env_.flush_done(id);
  }
  if (e.seq == key_wait_seq_) {
    // The connection key is decided (record_state has seen a success): what waited goes.
    key_wait_seq_ = UINT64_MAX;
    key_target_set_ = false;
    waits_changed_ = true;
  }
}

void session_core::flush_head() {
  while (!pipe_.empty() && pipe_.front().state == entry_state::done) {
    entry& h = pipe_.front();
    if (h.stored) {
      // A protocol error read behind held commands: every command before it is decided
      // now, and so is whether CLIENT REPLY silences it.
      if (!(h.protocol_error && (reply_off_ || reply_skip_next_))) {
        out_.append(stash_, h.rep_off, h.rep_len);
      }
      stash_bytes_ -= h.rep_len;
      if (--stash_live_ == 0) stash_.clear();
    }
    pipe_.pop_front();
    ++head_seq_;
  }
}

void session_core::after_completion() {
  // A command that must be the oldest unanswered one (pub/sub in slots mode, replication),
  // that waited for its shared connection to drain, or that waited behind a connection-key
  // change now answered: it goes now.
  if (held_ > 0 && !pipe_.empty() && pipe_.front().state == entry_state::held) {
    const hold_reason h = pipe_.front().hold;
    // Only when resume() can release it: resume() ends here again, so a front it must
    // leave held (an output over its limit, a connection-key change still unanswered)
    // would otherwise loop for ever.
    const bool blocked = (lim_.shared && output_over_limit()) ||
                         (key_wait_seq_ != UINT64_MAX && pipe_.front().seq > key_wait_seq_);
    if (!blocked && (h == hold_reason::barrier || (lim_.shared && h == hold_reason::order) ||
                     (h == hold_reason::drain && links_quiet()))) {
      resume();
      return;
    }
  } else if (lim_.shared && held_ > 0 && !output_over_limit() && key_wait_seq_ == UINT64_MAX) {
    // Commands held past the in-flight cap go once half of those in flight are answered:
    // the shared connection gets them in batches, not one per reply, and never runs dry.
    const size_t half = std::min(pipe_.size(), inflight_cap() / 2);
    for (size_t i = 0; i < half; ++i) {
      const entry& e = pipe_[i];
      if (e.state != entry_state::held) continue;
      if (e.hold == hold_reason::order) {
        resume();
        return;
      }
      break;
    }
  }
  check_fence_drained();
  // Everything answered: the input buffer starts over at 0, with no copying.
  if (pipe_.empty() && parse_pos_ == in_len_ && tx_floor_ == SIZE_MAX && in_pins_ == 0) {
    const bool queued = std::any_of(links_.begin(), links_.end(), [](const link& l) {
      return std::any_of(l.out.begin(), l.out.end(), [](const seg& s) { return !s.gen; });
    });
    // The buffer itself is only shrunk when the next read is set up: the shell may be
    // reading into it right now.
    if (!queued) in_len_ = parse_pos_ = 0;
  }
  if (held_ == 0 && watching_) {
    watching_ = false;
    env_.unwatch(this);
  }
}

bool session_core::output_over_limit() const {
  // Stashed replies already moved on to out_ stay in stash_ until it empties: only the
  // bytes still waiting for their turn count.
  return out_.size() + writing_.size() + stash_bytes_ >= lim_.client_output;
}

std::string_view session_core::take_client_output() {
  writing_.swap(out_);
  return writing_;
}

void session_core::client_output_done() {
  writing_.clear();
  release_if_big(writing_);
  if (out_.empty()) release_if_big(out_);
  if (output_over_limit()) return;
  // Shared links: requests held back while the output was over its limit go now.
  if (lim_.shared && held_ > 0) resume();
  // Requests read while the output was over its limit are decided now.
  if (parse_pos_ < in_len_ && !output_over_limit()) parse_input();
}

bool session_core::finished() const {
  if (eof_ && !client_gone_) return eof_done();
  return (client_gone_ && !lingering()) || (close_when_done_ && pipe_.empty() && out_.empty());
}

bool session_core::on_client_eof() {
  if (client_gone_ || subscribed() || monitor_ || tunnel_) return false;
  // A write the server postpones during a CLIENT PAUSE is dropped, direct, when the
  // client goes: on a dedicated connection closing it does the same. Reads still run.
  const bool paused = env_.pause_in_force();
  for (size_t i = 0; i < pipe_.size(); ++i) {
    const entry& e = pipe_[i];
    if (e.exempt) return false;
    if (paused && e.state != entry_state::done && (e.cflags & policy::flag_readonly) == 0) {
      return false;
    }
  }
  if (loading_held()) return false;
  eof_ = true;
  return true;
}

bool session_core::loading_held() const {
  // Commands queued while a backend loads are dropped with the client, as before: they
  // have not run (direct, they would have been refused with -LOADING), and they could
  // wait for minutes. Holds that end by themselves soon (order, a flush fence) stay.
  for (size_t i = 0; i < pipe_.size(); ++i) {
    const entry& e = pipe_[i];
    // (Not `confirm`: a -LOADING answer waiting for the prober's verdict is delivered
    // if the backend does not load, as a script's own LOADING error is, direct.)
    if (e.state == entry_state::held &&
        (e.hold == hold_reason::loading || e.hold == hold_reason::retry)) {
      return true;
    }
  }
  return false;
}

bool session_core::eof_done() const {
  // After the client's end of file: everything it sent is parsed (what is left is an
  // incomplete command), answered, written to the client, and its bytes to the backends
  // are written too (CLIENT REPLY OFF answers a command before it is sent). A command
  // sent back to wait for a loading backend after the EOF goes with the client.
  if (eof_abort_ || loading_held()) return true;
  if (!pipe_.empty() || !out_.empty()) return false;
  if (parse_pos_ < in_len_ && output_over_limit()) return false;
  for (const link& l : links_) {
    if (!l.out.empty() || !l.writing.empty()) return false;
  }
  return true;
}

void session_core::on_client_closed(bool final) {
  if (!client_gone_) {
    client_gone_ = true;
    stop_input_ = true;
    waits_.clear();
    kept_.clear();
    kept_live_ = 0;
    if (watching_) {
      watching_ = false;
      env_.unwatch(this);
    }
  }
  // Queued work is dropped here and never reaches a backend (a lingering flush sent back
  // to wait was admitted again, hence on every call).
  for (size_t i = 0; i < pipe_.size(); ++i) release_admission(pipe_[i]);
  // Fences no longer wait for what will never be sent; what is on the wire still counts
  // until it is answered (the shell lingers for it), unless the session is really gone.
  for (fence_mark& f : fences_) {
    if (f.reported || (!final && !fence_drained(f))) continue;
    f.reported = true;
    env_.session_drained(f.id);
  }
  // A flush not yet sent is never sent: its fence lifts now. One on the wire keeps the
  // fence until its reply (complete()) or its link's failure; the shell lingers for it.
  for (size_t i = 0; i < pipe_.size(); ++i) {
    entry& e = pipe_[i];
    if (e.own_fence == 0 || (!final && e.state == entry_state::sent)) continue;
    const uint64_t id = e.own_fence;
    e.own_fence = 0;
    env_.flush_done(id);
  }
}

}  // namespace respfence::proxy

// session_core: requests in, decisions made (design.md §5). The other parts of the class:
// session/buffers.cpp (input buffer), session/links.cpp (backend links),
// session/replies.cpp (replies, output), session/holds.cpp (held commands, resume),
// session/tx.cpp (MULTI/EXEC), session/sharded.cpp (split and fan-out),
// session/fence.cpp (flush fence, shutdown), session/cluster.cpp (redirections).

#include "proxy/session/session_core.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "proxy/resp/errors.hpp"
#include "proxy/resp/resp_writer.hpp"
#include "proxy/session/session_internal.hpp"

namespace respfence::proxy {

using policy::backend_state;
using policy::command_kind;
using policy::decision;

namespace {
// WAIT numreplicas timeout, WAITAOF numlocal numreplicas timeout: whether it waits for
// anything (with nothing to count, the server answers at once whatever the offset).
bool wait_counts_replicas(const routing::arg_source& args) {
  int64_t n = 0;
  if (args.argc() >= 2 && detail::parse_i64(args.arg(1), n) && n > 0) return true;
  return args.argc() >= 3 && policy::iequals_lower(args.arg(0), "waitaof") &&
         detail::parse_i64(args.arg(2), n) && n > 0;
}

// A command with the table's blocking flag that may hold its connection: XREAD and
// XREADGROUP only with BLOCK. (A BLPOP on a list that has an element does not block
// either, which only the server knows: README.)
bool may_block(std::uint32_t cflags, const routing::arg_source& args) {
  if ((cflags & policy::flag_blocking) == 0) return false;
  if (!policy::iequals_lower(args.arg(0), "xread") &&
      !policy::iequals_lower(args.arg(0), "xreadgroup")) {
    return true;
  }
  // [GROUP group consumer] [COUNT n] [BLOCK ms] [NOACK] STREAMS key ... id ...: names and
  // numbers are skipped, not read as options (a group may be called "streams").
  for (size_t i = 1; i < args.argc();) {
    const std::string_view a = args.arg(i);
    if (policy::iequals_lower(a, "block")) return true;
    if (policy::iequals_lower(a, "streams")) return false;  // keys and ids follow
    i += policy::iequals_lower(a, "group") ? 3 : policy::iequals_lower(a, "count") ? 2 : 1;
  }
  return false;
}
}  // namespace

const char* to_string(entry_state s) {
  switch (s) {
    case entry_state::held:
      return "held";
    case entry_state::sent:
      return "sent";
    case entry_state::done:
      return "done";
  }
  return "?";
}

const char* to_string(reply_kind k) {
  switch (k) {
    case reply_kind::pass:
      return "pass";
    case reply_kind::own_name:
      return "own_name";
    case reply_kind::ping_bare:
      return "ping_bare";
    case reply_kind::subscribe:
      return "subscribe";
    case reply_kind::tx_exec:
      return "tx_exec";
    case reply_kind::merge:
      return "merge";
    case reply_kind::local:
      return "local";
  }
  return "?";
}

const char* to_string(hold_reason r) {
  switch (r) {
    case hold_reason::none:
      return "none";
    case hold_reason::order:
      return "order";
    case hold_reason::loading:
      return "loading";
    case hold_reason::fence:
      return "fence";
    case hold_reason::flush:
      return "flush";
    case hold_reason::barrier:
      return "barrier";
    case hold_reason::retry:
      return "retry";
    case hold_reason::confirm:
      return "confirm";
    case hold_reason::drain:
      return "drain";
  }
  return "?";
}

const char* to_string(counter c) {
  switch (c) {
    case counter::forwarded:
      return "forwarded";
    case counter::queued:
      return "queued";
    case counter::rejected:
      return "rejected";
    case counter::rewritten:
      return "rewritten";
    case counter::retried:
      return "retried";
    case counter::expired:
      return "expired";
    case counter::count_:
      break;
  }
  return "?";
}

namespace detail {

bool is_subscribe_kind(policy::command_kind k) {
  switch (k) {
    case command_kind::subscribe:
    case command_kind::psubscribe:
    case command_kind::ssubscribe:
    case command_kind::unsubscribe:
    case command_kind::punsubscribe:
    case command_kind::sunsubscribe:
      return true;
    default:
      return false;
  }
}

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

const policy::command_entry* lookup(const policy::policy_table& pol,
                                    const routing::arg_source& args) {
  if (args.argc() == 0) return nullptr;
  const policy::command_entry* cmd = pol.commands().find(args.arg(0));
  if (cmd != nullptr && cmd->container && args.argc() >= 2) {
    // An unknown subcommand is the server's to answer: treat it as unknown.
    return pol.commands().find_sub(*cmd, args.arg(1));
  }
  return cmd;
}

}  // namespace detail

using detail::framed_args;
using detail::is_subscribe_kind;

session_core::session_core(session_env& env, limits lim) : env_(env), lim_(lim) {
  grow_links(rt().backends());
}

void session_core::grow_links(size_t n) {
  const size_t old = links_.size();
  if (n <= old) return;
  links_.resize(n);
  // A replica's connections say READONLY first: they are never shared.
  for (size_t b = old; b < n; ++b) links_[b].shared = lim_.shared && !rt().is_replica(b);
}

session_core::~session_core() { on_client_closed(); }

// ---------------------------------------------------------------- client input

bool session_core::wants_client_read() const {
  if (client_gone_ || stop_input_ || shutting_down_ || eof_) return false;
  if (tunnel_) return links_[tunnel_link_].gen.size() < lim_.input_window;
  // Reading goes on while the output is over its limit (only forwarding stops), so a
  // client that writes its whole pipeline before it reads a reply is never stuck in its
  // own write. Past the input window of unanswered requests the client waits in its
  // socket buffer. A single request bigger than the window is still read to its end.
  if (in_len_ - input_floor() > lim_.input_window && framer_.bytes_needed_hint() == 0) {
    return false;
  }
  return in_len_ < in_.size() || in_pins_ == 0;
}

void session_core::on_client_data(size_t n) {
  touched_ = true;
  if (tunnel_) {
    tunnel_client_data(n);
    return;
  }
  if (read_at_ != in_len_) std::memmove(in_.data() + in_len_, in_.data() + read_at_, n);
  in_len_ += n;
  batch_us_ = detail::now_us();
  parse_input();
}

void session_core::parse_input() {
  // Requests are not decided while the client's replies are over the output limit: they
  // wait, read but unparsed, until it reads (client_output_done() parses again).
  while (!stop_input_ && parse_pos_ < in_len_ && !output_over_limit()) {
    const std::string_view view(in_.data() + parse_pos_, in_len_ - parse_pos_);
    // The server's limits for a client that has not authenticated where a password is
    // wanted (10 arguments of 16 KB), checked at each header as the server does: such a
    // client cannot make the proxy buffer a big request either. Not while an AUTH or
    // HELLO of its own is unanswered: the server reads what follows it authenticated.
    framer_.set_unauthenticated(
        replay_auth_.empty() && auth_inflight_ == 0 &&
        (auth_seen_ == auth_seen::refused ||
         (auth_seen_ == auth_seen::unknown && env_.auth_required())));
    const frame_status st = framer_.next(view);
    if (st == frame_status::need_more) break;
    if (st == frame_status::error) {
      // The server answers the error after everything before it, then closes.
      entry& e = pipe_.emplace_back();
      e.seq = next_seq_++;
      e.req_off = parse_pos_;
      e.t0_us = batch_us_;
      stop_input_ = true;
      close_when_done_ = true;
      // The server's protocol error is silenced under CLIENT REPLY OFF/SKIP too. With
      // nothing held, every command before it is decided, and so is the client's reply
      // mode; else that is known in its turn (flush_head).
      e.protocol_error = true;
      e.quiet = held_ == 0 && (reply_off_ || reply_skip_next_);
      const std::string reply = e.quiet ? std::string() : framer_.error_reply();
      if (held_ > 0) {
        // Keep it in order behind held commands: its answer is all it needs.
        e.kind = reply_kind::local;
        e.state = entry_state::done;
        e.stored = true;
        e.rep_off = stash_.size();
        e.rep_len = reply.size();
        stash_ += reply;
        ++stash_live_;
        stash_bytes_ += reply.size();
      } else {
        answer_local(e, reply);
      }
      framer_.reset();
      break;
    }
    const size_t len = framer_.consumed();
    if (st == frame_status::complete) accept_request(parse_pos_, len, view);
    parse_pos_ += len;
  }
  after_completion();
}

void session_core::accept_request(size_t off, size_t len, std::string_view view) {
  entry& e = pipe_.emplace_back();
  e.seq = next_seq_++;
  e.req_off = off;
  e.req_len = len;
  e.t0_us = batch_us_;
  const framed_args args(framer_, view);
  if (args.argc() > 0 && (policy::iequals_lower(args.arg(0), "auth") ||
                          policy::iequals_lower(args.arg(0), "hello"))) {
    e.auth_counted = true;  // (parse_input: the limits of a client not authenticated)
    ++auth_inflight_;
  }
  if (args.argc() > 0 && policy::iequals_lower(args.arg(0), "quit")) {
    // Nothing after QUIT is read, as with the server.
    stop_input_ = true;
  }
  // Shared mode: past inflight_cap() requests in flight, or behind a SELECT/AUTH/HELLO/RESET
  // whose answer decides the connection key, a request waits.
  if (held_ > 0 || key_wait_seq_ != UINT64_MAX || (lim_.shared && pipe_.size() > inflight_cap())) {
    e.queued_at = env_.now_ms();  // (its age, should it wait for a loading backend)
    hold(e, hold_reason::order);
    admit_in_order(e, args);
    return;
  }
  dispatch(e, args);
}

// ---------------------------------------------------------------- decisions

bool session_core::dispatch(entry& e, const routing::arg_source& args) {
  const policy::policy_table& pol = env_.policy();
  const policy::command_entry* cmd = detail::lookup(pol, args);
  e.ckind = cmd ? cmd->kind : command_kind::plain;
  e.cflags = cmd ? cmd->flags : 0;
  const command_kind k = e.ckind;
  // Whether it belongs to a transaction, and whether the client hears its reply, are
  // decided once, when it first arrives in turn: a command sent again after LOADING never
  // joins a MULTI the client opened after it, nor falls under a later CLIENT REPLY.
  if (!e.decided) {
    if (k == command_kind::client_reply && !resp3_ && !tx_open_ && e.seq != head_seq_ &&
        (subscribed() || sub_inflight_ > 0)) {
      // Whether a RESP2 connection is in subscribed context (where the server refuses
      // CLIENT REPLY) is known for sure once every confirmation before it has come.
      hold(e, hold_reason::barrier);
      return false;
    }
    e.decided = true;
    e.in_tx = tx_open_ || k == command_kind::multi;
    decide_reply(e, args);
  }

  if (k == command_kind::quit) {
    stop_input_ = true;
    close_when_done_ = true;
    // Direct, the server has dropped the connection by the time the client reads +OK (a
    // test of CLIENT TRACKING's redirection relies on it): send QUIT on the open link.
    if (!rt().sharded() && !links_.empty() && !links_[0].shared &&
        links_[0].state == link::conn::open) {
      send(e, 0, args);
      return true;
    }
    answer_local(e, rep::ok);
    return true;
  }
  if (shutting_down_) {
    answer_local(e, err::shutting_down);
    return true;
  }

  const policy::rule& ru = cmd ? pol.rule_for(*cmd) : pol.unknown_rule();
  // Held again (never shown) if the server says -LOADING: what the policy queues, and
  // what is loading-safe (it was only forwarded because it could be).
  e.retry = ru.act == policy::action::queue || (ru.loading_safe && !ru.overridden);
  e.timeout_ms = ru.timeout_ms;

  const routing::router& router = rt();
  if (links_.size() < router.backends()) grow_links(router.backends());
  const routing::route r = router.decide(cmd, args, keys_);
  if (r.kind == routing::route_kind::crossslot) {
    answer_local(e, err::crossslot);
    return true;
  }
  if (r.rule != nullptr && refuse_sharded(e, r)) return true;
  size_t b = r.backend;
  // The fence is the primary's: a read that may go to its replica waits for it too.
  const size_t primary = b;
  if (router.replica_reads() && r.kind == routing::route_kind::backend && !keys_.empty() &&
      (e.cflags & policy::flag_readonly) != 0 && !tx_open_ && e.force_backend < 0) {
    // A read may go to the shard's replica, if it is ready (not loading a resync).
    const int32_t rep = router.replica_for(routing::key_slot(args.arg(keys_[0])));
    if (rep >= 0 && static_cast<size_t>(rep) < links_.size() &&
        policy::serving(env_.view(static_cast<size_t>(rep)).state)) {
      b = static_cast<size_t>(rep);
    }
  }
  if (e.force_backend >= 0 && r.kind == routing::route_kind::backend) {
    // Cluster: where -MOVED or -ASK said the key is, whatever the map says yet
    // (redirected() has made room for that link).
    b = static_cast<size_t>(e.force_backend);
  }
  e.backend = static_cast<uint16_t>(b);
  if (e.over_bound && !e.in_tx) {
    // It arrived behind held commands while the queue was full (admit_in_order).
    answer_local(e, env_.view(b).loading_error);
    env_.count(b, counter::expired);
    return true;
  }

  if (lim_.shared && k == command_kind::multi && !tx_open_ &&
      !shared_prepare(e, cmd, args, b, router.sharded())) {
    return false;
  }
  if (e.in_tx) {
    if (lim_.shared && k != command_kind::multi) note_pin_in_tx(cmd);
    return dispatch_tx(e, args, cmd, r, ru);
  }
  if (lim_.shared) {
    if (!shared_prepare(e, cmd, args, b, r.kind == routing::route_kind::fanout)) return false;
    if (links_[b].shared && answer_client_name(e, args)) return true;
  }
  if (k == command_kind::watch) watch_backend_ = static_cast<int32_t>(b);
  if (k == command_kind::unwatch || k == command_kind::exec || k == command_kind::discard) {
    watch_backend_ = -1;
  }
  if (k == command_kind::replicate) {
    if (router.sharded()) {
      answer_local(e, router.cluster() ? err::replication_cluster : err::replication_slots);
      return true;
    }
    // The stream starts once everything before it is answered.
    if (e.seq != head_seq_) {
      hold(e, hold_reason::barrier);
      return false;
    }
    start_tunnel(e, b);
    return true;
  }
  if (r.kind != routing::route_kind::backend) return dispatch_sharded(e, args, ru, r);
  // Pub/sub confirmations come as a stream on one link: in slots mode, with replies
  // due from other links, such a command waits until it is the oldest unanswered one.
  if (router.sharded() && e.seq != head_seq_ && is_subscribe_kind(k)) {
    hold(e, hold_reason::barrier);
    return false;
  }

  if (policy::is_flush_kind(k) && !e.fence_passed) {
    const char* why = k == command_kind::swapdb ? "swapdb_through_proxy" : "flush_through_proxy";
    if (!start_flush(e, {b}, why)) return false;
  }

  if (fenced(e, b) || (primary != b && fenced(e, primary))) {
    hold(e, hold_reason::fence);
    return false;
  }
  const backend_view& v = env_.view(b);
  if (policy::serving(v.state)) {
    send(e, b, args);
    env_.count(b, counter::forwarded);
    return true;
  }
  // The server answers an arity error at once, loading or not: let it.
  if (cmd != nullptr && !cmd->arity_ok(args.argc())) {
    send(e, b, args);
    env_.count(b, counter::forwarded);
    return true;
  }
  switch (policy::decide(loading_input(v, ru, k, args))) {
    case decision::forward:
      send(e, b, args);
      env_.count(b, counter::forwarded);
      return true;
    case decision::rewrite_ping:
      send_rewritten_ping(e, b, args);
      env_.count(b, counter::rewritten);
      return true;
    case decision::answer_pong:
      answer_local(e, detail::ping_answer(args.argc() >= 2, args.argc() >= 2 ? args.arg(1) : ""));
      env_.count(b, counter::rewritten);
      return true;
    case decision::queue:
      return hold_for_loading(e, b, ru.timeout_ms);
    case decision::reject:
      answer_local(e, v.loading_error);
      env_.count(b, counter::rejected);
      return true;
  }
  return true;
}

policy::decide_input session_core::loading_input(const backend_view& v, const policy::rule& ru,
                                                 command_kind k,
                                                 const routing::arg_source& args) const {
  policy::decide_input in;
  in.state = v.state;
  in.r = ru;
  // PING takes at most one argument: with more, the server answers LOADING (it is not
  // loading-safe) and its arity error only once it serves; never ECHO's answer.
  in.is_ping = k == command_kind::ping && args.argc() <= 2;
  in.ping_rewrite = env_.policy().config().ping_rewrite;
  in.echo_loading_safe = v.echo_loading_safe;
  // A SUBSCRIBE still unconfirmed counts: the server reads this PING subscribed.
  in.resp2_subscribed = !resp3_ && (subscribed() || sub_inflight_ > 0);
  return in;
}

void session_core::send(entry& e, size_t b, const routing::arg_source& args) {
  const command_kind k = e.ckind;
  reply_kind kind = reply_kind::pass;
  // CLIENT REPLY OFF/SKIP (decide_reply). A command whose success changes what the proxy
  // replays on a new connection (SELECT, AUTH, HELLO, CLIENT SETNAME, RESET) is answered
  // to the proxy all the same, so that a failure is never recorded as a success; the
  // client still hears nothing (e.quiet).
  const bool records = k == command_kind::select || k == command_kind::auth ||
                       k == command_kind::hello || k == command_kind::client_setname ||
                       k == command_kind::reset;
  const bool no_reply = e.quiet && !(records && !links_[b].server_multi);
  if (links_[b].shared && args.argc() == 2 && policy::iequals_lower(args.arg(0), "client") &&
      policy::iequals_lower(args.arg(1), "getname")) {
    kind = reply_kind::own_name;
  }
  // Inside MULTI the server answers +QUEUED, not confirmations.
  if (is_subscribe_kind(k) && !links_[b].server_multi) {
    kind = reply_kind::subscribe;
    if (args.argc() >= 2) {
      e.expect = static_cast<uint32_t>(args.argc() - 1);
    } else {
      // No arguments: one confirmation per subscription of that kind, at least one.
      const int64_t n = k == command_kind::unsubscribe    ? sub_channels_
                        : k == command_kind::punsubscribe ? sub_patterns_
                        : k == command_kind::sunsubscribe ? sub_shard_
                                                          : 1;
      e.expect = static_cast<uint32_t>(n > 0 ? n : 1);
    }
  }
  switch (k) {
    case command_kind::debug:
      // DEBUG RELOAD replaces the dataset with the RDB file's: a loading phase completes
      // (design.md §7), usually too fast for the prober to see. Like a flush, the epoch moves
      // before the command goes.
      if (args.argc() >= 2 && policy::iequals_lower(args.arg(1), "reload") &&
          !links_[b].server_multi) {
        env_.bump_epoch(b, "debug_reload_through_proxy");
      }
      break;
    case command_kind::multi:
      links_[b].server_multi = true;
      break;
    case command_kind::exec:
    case command_kind::discard:
      // Both end WATCH, but only inside MULTI ("EXEC without MULTI" leaves it).
      if (links_[b].server_multi) watch_active_ = false;
      links_[b].server_multi = false;
      break;
    case command_kind::reset:
      links_[b].server_multi = false;
      watch_active_ = false;
      watch_lost_ = false;
      break;
    case command_kind::watch:
      if (!links_[b].server_multi) {
        watch_active_ = true;
        watch_link_ = b;
      }
      break;
    case command_kind::unwatch:
      if (!links_[b].server_multi) {
        watch_active_ = false;
        watch_lost_ = false;
      }
      break;
    default:
      break;
  }
  if (links_[b].server_multi && k != command_kind::multi) e.retry = false;
  // A blocking command may wait forever (WAIT and WAITAOF too, without the table's
  // flag); pub/sub and MONITOR never finish. A flush fence cannot wait for them, and a
  // client's end of file ends them at once (on_client_eof).
  const bool waits =
      policy::iequals_lower(args.arg(0), "wait") || policy::iequals_lower(args.arg(0), "waitaof");
  e.exempt = (e.cflags & policy::flag_blocking) != 0 || kind == reply_kind::subscribe ||
             k == command_kind::monitor || monitor_ || waits;
  e.blocks =
      !links_[b].server_multi && (waits ? wait_counts_replicas(args) : may_block(e.cflags, args));
  if (eof_ && e.exempt && !links_[b].server_multi) {
    // Sent after the client's end of file (it was held, or parsed once the output
    // drained): direct, the server would block it and free the client at EOF, so
    // nothing of it blocks, no later push is popped for nobody, and nothing behind it
    // runs. Neither it nor anything after it is sent; the session closes (eof_done).
    eof_abort_ = true;
    stop_input_ = true;
  }
  if (eof_abort_) {
    e.state = entry_state::sent;  // with no reply to wait for: the session is closing
    e.backend = static_cast<uint16_t>(b);
    e.exempt = true;               // no fence waits for it
    return;
  }
  // The server must answer ASKING, and whatever the client waits for.
  if ((!no_reply && !answered_whatever_mode(b, e, args)) || e.asking) {
    expect_server_reply(b, e.seq);
  }
  link& l = ensure_link(b);
  note_shared_effects(e, l, args);  // pauses are noted in both models (on_client_eof)
  if (e.asking) {
    // -ASK: this one command goes to the importing node, announced by ASKING.
    send_gen(b, "*1\r\n$6\r\nASKING\r\n", detail::item_swallow, e.seq);
    e.asking = false;
  }
  e.force_backend = -1;
  if (waits && !l.shared && l.woff_behind && !l.server_multi && !rt().cluster() &&
      wait_counts_replicas(args) && !wait_sync_refused_ && !env_.pause_in_force()) {
    // The client's writes went on another connection (wait_sync): a write of no effect
    // first brings this connection's replication offset up to them. Not for a WAIT that
    // is answered at once anyway (0 replicas), nor under a CLIENT PAUSE the proxy knows
    // of (the write would wait for its end, the WAIT behind it).
    send_gen(b, detail::wait_sync, detail::item_swallow, e.seq, detail::tag_wait_sync);
    l.woff_behind = false;
    l.conn_wrote = true;
  } else if ((e.cflags & policy::flag_readonly) == 0 && !waits) {
    // Anything not read-only may have written (a script, a PUBLISH: what propagates).
    if (l.shared) {
      l.woff_behind = true;
    } else {
      l.woff_behind = false;  // its offset is past every earlier write's
      l.conn_wrote = true;
    }
  }
  std::vector<std::string_view> kept;
  if (l.shared && k == command_kind::hello && detail::hello_without_setname(args, kept)) {
    // A shared connection must not take a client's name: HELLO goes without SETNAME,
    // and the name is the proxy's to keep (record_state).
    const size_t start = l.gen.size();
    auto w = write_to(l.gen);
    w.array(static_cast<int64_t>(kept.size()));
    for (std::string_view a : kept) w.bulk(a);
    l.out.push_back(seg{true, start, l.gen.size() - start});
  } else {
    append_in(l, e.req_off, e.req_len);
  }
  const bool server_answers_it = server_answers(l, e, args);
  e.state = entry_state::sent;
  e.backend = static_cast<uint16_t>(b);
  e.kind = kind;
  if (e.is_flush) {
    for (uint8_t n = 0; n < e.flushes; ++n) env_.flush_sent(b);
  }
  if (no_reply) {
    // CLIENT REPLY OFF/SKIP: the server sends nothing back for this one. It may have run:
    // no earlier LOADING answer on this link may be sent again after it (silent_seq). Its
    // connection state is recorded now, since no reply will say it took effect.
    l.silent_seq = e.seq + 1;
    if (!l.server_multi) record_state(e, {});
    // The client's CLIENT REPLY went to another backend, or to a connection since lost:
    // this server connection answers all the same, and the answer is dropped.
    if (server_answers_it) push_item(l, inflight_item{e.seq, detail::item_swallow, 0});
    answer_local(e, {});
    return;
  }
  push_item(l, inflight_item{e.seq, detail::item_reply, 0});
}

void session_core::send_rewritten_ping(entry& e, size_t b, const routing::arg_source& args) {
  // ECHO is loading-safe; its answer is PING's for "PING msg", and +PONG for a bare PING.
  if (!e.quiet) expect_server_reply(b, e.seq);
  link& l = ensure_link(b);
  const size_t start = l.gen.size();
  detail::write_echo_for_ping(l.gen, args.argc() >= 2, args.argc() >= 2 ? args.arg(1) : "");
  l.out.push_back(seg{true, start, l.gen.size() - start});
  e.state = entry_state::sent;
  e.backend = static_cast<uint16_t>(b);
  e.kind = args.argc() >= 2 ? reply_kind::pass : reply_kind::ping_bare;
  e.retry = true;
  const bool server_answers_it = server_answers(l, e, args);
  if (e.quiet) {
    // CLIENT REPLY OFF/SKIP: the client gets nothing, as from PING (and what this
    // connection answers all the same is dropped: see send()).
    l.silent_seq = e.seq + 1;
    if (server_answers_it) push_item(l, inflight_item{e.seq, detail::item_swallow, 0});
    answer_local(e, {});
    return;
  }
  push_item(l, inflight_item{e.seq, detail::item_reply, 0});
}

void session_core::send_gen(size_t b, std::string_view bytes, uint8_t what, uint64_t seq,
                            uint16_t tag) {
  // What the proxy sends of its own (DISCARD, UNWATCH, MULTI, ASKING) is answered to it
  // alone, so the server connection must answer it, whatever CLIENT REPLY left there.
  const bool heard = expect_server_reply(b, seq);
  link& l = ensure_link(b);
  const size_t start = l.gen.size();
  l.gen.append(bytes);
  l.out.push_back(seg{true, start, bytes.size()});
  if (heard) push_item(l, inflight_item{seq, what, tag});
}

void session_core::append_in(link& l, size_t off, size_t len) {
  // Consecutive requests are consecutive bytes: one span for a whole pipeline.
  if (!l.out.empty() && !l.out.back().gen && l.out.back().off + l.out.back().len == off) {
    l.out.back().len += len;
  } else {
    l.out.push_back(seg{false, off, len});
  }
}

session_core::link& session_core::ensure_link(size_t b) {
  link& l = links_[b];
  l.wanted = true;
  return l;
}

void session_core::answer_local(entry& e, std::string_view reply) {
  // Under CLIENT REPLY OFF/SKIP (e.quiet) the server sends nothing, and neither does the
  // proxy for what it answers itself (a held MULTI's +OK, a LOADING error, a refusal):
  // deliver() drops it.
  e.kind = reply_kind::local;
  deliver(e, reply);
}

}  // namespace respfence::proxy

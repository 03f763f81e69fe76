// session_core: MULTI/EXEC. While the backend is ready a transaction passes through and
// the server answers every part of it. When a command of the block would have to wait
// (the backend loads, a flush fence is up, or the session is sharded), the proxy holds
// the rest of the block itself, answers +QUEUED as the server would, and decides the
// block as a whole at EXEC (design.md §5): a loading server never sees half a transaction.

#include <algorithm>
#include <climits>

#include "proxy/resp/errors.hpp"
#include "proxy/session/session_core.hpp"
#include "proxy/session/session_internal.hpp"

namespace respfence::proxy {

using policy::backend_state;
using policy::command_kind;

namespace {
constexpr std::string_view k_multi = "*1\r\n$5\r\nMULTI\r\n";
constexpr std::string_view k_discard = "*1\r\n$7\r\nDISCARD\r\n";
constexpr std::string_view k_unwatch = "*1\r\n$7\r\nUNWATCH\r\n";
}  // namespace

void session_core::free_tx(int32_t i) {
  tx_block& t = txs_[i];
  t.cmds.clear();
  t.exec_off = SIZE_MAX;
  t.exec_len = 0;
  t.multi_sent = false;
  t.backend = -1;
  t.slot = -1;
  t.crossslot = false;
  t.multi_backend = -1;
  t.broken = false;
  t.flushes = 0;
  t.watched = false;
  t.act = policy::action::forward;
  t.forwards_unsafe = false;
  t.timeout_ms = UINT32_MAX;
  txs_.release(i);
}

void session_core::reset_tx() {
  watch_backend_ = -1;
  tx_open_ = false;
  tx_deferred_ = false;
  tx_dirty_ = false;
  tx_aborted_ = false;
  tx_cur_ = -1;
  tx_floor_ = SIZE_MAX;
  tx_flushes_ = 0;
}

void session_core::end_watch(entry& e) {
  if (watch_active_) {
    send_gen(watch_link_, k_unwatch, detail::item_swallow, e.seq);
    watch_active_ = false;
  }
  watch_lost_ = false;
}

void session_core::answer_null_exec(entry& e) {
  // The WATCH of this transaction was lost with its connection: abort it as the server
  // aborts a transaction whose watched key was touched. A WATCH sent since then is ended
  // on the server too, as EXEC would.
  end_watch(e);
  answer_local(e, resp3_ ? rep::null_resp3 : rep::null_array);
}

void session_core::abandon_tx(entry& e) {
  tx_block& t = txs_[e.tx];
  // The server connection is inside MULTI: leave it clean for the next command.
  if (t.multi_sent && links_[e.backend].state == link::conn::open) {
    send_gen(e.backend, k_discard, detail::item_swallow, e.seq);
    links_[e.backend].server_multi = false;
  }
  free_tx(e.tx);
  e.tx = -1;
}

bool session_core::dispatch_tx(entry& e, const routing::arg_source& args,
                               const policy::command_entry* cmd, routing::route r,
                               const policy::rule& ru) {
  const command_kind k = e.ckind;
  size_t b = r.backend;
  if (!tx_open_) {
    // MULTI. While the backend is ready it goes to the server; otherwise the proxy holds
    // the block from the start.
    tx_open_ = true;
    tx_dirty_ = false;
    tx_aborted_ = false;
    const backend_view& v = env_.view(b);
    // A lost WATCH: the proxy holds the block, and its EXEC answers a null array.
    // A shared connection must never be inside one client's MULTI: the proxy holds the
    // block and sends it whole at EXEC (one batch, so nothing of another client comes
    // between its MULTI and its EXEC).
    if (rt().sharded() || links_[b].shared || !policy::serving(v.state) || fenced(e, b) ||
        watch_lost_) {
      tx_deferred_ = true;
      tx_cur_ = txs_.acquire();
      answer_local(e, rep::ok);
      return true;
    }
    send(e, b, args);
    env_.count(b, counter::forwarded);
    return true;
  }

  if (tx_aborted_) {
    // The backend connection broke inside MULTI: the server forgot the transaction.
    switch (k) {
      case command_kind::exec:
        if (tx_cur_ >= 0) free_tx(tx_cur_);
        reset_tx();
        end_watch(e);  // EXEC ends WATCH, aborted or not
        answer_local(e, err::execabort_previous_errors);
        break;
      case command_kind::discard:
        if (tx_cur_ >= 0) free_tx(tx_cur_);
        reset_tx();
        end_watch(e);
        answer_local(e, rep::ok);
        break;
      case command_kind::multi:
        answer_local(e, err::multi_nested);
        break;
      case command_kind::watch:
        answer_local(e, err::watch_inside_multi);
        break;
      case command_kind::reset:
        reset_tx();
        e.in_tx = false;  // RESET ends the transaction: decided as a command of its own
        return dispatch(e, args);
      default:
        answer_local(e, err::backend_lost);
    }
    return true;
  }

  if (k == command_kind::client_reply && cmd != nullptr && cmd->arity_ok(args.argc())) {
    // Redis 7.0 runs it inside EXEC, and EXEC's array then counts the replies it drops: a
    // malformed reply that desynchronises any client (valkey#1268). Valkey 9 refuses it
    // as a command not allowed in MULTI (valkey#1966, #2152); so does the proxy, and the
    // transaction fails at EXEC.
    tx_dirty_ = true;
    answer_local(e, err::not_allowed_in_multi);
    return true;
  }
  if (k == command_kind::reset) {
    // RESET ends the transaction here and on the server.
    if (tx_cur_ >= 0) free_tx(tx_cur_);
    reset_tx();
    e.in_tx = false;  // RESET ends the transaction: decided as a command of its own
    return dispatch(e, args);
  }

  if (!tx_deferred_) {
    switch (k) {
      case command_kind::exec:
        // EXEC runs the block: after a flush that came before it, and, if the block
        // holds a flush, under a fence of its own.
        if (fenced(e, b)) {
          hold(e, hold_reason::fence);
          return false;
        }
        if (tx_flushes_ > 0 && !tx_dirty_ && !e.fence_passed) {
          e.flushes = tx_flushes_;
          if (!start_flush(e, {b}, "flush_in_transaction")) return false;
        }
        if (tx_dirty_) {
          // A command of the block was rejected here; the server must not run the rest.
          send_gen(b, k_discard, detail::item_swallow, e.seq);
          links_[b].server_multi = false;
          reset_tx();
          answer_local(e, err::execabort_previous_errors);
          return true;
        }
        reset_tx();
        send(e, b, args);
        env_.count(b, counter::forwarded);
        return true;
      case command_kind::discard:
        reset_tx();
        send(e, b, args);
        return true;
      case command_kind::multi:
      case command_kind::watch:
        send(e, b, args);  // the server answers the error
        return true;
      default:
        break;
    }
    const backend_view& v = env_.view(b);
    const bool server_decides = cmd == nullptr || !cmd->arity_ok(args.argc());
    policy::action act = policy::action::forward;
    if (fenced(e, b)) {
      act = policy::action::queue;
    } else if (!policy::serving(v.state) && !server_decides) {
      act = ru.act;
    }
    switch (act) {
      case policy::action::forward:
        // A flush queued on the server runs at EXEC, which then raises the fence.
        if (policy::is_flush_kind(k) && cmd != nullptr && cmd->arity_ok(args.argc())) {
          ++tx_flushes_;
        }
        send(e, b, args);
        env_.count(b, counter::forwarded);
        return true;
      case policy::action::reject:
        // As the server does: the command fails, and EXEC will abort.
        tx_dirty_ = true;
        env_.count(b, counter::rejected);
        answer_local(e, v.loading_error);
        return true;
      case policy::action::queue:
        tx_deferred_ = true;
        tx_cur_ = txs_.acquire();
        txs_[tx_cur_].multi_sent = true;
        txs_[tx_cur_].multi_backend = static_cast<int32_t>(b);
        txs_[tx_cur_].flushes = tx_flushes_;
        break;
    }
  }

  // The proxy holds the block.
  switch (k) {
    case command_kind::multi:
      answer_local(e, err::multi_nested);
      return true;
    case command_kind::watch:
      answer_local(e, err::watch_inside_multi);
      return true;
    case command_kind::discard: {
      const bool sent = txs_[tx_cur_].multi_sent;
      const int32_t at_backend = txs_[tx_cur_].multi_backend;
      free_tx(tx_cur_);
      reset_tx();
      watch_lost_ = false;
      if (sent) {
        // The server's MULTI ends with the server's +OK (and its WATCH with it).
        send(e, static_cast<size_t>(at_backend), args);
      } else {
        end_watch(e);  // DISCARD ends WATCH: on the server too, where one is active
        answer_local(e, rep::ok);
      }
      return true;
    }
    case command_kind::exec: {
      tx_block& t = txs_[tx_cur_];
      if (rt().sharded()) {
        // The block runs where its keys are (and where WATCH looked), on one backend.
        const bool split = t.crossslot ||
                           (t.backend >= 0 && watch_backend_ >= 0 && t.backend != watch_backend_);
        if (split) {
          free_tx(tx_cur_);
          reset_tx();
          end_watch(e);
          answer_local(e, err::crossslot);
          return true;
        }
        b = t.backend >= 0      ? static_cast<size_t>(t.backend)
            : watch_backend_ >= 0 ? static_cast<size_t>(watch_backend_)
                                  : rt().primaries().front();
      }
      if (tx_dirty_) {
        if (t.multi_sent) {
          send_gen(static_cast<size_t>(t.multi_backend), k_discard, detail::item_swallow, e.seq);
          links_[static_cast<size_t>(t.multi_backend)].server_multi = false;
          if (watch_active_ && watch_link_ == static_cast<size_t>(t.multi_backend)) {
            watch_active_ = false;  // DISCARD ended it on the server
          }
        }
        end_watch(e);
        free_tx(tx_cur_);
        reset_tx();
        answer_local(e, err::execabort_previous_errors);
        return true;
      }
      if (watch_lost_) {
        free_tx(tx_cur_);
        reset_tx();
        answer_null_exec(e);
        return true;
      }
      // EXEC ends WATCH; if one is active, the block cannot be sent a second time after
      // a LOADING abort (the server forgot what it watched).
      t.watched = watch_active_;
      if (t.multi_sent) b = static_cast<size_t>(t.multi_backend);
      t.exec_off = e.req_off;
      t.exec_len = e.req_len;
      e.tx = tx_cur_;
      e.backend = static_cast<uint16_t>(b);
      // The entry now keeps the whole block's bytes alive.
      if (!t.cmds.empty()) {
        e.req_off = t.cmds.front().off;
        e.req_len = t.exec_off + t.exec_len - e.req_off;
      }
      reset_tx();
      return exec_held_tx(e, b);
    }
    default:
      return defer_command(e, args, cmd, r, ru);
  }
}

bool session_core::defer_command(entry& e, const routing::arg_source& args,
                                 const policy::command_entry* cmd, routing::route r,
                                 const policy::rule& ru) {
  tx_block& t = txs_[tx_cur_];
  if (rt().sharded()) {
    if (r.kind == routing::route_kind::split || r.kind == routing::route_kind::crossslot) {
      t.crossslot = true;
    } else if (r.kind == routing::route_kind::backend && !keys_.empty()) {
      if (t.backend < 0) {
        t.backend = r.backend;
      } else if (t.backend != r.backend) {
        t.crossslot = true;
      }
      if (rt().cluster()) {
        // A cluster node runs a transaction only if all of its keys share a slot.
        const int32_t s = routing::key_slot(args.arg(keys_[0]));
        if (t.slot < 0) {
          t.slot = s;
        } else if (t.slot != s) {
          t.crossslot = true;
        }
      }
    }
  }
  const policy::policy_table& pol = env_.policy();
  // The checks the server makes before it queues a command (server.c processCommand),
  // with its texts; a failure dirties the transaction.
  std::string error;
  if (cmd == nullptr && pol.learned() && args.argc() > 0) {
    const policy::command_entry* parent = pol.commands().find(args.arg(0));
    if (parent != nullptr && parent->container && args.argc() >= 2) {
      error = err::unknown_subcommand(parent->name, args.arg(1));
    } else if (parent == nullptr) {
      std::vector<std::string_view> rest;
      for (size_t i = 1; i < args.argc(); ++i) rest.push_back(args.arg(i));
      error = err::unknown_command(args.arg(0), rest.data(), rest.size());
    }
  } else if (cmd != nullptr && !cmd->arity_ok(args.argc())) {
    error = err::wrong_arity(cmd->name);
  } else if (cmd != nullptr && cmd->has(policy::flag_no_multi)) {
    error = std::string(err::not_allowed_in_multi);
  } else if (cmd != nullptr && policy::is_flush_kind(cmd->kind) && rt().sharded()) {
    error = std::string(err::flush_in_multi_sharded);
  }
  if (!error.empty()) {
    tx_dirty_ = true;
    answer_local(e, error);
    return true;
  }
  t.cmds.push_back(seg{false, e.req_off, e.req_len});
  tx_floor_ = std::min(tx_floor_, e.req_off);
  if (cmd != nullptr && policy::is_flush_kind(cmd->kind)) ++t.flushes;
  if (cmd != nullptr) {
    if (!ru.loading_safe || ru.overridden) {
      // The block waits as long as its most patient command, and fails fast if any
      // command of it would.
      if (ru.act == policy::action::reject) {
        t.act = policy::action::reject;
      } else if (ru.act == policy::action::queue && t.act != policy::action::reject) {
        t.act = policy::action::queue;
        t.timeout_ms = std::min(t.timeout_ms, ru.timeout_ms);
      } else if (ru.act == policy::action::forward) {
        t.forwards_unsafe = true;
      }
    }
  }
  answer_local(e, rep::queued);
  return true;
}

bool session_core::exec_held_tx(entry& e, size_t b) {
  tx_block& t = txs_[e.tx];
  if (t.watched && watch_lost_) {
    // The connection that held its WATCH broke while the block waited: never commit.
    free_tx(e.tx);
    e.tx = -1;
    answer_null_exec(e);
    return true;
  }
  if (t.broken) {
    // The connection that held the block's MULTI and first commands broke: the server
    // forgot them, and the rest must not run alone.
    free_tx(e.tx);
    e.tx = -1;
    answer_local(e, err::execabort_previous_errors);
    return true;
  }
  const backend_view& v = env_.view(b);
  // How long the block may wait for the backend, now and if it is sent back later.
  e.timeout_ms =
      t.timeout_ms == UINT32_MAX ? env_.policy().config().queue_timeout_ms : t.timeout_ms;
  if (fenced(e, b)) {
    hold(e, hold_reason::fence);
    return false;
  }
  if (t.flushes > 0 && !e.fence_passed) {
    e.flushes = t.flushes;
    if (!start_flush(e, {b}, "flush_in_transaction")) return false;
  }
  if (!policy::serving(v.state) && t.act != policy::action::forward) {
    if (t.act == policy::action::reject) {
      abandon_tx(e);
      env_.count(b, counter::rejected);
      // What the server says when EXEC itself is refused while loading (multi.c).
      std::string reply(err::execabort_because_prefix);
      reply += v.loading_error.substr(1);
      answer_local(e, reply);
      return true;
    }
    return hold_for_loading(e, b, e.timeout_ms);
  }
  link& l = ensure_link(b);
  if (!t.multi_sent) {
    send_gen(b, k_multi, detail::item_swallow, e.seq);
    t.multi_sent = true;
    t.multi_backend = static_cast<int32_t>(b);
  }
  // A MULTI sent under CLIENT REPLY OFF, before the block was held: inside it the server
  // answers none of the block, EXEC included, and nothing is waited for (the client is
  // under OFF too, and hears nothing, as direct).
  const bool heard = !(l.server_multi && l.server_reply_off);
  for (const seg& s : t.cmds) {
    append_in(l, s.off, s.len);
    if (heard) push_item(l, inflight_item{e.seq, detail::item_swallow, 0});
  }
  append_in(l, t.exec_off, t.exec_len);
  if (heard) push_item(l, inflight_item{e.seq, detail::item_reply, 0});
  l.server_multi = false;
  e.state = entry_state::sent;
  e.kind = reply_kind::tx_exec;
  e.backend = static_cast<uint16_t>(b);
  // After a LOADING abort the block goes again, as a single command would: when every
  // command of it may be queued or is loading-safe, and unless it ran under WATCH (EXEC
  // ended that). Under forward or reject the client gets the server's EXECABORT.
  e.retry = !t.watched && t.act != policy::action::reject && !t.forwards_unsafe;
  e.saw_loading = false;
  if (t.watched) watch_active_ = false;
  if (e.is_flush) {
    for (uint8_t n = 0; n < e.flushes; ++n) env_.flush_sent(b);
  }
  env_.count(b, counter::forwarded);
  if (!heard) {
    l.silent_seq = e.seq + 1;  // as send() does for a command with no reply
    answer_local(e, {});
  }
  return true;
}

}  // namespace respfence::proxy

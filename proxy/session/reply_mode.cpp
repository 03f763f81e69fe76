// session_core: CLIENT REPLY. Two states are kept apart: what the client hears (its
// OFF/SKIP, decided once per command in its order: entry::quiet), and what each server
// connection answers (link::server_reply_off/server_skip_next). They differ when the
// client's CLIENT REPLY went to another backend, or to a connection since lost: a new
// connection answers every command. The proxy drops what the client must not hear, and
// makes a silent connection answer before it waits on it.

#include "proxy/session/session_core.hpp"
#include "proxy/session/session_internal.hpp"

namespace respfence::proxy {

using policy::command_kind;
using detail::is_subscribe_kind;

namespace {

// The mode a CLIENT REPLY names; none for any other command (or a CLIENT REPLY of the
// wrong arity, which the server refuses without reading a mode).
enum class mode_arg { none, on, off, skip, bad };

mode_arg mode_of(command_kind k, const routing::arg_source& args) {
  if (k != command_kind::client_reply || args.argc() != 3) return mode_arg::none;
  const std::string_view m = args.arg(2);
  if (policy::iequals_lower(m, "on")) return mode_arg::on;
  if (policy::iequals_lower(m, "off")) return mode_arg::off;
  if (policy::iequals_lower(m, "skip")) return mode_arg::skip;
  return mode_arg::bad;
}

}  // namespace

void session_core::decide_reply(entry& e, const routing::arg_source& args) {
  // Redis (networking.c): OFF silences every reply, its own too; SKIP silences the next
  // command's, whatever that command is; ON answers +OK even when replies were off or
  // skipped; RESET turns replies on, then answers (unless a SKIP silences it).
  const command_kind k = e.ckind;
  const bool skipped = reply_skip_next_;
  reply_skip_next_ = false;
  e.quiet = reply_off_ || skipped;
  if (k == command_kind::reset) {
    reply_off_ = false;
    e.quiet = skipped;
    return;
  }
  if (is_subscribe_kind(k) && !tx_open_) {
    // Confirmations are pushes: the server sends them whatever CLIENT REPLY says (a SKIP
    // is used up all the same).
    e.quiet = false;
    if (!resp3_) {
      ++sub_inflight_;
      e.sub_counted = true;
    }
    return;
  }
  // Inside MULTI it is refused (dispatch_tx), and its error is silenced like any reply.
  const mode_arg mode = mode_of(k, args);
  if (mode == mode_arg::none || tx_open_) return;
  // Exact here: held (dispatch) until no SUBSCRIBE-family command before it is unanswered.
  if (!resp3_ && subscribed()) {
    // RESP2 subscribed context: the server refuses it ("only (P|S)SUBSCRIBE / ... are
    // allowed in this context"), and nothing changes.
    e.reply_refused = true;
    return;
  }
  switch (mode) {
    case mode_arg::on:
      reply_off_ = false;
      e.quiet = false;
      break;
    case mode_arg::off:
      reply_off_ = true;
      e.quiet = true;
      break;
    case mode_arg::skip:
      reply_skip_next_ = !reply_off_;
      e.quiet = true;
      break;
    case mode_arg::none:
    case mode_arg::bad:
      break;  // a bad mode: its syntax error is silenced as any reply
  }
}

bool session_core::answered_whatever_mode(size_t b, const entry& e,
                                          const routing::arg_source& args) const {
  // CLIENT REPLY ON is answered whatever came before it, RESET unless a SKIP is pending,
  // pub/sub confirmations always (they are pushes; inside MULTI they are +QUEUED).
  const link& l = links_[b];
  if (e.ckind == command_kind::reset) return !l.server_skip_next;
  if (is_subscribe_kind(e.ckind)) return !l.server_multi;
  return !e.reply_refused && mode_of(e.ckind, args) == mode_arg::on;
}

bool session_core::expect_server_reply(size_t b, uint64_t seq) {
  link& l = links_[b];
  if (!l.server_reply_off && !l.server_skip_next) return true;
  // Inside MULTI under OFF the server says nothing at all until replies are on again
  // (a CLIENT REPLY ON would only be queued), so nothing is waited for.
  if (l.server_multi) return !l.server_reply_off;
  link& el = ensure_link(b);
  const size_t start = el.gen.size();
  if (l.server_reply_off) {
    static constexpr std::string_view on = "*3\r\n$6\r\nCLIENT\r\n$5\r\nREPLY\r\n$2\r\nON\r\n";
    el.gen += on;
    el.out.push_back(seg{true, start, on.size()});
    push_item(el, inflight_item{seq, detail::item_swallow, 0});
  } else {
    // A SKIP meant for a command that went to another connection: a PING takes it here,
    // and the server answers that PING nothing.
    static constexpr std::string_view ping = "*1\r\n$4\r\nPING\r\n";
    el.gen += ping;
    el.out.push_back(seg{true, start, ping.size()});
  }
  el.server_reply_off = false;
  el.server_skip_next = false;
  return true;
}

bool session_core::server_answers(link& l, const entry& e, const routing::arg_source& args) {
  // Redis: OFF silences every reply, SKIP the next command's (whatever that command is,
  // queued in MULTI too); ON answers +OK even when replies were off; pub/sub
  // confirmations are pushes, sent whatever CLIENT REPLY says.
  const command_kind k = e.ckind;
  const bool silent = l.server_reply_off || l.server_skip_next;
  l.server_skip_next = false;
  if (l.server_multi) return !silent;
  if (is_subscribe_kind(k)) return true;
  if (e.reply_refused) return !silent;
  if (k == command_kind::reset) {
    const bool skipped = silent && !l.server_reply_off;
    l.server_reply_off = false;  // RESET turns replies on before it answers
    return !skipped;
  }
  switch (mode_of(k, args)) {
    case mode_arg::on:
      l.server_reply_off = false;
      return true;
    case mode_arg::off:
      l.server_reply_off = true;
      return false;
    case mode_arg::skip:
      l.server_skip_next = !l.server_reply_off;
      return false;
    case mode_arg::none:
    case mode_arg::bad:
      break;  // a bad mode: the syntax error is silenced like any reply
  }
  return !silent;
}

}  // namespace respfence::proxy

// session_core: shared backend connections (docs/design.md §12).
//
// In shared mode a link carries no connection of its own: the worker's upstream takes its
// bytes into a connection it shares with every other client whose connection key (the
// identity it authenticated as, the protocol, the db) is the same, and hands the replies
// back in order. Everything else about a command (order, decisions, the fence, retries)
// is as on a dedicated link. A command whose effect lives in the connection pins the link
// (it gets a connection of its own, with the client's state replayed first); a command
// that changes the key (SELECT, AUTH, HELLO, RESET) moves the link to the connections of
// the new key. Both first wait until the client's commands on the shared connection are
// answered, so that execution order holds; commands after a key change wait for its
// answer (only the server can say whether it succeeded). CLIENT SETNAME and GETNAME are
// answered here, and the name is replayed if the link is pinned later.

#include <algorithm>

#include "policy/text.hpp"
#include "proxy/resp/errors.hpp"
#include "proxy/resp/resp_writer.hpp"
#include "proxy/session/session_core.hpp"
#include "proxy/session/session_internal.hpp"

namespace respfence::proxy {

using policy::command_kind;

const char* to_string(pin_reason r) {
  switch (r) {
    case pin_reason::transaction:
      return "transaction";
    case pin_reason::blocking:
      return "blocking";
    case pin_reason::pubsub:
      return "pubsub";
    case pin_reason::monitor:
      return "monitor";
    case pin_reason::client_state:
      return "client_state";
    case pin_reason::replication:
      return "replication";
    case pin_reason::count_:
      break;
  }
  return "?";
}

namespace {

// Commands whose effect lives in the connection: they need one of their own.
bool pins(const policy::command_entry* cmd, command_kind k, pin_reason& why) {
  if (cmd == nullptr) return false;
  switch (k) {
    case command_kind::watch:
    case command_kind::multi:
      // MULTI too: what a block changes (SELECT, AUTH, HELLO, CLIENT REPLY, SUBSCRIBE)
      // changes the connection, and the server's queue-time checks (ACL, OOM) answer at
      // once only on the client's own.
      why = pin_reason::transaction;
      return true;
    case command_kind::subscribe:
    case command_kind::psubscribe:
    case command_kind::ssubscribe:
    case command_kind::unsubscribe:
    case command_kind::punsubscribe:
    case command_kind::sunsubscribe:
      why = pin_reason::pubsub;
      return true;
    case command_kind::monitor:
      why = pin_reason::monitor;
      return true;
    case command_kind::replicate:
      why = pin_reason::replication;
      return true;
    case command_kind::client_tracking:
    case command_kind::client_reply:
      why = pin_reason::client_state;
      return true;
    case command_kind::ends_busy:
      // SCRIPT KILL / FUNCTION KILL must not queue behind the very script they kill, on
      // the connection that script blocks.
      why = pin_reason::client_state;
      return true;
    default:
      break;
  }
  if (cmd->has(policy::flag_blocking) || cmd->name == "wait" || cmd->name == "waitaof") {
    why = pin_reason::blocking;
    return true;
  }
  static constexpr std::string_view per_connection[] = {
      "client|id",      "client|info",     "client|list",    "client|kill",
      "client|unblock", "client|pause",    "client|unpause", "client|no-evict",
      "client|caching", "client|getredir", "client|trackinginfo", "client|no-touch",
      "readonly",       "readwrite",       "asking",      "script|debug"};
  if (cmd->name == "replconf") {
    // A replica's settings (capa, rdb-only, ...) live in the connection its SYNC uses.
    why = pin_reason::replication;
    return true;
  }
  for (std::string_view n : per_connection) {
    if (cmd->name == n) {
      why = pin_reason::client_state;
      return true;
    }
  }
  return false;
}

bool changes_key(command_kind k) {
  return k == command_kind::select || k == command_kind::auth || k == command_kind::hello ||
         k == command_kind::reset;
}

}  // namespace

void session_core::push_item(link& l, inflight_item it) {
  l.inflight.push_back(it);
  ++l.untaken;
}

size_t session_core::take_link_items(size_t b) {
  const size_t n = links_[b].untaken;
  links_[b].untaken = 0;
  return n;
}

void session_core::on_link_reply(size_t b, std::string_view reply, const reply_info& info,
                                 int64_t read_us) {
  touched_ = true;
  batch_us_ = read_us;
  on_reply(b, reply, info);
}

void session_core::after_link_replies(size_t b) {
  check_quiet(b);
  settle_waits();
  if (waits_changed_) {
    resume();
    return;
  }
  after_completion();
}

bool session_core::links_quiet() const {
  return std::all_of(links_.begin(), links_.end(), [](const link& l) {
    return l.inflight.empty() && l.out.empty() && l.writing.empty();
  });
}

size_t session_core::inflight_cap() const {
  const size_t avg = reply_avg_ == 0 ? lim_.client_output / 16 : std::max<size_t>(reply_avg_, 16);
  return std::clamp<size_t>(lim_.client_output / avg, 16, lim_.max_inflight);
}

void session_core::update_key() {
  key_.auth = auth_key_;
  key_.resp3 = resp3_;
  key_.db = db_;
}

bool session_core::shared_prepare(entry& e, const policy::command_entry* cmd,
                                  const routing::arg_source& args, size_t b, bool pin_all) {
  pin_reason why = pin_reason::count_;
  const command_kind k = e.ckind;
  const bool pin = pins(cmd, k, why);
  if (!pin && !changes_key(k)) return true;
  // State the proxy cannot replay (the connection's id, NO-EVICT, READONLY, ...): the
  // client keeps its own connection for good.
  if (pin && (why == pin_reason::client_state || why == pin_reason::replication ||
              why == pin_reason::monitor)) {
    pinned_for_good_ = true;
  }
  const std::vector<uint16_t>& primaries = rt().primaries();
  std::vector<size_t> targets;
  if (pin_all) {
    targets.assign(primaries.begin(), primaries.end());
  } else {
    targets.push_back(b);
  }
  const bool any_shared =
      std::any_of(targets.begin(), targets.end(), [&](size_t t) { return links_[t].shared; });
  if (!any_shared) return true;  // pinned already: the connection is the client's own
  // Everything of this client on the shared connection is answered first.
  if (e.seq != head_seq_ || !links_quiet()) {
    hold(e, hold_reason::drain);
    return false;
  }
  if (pin) {
    for (size_t t : targets) {
      link& l = links_[t];
      if (!l.shared) continue;
      l.shared = false;
      l.state = link::conn::closed;  // opened on this send, with the state replayed first
    }
    env_.count_pin(why);
    return true;
  }
  // A key change: this command goes to a connection of the key it asks for (where it
  // changes nothing, or fails as it would here), and what follows waits for its answer.
  pool_key target = key_;
  switch (k) {
    case command_kind::select:
      if (args.argc() == 2) target.db = std::atoi(std::string(args.arg(1)).c_str());
      break;
    case command_kind::auth:
      target.auth.clear();
      detail::encode_args(target.auth, args);
      break;
    case command_kind::hello:
      if (args.argc() >= 2) {
        if (args.arg(1) == "3") target.resp3 = true;
        if (args.arg(1) == "2") target.resp3 = false;
      }
      // HELLO [protover [AUTH username password] [SETNAME clientname]]
      for (size_t i = 2; i < args.argc();) {
        if (policy::iequals_lower(args.arg(i), "auth") && i + 2 < args.argc()) {
          target.auth.clear();
          write_to(target.auth).array(3).bulk("AUTH").bulk(args.arg(i + 1)).bulk(args.arg(i + 2));
          i += 3;
        } else if (policy::iequals_lower(args.arg(i), "setname") && i + 1 < args.argc()) {
          i += 2;
        } else {
          break;
        }
      }
      break;
    case command_kind::reset:
      target = pool_key{};
      break;
    default:
      break;
  }
  key_target_ = std::move(target);
  key_target_set_ = true;
  key_wait_seq_ = e.seq;
  return true;
}

void session_core::note_pin_in_tx(const policy::command_entry* cmd) {
  // Inside MULTI the client holds its own connection already (MULTI pinned it), and what
  // such a command sets up there (a subscription, the connection's id as the client saw
  // it, NO-EVICT, tracking, ...) comes back inside EXEC's array, where the proxy does not
  // follow it: the client keeps that connection for good, as outside MULTI.
  pin_reason why = pin_reason::count_;
  if (pins(cmd, cmd ? cmd->kind : command_kind::plain, why) && why != pin_reason::transaction &&
      why != pin_reason::blocking) {
    pinned_for_good_ = true;
  }
}

void session_core::note_shared_effects(entry& e, link& l, const routing::arg_source& args) {
  const std::string_view name = args.argc() > 0 ? args.arg(0) : std::string_view{};
  if (name.empty()) return;
  const char c = static_cast<char>(name[0] | 0x20);
  if (c == 'e' || c == 'f') {
    // A script may run for as long as it likes; the server answers everyone else -BUSY
    // meanwhile, and SCRIPT KILL ends it. Nobody else's command should queue behind it.
    static constexpr std::string_view scripts[] = {"eval", "evalsha", "eval_ro", "evalsha_ro",
                                                   "fcall", "fcall_ro"};
    for (std::string_view n : scripts) {
      if (policy::iequals_lower(name, n)) {
        if (l.shared && args.argc() >= 2) l.marks_untaken |= mark_solo;
        return;
      }
    }
    if (tx_pause_ms_ > 0 && policy::iequals_lower(name, "exec")) {
      // A pause queued in the block starts when the block runs.
      env_.note_pause(env_.now_ms() + tx_pause_ms_);
      tx_pause_ms_ = 0;
    }
    return;
  }
  if (c == 'd' || c == 'r') {
    if (policy::iequals_lower(name, "discard") || policy::iequals_lower(name, "reset")) {
      tx_pause_ms_ = 0;
    }
    return;
  }
  if (c != 'c' || args.argc() < 2 || !policy::iequals_lower(name, "client")) return;
  const std::string_view sub = args.arg(1);
  if (policy::iequals_lower(sub, "unpause")) {
    // Only an UNPAUSE that ran ends the pause (on_reply); one queued in MULTI is left to
    // the pause's own timeout.
    e.unpause = !l.server_multi;
  } else if (policy::iequals_lower(sub, "pause") && args.argc() >= 3) {
    // Its timeout in ms. Noted before it runs (a bad one fails at the server, and the
    // proxy then steers for nothing until the deadline: harmless).
    int64_t ms = 0;
    if (!detail::parse_i64(args.arg(2), ms) || ms <= 0) return;
    if (l.server_multi) {
      tx_pause_ms_ = std::max<int64_t>(tx_pause_ms_, ms);
    } else {
      env_.note_pause(env_.now_ms() + ms);
    }
  }
}

void session_core::note_shared_reply(const entry& e) {
  if (e.unpause) env_.note_pause(0);
  if (e.ckind == command_kind::client_setname && e.backend < links_.size() &&
      links_[e.backend].shared && !links_[e.backend].server_multi) {
    links_[e.backend].named = true;
  }
}

bool session_core::answer_client_name(entry& e, const routing::arg_source& args) {
  // CLIENT SETNAME and GETNAME go to the client's shared connection, where the server
  // checks them (authentication, ACL, the name's characters); the name itself is the
  // client's, kept by the proxy (record_state; GETNAME's answer is replaced by it).
  // HELLO ... SETNAME goes without its name: a bad name must fail as the server fails it,
  // before the protocol changes.
  if (e.ckind != command_kind::hello || args.argc() < 2) return false;
  const std::string_view ver = args.arg(1);
  if (ver != "2" && ver != "3") return false;  // the server's NOPROTO comes first
  for (size_t i = 2; i + 1 < args.argc(); ++i) {
    if (policy::iequals_lower(args.arg(i), "auth")) return false;  // checked before the name
    if (!policy::iequals_lower(args.arg(i), "setname")) continue;
    for (char c : args.arg(i + 1)) {
      if (c < '!' || c > '~') {
        answer_local(e, err::client_name_invalid);
        return true;
      }
    }
    ++i;
  }
  return false;
}

bool session_core::maybe_unpin() {
  if (!lim_.shared || pinned_for_good_ || client_gone_ || tunnel_ || tx_open_ || watch_active_ || subscribed() ||
      monitor_ || tracking_ || reply_off_ || held_ > 0 || !pipe_.empty()) {
    return false;
  }
  bool any = false;
  for (size_t b = 0; b < links_.size(); ++b) {
    link& l = links_[b];
    if (l.shared || rt().is_replica(b) || l.server_multi || !l.inflight.empty() ||
        !l.out.empty() || !l.writing.empty()) {
      continue;
    }
    (void)close_link_state(b);
    l.shared = true;
    l.wanted = false;
    any = true;
  }
  return any;
}

size_t session_core::pinned_links() const {
  if (!lim_.shared) return 0;
  return static_cast<size_t>(std::count_if(links_.begin(), links_.end(), [](const link& l) {
    return !l.shared && l.state == link::conn::open;
  }));
}

}  // namespace respfence::proxy

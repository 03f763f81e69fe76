// session_core: its backend links (design.md §2, §12): connecting, writing, reading and
// failing, for dedicated links; a shared link's bytes go through the worker's upstream.

#include <algorithm>
#include <cstring>

#include "proxy/resp/errors.hpp"
#include "proxy/session/session_core.hpp"
#include "proxy/session/session_internal.hpp"

namespace respfence::proxy {

using detail::big_buffer;
using detail::release_if_big;
using policy::command_kind;

// ---------------------------------------------------------------- links

bool session_core::link_needs_connect(size_t b) const {
  const link& l = links_[b];
  // A shared link has no connection of its own: the upstream opens the shared one.
  return !l.shared && l.state == link::conn::closed &&
         (!l.out.empty() || !l.inflight.empty() || (l.reconnect && !client_gone_));
}

bool session_core::link_wanted(size_t b) const { return links_[b].wanted; }

void session_core::on_link_connecting(size_t b) {
  links_[b].state = link::conn::connecting;
  links_[b].reconnect = false;
}

bool session_core::adopt_key(size_t b, pool_key& key) const {
  // Shared mode, a link pinned just now: an idle shared connection of the key the
  // client's replayed state would set up can be its own at once, with no connect (and
  // no replayed AUTH, HELLO and SELECT ahead of its command). Not for a replica (it
  // needs READONLY first) nor during a key change.
  if (!lim_.shared || key_target_set_ || rt().is_replica(b)) return false;
  key = key_;
  return true;
}

void session_core::on_link_connected(size_t b, bool adopted) {
  link& l = links_[b];
  l.state = link::conn::open;
  l.served = false;
  l.framer.reset();
  l.rstart = l.rend = 0;
  // server_multi stays: it describes what is queued on this link (a MULTI may be the
  // command that opened it); a failed link has already cleared it.
  // A replica serves reads only after READONLY (it goes right after the replayed state).
  if (rt().is_replica(b)) {
    static constexpr std::string_view readonly = "*1\r\n$8\r\nREADONLY\r\n";
    const size_t start = l.gen.size();
    l.gen += readonly;
    l.out.insert(l.out.begin(), seg{true, start, readonly.size()});
    l.inflight.push_front(inflight_item{0, detail::item_replay, 0});
  }
  // The connection's state goes first, before anything the client sent: AUTH, HELLO,
  // SELECT, CLIENT SETNAME, each answered to the proxy alone.
  // (Pushed to the front in reverse: AUTH, the latest that succeeded, goes first.)
  const std::string* pieces[] = {&replay_setname_, &replay_select_, &replay_hello_,
                                 &replay_auth_};
  for (const std::string* p : pieces) {
    if (p->empty()) continue;
    if (adopted && p != &replay_setname_) continue;  // the connection's key is this state
    const size_t start = l.gen.size();
    l.gen += *p;
    l.out.insert(l.out.begin(), seg{true, start, p->size()});
    l.inflight.push_front(inflight_item{0, detail::item_replay, 0});
  }
  // A replication stream must not start behind replies the server has not sent yet
  // ("SYNC and PSYNC are invalid with pending output"): its bytes wait for the replay's
  // answers (tunnel_link_data).
  if (tunnel_ && b == tunnel_link_ && !l.inflight.empty() && l.out.size() > l.inflight.size()) {
    tunnel_held_.assign(l.out.begin() + static_cast<std::ptrdiff_t>(l.inflight.size()), l.out.end());
    l.out.resize(l.inflight.size());
  }
}

ring<session_core::inflight_item> session_core::close_link_state(size_t b) {
  link& l = links_[b];
  l.state = link::conn::closed;
  l.server_multi = false;
  if (l.conn_wrote) l.woff_behind = true;  // the writes' offset leaves with the connection
  l.conn_wrote = false;
  l.refused_seq = UINT64_MAX;
  // The next connection answers every command. (Not reset when it opens: what was
  // queued for it before then, a CLIENT REPLY OFF among it, has already set these.)
  l.server_reply_off = false;
  l.server_skip_next = false;
  l.framer.reset();
  l.rstart = l.rend = 0;
  ring<inflight_item> items;
  std::swap(items, l.inflight);
  l.out.clear();
  l.gen.clear();
  l.untaken = 0;  // a shared link: what it had not handed over is gone with `out`
  l.marks_untaken = 0;
  return items;
}

template <typename F>
void session_core::for_each_waiting(const ring<inflight_item>& items, F&& f) {
  for (size_t i = 0; i < items.size(); ++i) {
    const inflight_item it = items[i];
    if (it.what == detail::item_swallow || it.what == detail::item_replay) continue;
    if (it.seq < head_seq_) continue;  // answered already (a part of a finished command)
    f(at(it.seq), it);
  }
}

void session_core::on_link_failed(size_t b, bool was_open, bool not_run) {
  if (was_open && not_run) {
    // Never run: sent again in turn, on a connection that works, as if it had waited
    // (a part of a command sent to several backends, its part alone).
    const ring<inflight_item> items = close_link_state(b);
    for_each_waiting(items, [&](entry& e, const inflight_item& it) {
      if (e.state != entry_state::sent) return;
      if (e.seq > dropped_after_) {  // behind this client's own protocol error
        answer_local(e, {});
        return;
      }
      if (it.what == detail::item_part && e.merge >= 0) {
        merge_state& m = merges_[e.merge];
        if (it.part < m.parts && m.state[it.part] == part_state::sent) {
          m.state[it.part] = part_state::pending;
        }
      }
      env_.count(b, counter::retried);
      hold(e, hold_reason::order);
    });
    resume();
    return;
  }
  if (was_open) {
    link& l = links_[b];
    // Dedicated mode: a connection of the client's own that the server closed (CLIENT
    // KILL, its idle timeout, a restart) is opened again at once when the client had state
    // on it (a database, a name, AUTH, HELLO). That state is restored now, next to the
    // event, not ahead of whatever the client sends next, where a MONITOR would see a
    // SELECT the client never sent at that point. Once per connection that answered the
    // client: a server that closes every new connection (maxclients) is not dialled in a
    // loop.
    fail_link(b, err::backend_lost);
    l.reconnect = !lim_.shared && l.served && !stop_input_ && !close_when_done_ && !eof_ &&
                  !(replay_auth_.empty() && replay_hello_.empty() && replay_select_.empty() &&
                    replay_setname_.empty());
    after_completion();
    return;
  }
  // The connect failed: nothing was sent, so what waited may wait again.
  if (links_[b].out.empty() && links_[b].inflight.empty()) {
    // The reopening above, and nothing waits on it: it marks no backend down. (After a
    // restart it is refused while the server is still gone; marking the backend down
    // then would hold, or refuse as LOADING, the client's next command until the
    // prober's next look.) The client's next command connects as usual.
    close_link_state(b);
    return;
  }
  env_.report_unreachable(b);
  if (tunnel_) {
    // A replication stream has no second chance: the client sees its connection end.
    stop_input_ = true;
    close_when_done_ = true;
  }
  const ring<inflight_item> items = close_link_state(b);
  for_each_waiting(items, [&](entry& e, const inflight_item& it) {
    if (it.what == detail::item_part) {
      retry_part(e, it.part, b);
      return;
    }
    if (e.state != entry_state::sent) return;
    // Never sent: it waits like any command for a backend that is down, and is decided
    // again (under the policy then in force) when the backend is back.
    if (e.tx >= 0) txs_[e.tx].multi_sent = false;
    hold_for_loading(e, b, e.timeout_ms);
  });
  after_completion();
}

void session_core::fail_link(size_t b, std::string_view why) {
  const bool was_multi = links_[b].server_multi;
  // LOADING answers on this link whose later commands are unanswered: those may have
  // run before the connection broke, so the earlier ones are not sent again.
  on_ran(b);
  const ring<inflight_item> items = close_link_state(b);
  // Sent, and maybe run: the client hears that the connection was lost, never silence.
  for_each_waiting(items, [&](entry& e, const inflight_item& it) {
    if (it.what == detail::item_part) {
      on_part_reply(e, it.part, why);
    } else if (e.state == entry_state::sent) {
      deliver(e, why);
    }
  });
  // A block whose MULTI (and first commands) went on this connection lost that head
  // with it: the rest must never run alone. Its EXEC answers EXECABORT.
  for (auto& t : txs_) {
    if (t.multi_sent && t.multi_backend == static_cast<int32_t>(b)) {
      t.multi_sent = false;
      t.broken = true;
    }
  }
  if (was_multi && tx_open_ && !tx_deferred_) tx_aborted_ = true;
  if (tx_open_ && tx_deferred_ && tx_cur_ >= 0 && txs_[tx_cur_].broken) tx_dirty_ = true;
  // WATCH lived on that connection: the next EXEC must not commit as if it had held.
  if (watch_active_ && watch_link_ == b) {
    watch_active_ = false;
    watch_lost_ = true;
  }
  // Subscriptions, MONITOR and tracking lived on that connection and cannot be replayed
  // without the client seeing it: close the client, as the server going away would.
  if (subscribed() || monitor_ || tracking_ || tunnel_) {
    stop_input_ = true;
    close_when_done_ = true;
  }
}

bool session_core::link_has_output(size_t b) const {
  const link& l = links_[b];
  return (l.shared || l.state == link::conn::open) && !l.out.empty() && l.writing.empty();
}

const std::vector<out_span>& session_core::take_link_output(size_t b) {
  link& l = links_[b];
  std::swap(l.out, l.writing);
  std::swap(l.gen, l.gen_writing);
  l.out.clear();
  l.gen.clear();
  l.spans.clear();
  bool from_in = false;
  for (const seg& s : l.writing) {
    if (s.gen) {
      l.spans.push_back(out_span{l.gen_writing.data() + s.off, s.len});
    } else {
      l.spans.push_back(out_span{in_.data() + s.off, s.len});
      from_in = true;
    }
  }
  if (from_in) {
    l.writing_in = true;
    ++in_pins_;
  }
  return l.spans;
}

void session_core::link_output_done(size_t b) {
  link& l = links_[b];
  if (l.writing_in) {
    l.writing_in = false;
    --in_pins_;
  }
  l.writing.clear();
  l.gen_writing.clear();
  l.spans.clear();
  release_if_big(l.gen_writing);
  after_completion();
}

bool session_core::link_wants_read(size_t b) const {
  const link& l = links_[b];
  if (l.state != link::conn::open) return false;
  if (!output_over_limit()) return true;
  // Over the limit only because replies that came early on other links fill the stash:
  // the link whose next reply is the client's oldest unanswered one is still read (that
  // reply goes straight out, and lets the stash drain).
  return out_.size() + writing_.size() < lim_.client_output && !l.inflight.empty() &&
         l.inflight.front().seq == head_seq_;
}

bool session_core::link_open(size_t b) const {
  return links_[b].shared || links_[b].state == link::conn::open;
}

std::pair<char*, size_t> session_core::link_read_buffer(size_t b) {
  link& l = links_[b];
  if (l.rstart == l.rend) {
    l.rstart = l.rend = 0;
    if (l.rbuf.size() > big_buffer) {
      std::vector<char>(detail::min_read).swap(l.rbuf);
    }
  }
  if (l.rbuf.size() - l.rend < detail::min_read / 4) {
    if (l.rstart > 0) {
      std::memmove(l.rbuf.data(), l.rbuf.data() + l.rstart, l.rend - l.rstart);
      l.rend -= l.rstart;
      l.rstart = 0;
    }
    if (l.rbuf.size() - l.rend < detail::min_read / 4) {
      l.rbuf.resize(std::max(l.rbuf.size() * 2, l.rend + detail::min_read));
    }
  }
  l.read_at = l.rend;
  return {l.rbuf.data() + l.rend, l.rbuf.size() - l.rend};
}

bool session_core::next_link_reply(size_t b, std::string_view& reply) {
  link& l = links_[b];
  if (l.state != link::conn::open || l.rstart >= l.rend) return false;
  const std::string_view view(l.rbuf.data() + l.rstart, l.rend - l.rstart);
  const frame_status st = l.framer.next(view);
  if (st == frame_status::need_more) return false;
  if (st == frame_status::error) {
    fail_link(b, err::backend_protocol);
    return false;
  }
  reply = view.substr(0, l.framer.consumed());
  l.rstart += reply.size();
  return true;
}

void session_core::on_link_data(size_t b, size_t n) {
  link& l = links_[b];
  if (l.read_at != l.rend) std::memmove(l.rbuf.data() + l.rend, l.rbuf.data() + l.read_at, n);
  l.rend += n;
  touched_ = true;
  batch_us_ = detail::now_us();
  if (tunnel_) {
    tunnel_link_data(b);
    after_completion();
    return;
  }
  std::string_view reply;
  while (next_link_reply(b, reply)) {
    on_reply(b, reply, l.framer.info());
  }
  check_quiet(b);
  settle_waits();
  if (waits_changed_) {
    resume();  // what waited behind a decided LOADING answer may go now
    return;
  }
  after_completion();
}

}  // namespace respfence::proxy

// session_core: SYNC and PSYNC (single mode). A replica, `redis-cli --rdb` or
// `redis-cli --replica` asks for the replication stream: the RDB payload ("$<len>\r\n"
// and raw bytes with no CRLF, or "$EOF:<mark>" ... "<mark>"), newlines sent as keepalives
// while it is prepared, then the command stream. None of it is a RESP reply, so from the
// SYNC/PSYNC request on, the client's connection is a byte tunnel to its backend
// connection, both ways (REPLCONF ACK goes back the same way). The handshake before it
// (PING, AUTH, REPLCONF) passes as ordinary commands.

#include <algorithm>

#include "proxy/session/session_core.hpp"
#include "proxy/session/session_internal.hpp"

namespace respfence::proxy {

namespace {
// Appends bytes to a link's generated buffer as one segment (merged with the last one
// when they are contiguous).
template <typename Link, typename Seg>
void append_gen(Link& l, const char* p, size_t n) {
  const size_t start = l.gen.size();
  l.gen.append(p, n);
  if (!l.out.empty() && l.out.back().gen && l.out.back().off + l.out.back().len == start) {
    l.out.back().len += n;
  } else {
    l.out.push_back(Seg{true, start, n});
  }
}
}  // namespace

void session_core::start_tunnel(entry& e, size_t b) {
  link& l = ensure_link(b);
  // Everything read from the request on belongs to the stream, including requests read
  // in the same batch after it (they were held behind it, never sent).
  append_gen<link, seg>(l, in_.data() + e.req_off, in_len_ - e.req_off);
  while (pipe_.back().seq != e.seq) {
    entry& later = pipe_.back();
    if (later.state == entry_state::held) --held_;
    release_admission(later);
    pipe_.pop_back();
    --next_seq_;
  }
  tunnel_ = true;
  tunnel_link_ = b;
  e.exempt = true;
  answer_local(e, {});  // its answer is the stream itself
  // Requests not written yet still point into the input buffer, which starts over now:
  // they get copies of their own (CLIENT REPLY OFF; SET k v; SYNC in one write).
  for (link& lk : links_) {
    for (seg& sg : lk.out) {
      if (sg.gen) continue;
      const size_t start = lk.gen.size();
      lk.gen.append(in_.data() + sg.off, sg.len);
      sg = seg{true, start, sg.len};
    }
  }
  parse_pos_ = in_len_;
  if (in_pins_ == 0) in_len_ = parse_pos_ = read_at_ = 0;  // nothing is being written from it
  framer_.reset();
}

void session_core::tunnel_client_data(size_t n) {
  link& l = links_[tunnel_link_];
  if (!tunnel_held_.empty()) {
    // Still behind the replay's answers: after the stream's first bytes.
    const size_t start = l.gen.size();
    l.gen.append(in_.data() + read_at_, n);
    tunnel_held_.push_back(seg{true, start, n});
    if (in_pins_ == 0) in_len_ = parse_pos_ = read_at_ = 0;
    return;
  }
  append_gen<link, seg>(l, in_.data() + read_at_, n);
  if (in_pins_ == 0) in_len_ = parse_pos_ = read_at_ = 0;
  l.wanted = true;
}

void session_core::tunnel_link_data(size_t b) {
  link& l = links_[b];
  while (l.state == link::conn::open && l.rstart < l.rend) {
    if (!l.inflight.empty()) {
      // A new connection's replayed AUTH/SELECT come first: answered to the proxy.
      std::string_view reply;
      if (!next_link_reply(b, reply)) break;
      l.inflight.pop_front();
      if (l.inflight.empty() && !tunnel_held_.empty()) {
        l.out.insert(l.out.end(), tunnel_held_.begin(), tunnel_held_.end());
        tunnel_held_.clear();
      }
      continue;
    }
    out_.append(l.rbuf.data() + l.rstart, l.rend - l.rstart);
    l.rstart = l.rend;
  }
}

}  // namespace respfence::proxy

// session_core: the client input buffer: where reads go, what must stay (unanswered requests
// are kept for retries), compaction, and giving memory back when idle.

#include <algorithm>
#include <cstring>

#include "proxy/resp/errors.hpp"
#include "proxy/session/session_core.hpp"
#include "proxy/session/session_internal.hpp"

namespace respfence::proxy {

std::pair<char*, size_t> session_core::client_read_buffer() {
  // No read is outstanding here: the one place where the buffer may move or shrink.
  if (in_len_ == 0 && in_pins_ == 0 && in_.size() > (1u << 20)) {
    std::vector<char>(detail::min_read).swap(in_);
  }
  size_t free = in_.size() - in_len_;
  const size_t hint = framer_.bytes_needed_hint();
  const size_t want_total = hint > 0 ? parse_pos_ + hint : 0;
  if (in_pins_ == 0 && (free < detail::min_read || want_total > in_.size())) {
    compact_input();
    // Toward the whole of a request that is streaming in, but never past about twice what
    // has arrived: a header that announces a 512 MB bulk costs what its bytes cost, as on
    // the server, and not a zero-filled 512 MB buffer at once (a few such headers took
    // the proxy's memory, and every client with it).
    size_t target = std::max(in_len_ + detail::min_read, std::min(want_total, 2 * in_len_));
    if (target > in_.size()) {
      // Doubling keeps the copies of a big request streaming in linear in its size.
      in_.resize(std::max({in_.size() * 2, detail::min_read, target}));
    }
    free = in_.size() - in_len_;
  }
  if (free == 0) return {nullptr, 0};
  read_at_ = in_len_;
  return {in_.data() + in_len_, free};
}

size_t session_core::input_floor() const {
  size_t f = parse_pos_;
  if (!pipe_.empty() && pipe_.front().state != entry_state::done) {
    f = std::min(f, pipe_.front().req_off);
  }
  // Bytes queued for a backend but not yet written may belong to entries that are
  // already done (CLIENT REPLY OFF): they stay until written.
  for (const link& l : links_) {
    for (const seg& s : l.out) {
      if (!s.gen) f = std::min(f, s.off);
    }
  }
  return std::min(f, tx_floor_);
}

void session_core::compact_input() {
  const size_t floor = input_floor();
  if (floor == 0) return;
  std::memmove(in_.data(), in_.data() + floor, in_len_ - floor);
  in_len_ -= floor;
  parse_pos_ -= floor;
  for (size_t i = 0; i < pipe_.size(); ++i) {
    entry& e = pipe_[i];
    if (e.state != entry_state::done && e.req_off >= floor) e.req_off -= floor;
  }
  for (auto& t : txs_) {
    for (auto& s : t.cmds) {
      if (s.off >= floor) s.off -= floor;
    }
    if (t.exec_off >= floor) t.exec_off -= floor;
  }
  if (tx_floor_ != SIZE_MAX) tx_floor_ -= floor;
  // Nothing is pinned (in_pins_ == 0), but links may have queued segments into in_.
  for (auto& l : links_) {
    for (auto& s : l.out) {
      if (!s.gen) s.off -= floor;
    }
  }
}

bool session_core::touched_since(bool clear) {
  const bool t = touched_;
  if (clear) touched_ = false;
  return t;
}

void session_core::release_buffers() {
  if (!pipe_.empty() || in_len_ != 0 || in_pins_ != 0 || !out_.empty() || !writing_.empty() ||
      !stash_.empty() || held_ != 0 || tx_open_) {
    return;
  }
  for (const link& l : links_) {
    if (!l.out.empty() || !l.writing.empty() || l.rstart != l.rend) return;
  }
  std::vector<char>().swap(in_);
  parse_pos_ = read_at_ = 0;
  std::string().swap(out_);
  std::string().swap(writing_);
  std::string().swap(stash_);
  stash_bytes_ = 0;
  for (link& l : links_) {
    std::vector<char>().swap(l.rbuf);
    l.rstart = l.rend = l.read_at = 0;
    std::string().swap(l.gen);
    std::string().swap(l.gen_writing);
  }
}

}  // namespace respfence::proxy

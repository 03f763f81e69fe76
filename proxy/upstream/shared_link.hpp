#pragma once
// One backend connection shared by the sessions of a worker whose connection key is the
// same (docs/design.md §12), as a state machine with no I/O. The shell (upstream) moves
// the bytes; this decides what to write and whose each reply is.
//
// Writes gather the bytes of many sessions into one batch (zero copy: the spans point
// into each session's own buffers until output_done()). Replies come back in the order
// the batches were written, so a FIFO of runs (owner, how many replies) says whose each
// reply is. A new connection first sends its key's state (AUTH, HELLO 3, SELECT), whose
// answers are the link's own.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proxy/resp/reply_framer.hpp"
#include "proxy/session/pool_key.hpp"
#include "proxy/session/ring.hpp"
#include "proxy/session/session_core.hpp"

namespace respfence::proxy {

class shared_link {
 public:
  using owner = void*;  // the shell of a session; null for the link's own commands

  explicit shared_link(pool_key key) : key_(std::move(key)) {}

  const pool_key& key() const { return key_; }
  // The handshake failed (a wrong password, a db out of range): nobody should join.
  bool bad() const { return bad_; }

  // A new connection: its key's state goes first.
  void on_connected();
  // The connection is gone. `batched`: owners whose bytes were taken (written or not),
  // whose buffers must be given back; `due`: owners with replies due. Each once. The
  // link is empty afterwards.
  struct failure {
    std::vector<owner> batched;
    std::vector<owner> due;
    // The last reply was a protocol error (a request over a limit of the server's own
    // configuration, such as a lowered proto-max-bulk-len): the server closed the
    // connection for it, and ran nothing it read after it.
    bool after_protocol_error = false;
  };
  failure on_failed();

  // A session's bytes, taken from it, and how many replies they bring. `marks`:
  // mark_solo: they hold a command that can keep the server busy for long (a script):
  // while its replies are due, no other session should join this connection (it would
  // wait behind it, where on a connection of its own it would get -BUSY at once).
  static constexpr uint8_t mark_solo = 1;
  void add(owner o, const std::vector<out_span>& spans, size_t replies, uint8_t marks = 0);
  // The session whose CLIENT SETNAME (answered OK) named this connection last; null:
  // none. The name is cleared when that session goes (forget) or names another one
  // (clear_name). Only an open connection has one: on_failed() forgets it.
  owner named_by() const { return named_by_; }
  void set_named_by(owner o) { named_by_ = o; }
  void clear_name();
  bool has_output() const { return !out_.empty() && writing_.empty(); }
  const std::vector<out_span>& take_output();
  // The batch is written: its owners (each once) may be given their buffers back.
  const std::vector<owner>& written_owners() const { return writing_owners_; }
  void output_done();

  std::pair<char*, size_t> read_buffer();
  // Frames what was read; deliver(owner, reply, info) for each reply, in order. False if
  // the backend sent something that is not RESP (the connection must be closed). deliver
  // returns true if the reply was a protocol error refusing its request
  // (failure::after_protocol_error, if it was the last before the connection closed).
  template <typename F>
  bool on_data(size_t n, F&& deliver);

  // A session that is gone: its replies are dropped; a name it gave this connection is
  // cleared (CLIENT SETNAME "", answered to the link itself).
  void forget(owner o);
  bool idle() const { return runs_.empty() && out_.empty() && writing_.empty(); }
  size_t replies_due() const { return due_; }
  bool solo_due() const { return solo_runs_ > 0; }

 private:
  struct run {
    owner o = nullptr;
    uint32_t replies = 0;
    bool solo = false;
  };
  // The owner of replies whose session is gone: they are read and dropped.
  static owner dropped() {
    static char tag;
    return &tag;
  }
  void push_run(owner o, size_t replies, bool solo);
  void pop_run();
  // The link's own command (bytes in gen_, answered to nobody).
  void add_own(std::string_view cmd, size_t replies);

  pool_key key_;
  bool bad_ = false;
  bool last_protocol_error_ = false;  // the last reply framed (on_failed())
  ring<run> runs_;
  size_t due_ = 0;        // replies due, over all runs
  size_t solo_runs_ = 0;  // runs with a solo command
  owner named_by_ = nullptr;
  std::vector<out_span> out_;
  std::vector<out_span> writing_;
  std::vector<owner> out_owners_;
  std::vector<owner> writing_owners_;
  std::string gen_;  // the handshake
  std::string gen_writing_;
  std::vector<char> rbuf_;
  size_t rstart_ = 0;
  size_t rend_ = 0;
  size_t read_at_ = 0;
  reply_framer framer_;
};

template <typename F>
bool shared_link::on_data(size_t n, F&& deliver) {
  if (read_at_ != rend_) std::memmove(rbuf_.data() + rend_, rbuf_.data() + read_at_, n);
  rend_ += n;
  while (rstart_ < rend_) {
    const std::string_view view(rbuf_.data() + rstart_, rend_ - rstart_);
    const frame_status st = framer_.next(view);
    if (st == frame_status::need_more) break;
    if (st == frame_status::error) return false;
    const std::string_view reply = view.substr(0, framer_.consumed());
    rstart_ += reply.size();
    last_protocol_error_ = false;
    // A push is nobody's reply (invalidations sent here by a client's CLIENT TRACKING
    // REDIRECT to this connection's id): dropped, so that it shifts no one's replies.
    if (framer_.info().is_push()) continue;
    if (runs_.empty()) continue;  // nothing asked
    run& r = runs_.front();
    const owner o = r.o;
    --due_;
    if (--r.replies == 0) pop_run();
    if (o == dropped()) continue;
    if (o == nullptr) {
      // The handshake's own answers; an error makes the link unfit to share.
      if (framer_.info().is_error()) bad_ = true;
      continue;
    }
    // The deliverer says whether the reply refused its request (a protocol error over a
    // limit of the server's): the server closes the connection after it (on_failed).
    last_protocol_error_ = deliver(o, reply, framer_.info());
  }
  return true;
}

}  // namespace respfence::proxy

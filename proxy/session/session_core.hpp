#pragma once
// One client's session, as a state machine with no I/O (sans-I/O): bytes from the client
// and from its backend connections go in; bytes for the client and for each backend,
// and requests to connect, come out. A thin Asio shell (client_session) moves the bytes.
//
// What it keeps per client: the pipeline of requests in arrival order with their replies
// (replies always leave in request order), the per-connection state to replay after a
// backend reconnect (SELECT, AUTH, HELLO, CLIENT SETNAME), transactions, pub/sub and
// MONITOR modes, and commands held while their backend loads or a flush fence is up.
//
// Requests are forwarded as the client's own bytes, straight out of the input buffer
// (gathered writes); the buffer keeps every request until it is answered, so that a
// command answered -LOADING can be sent again.

#include <cstdint>
#include <cstddef>
#include <climits>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "policy/loading_policy.hpp"
#include "proxy/session/merge.hpp"
#include "proxy/session/pool_key.hpp"
#include "proxy/resp/reply_framer.hpp"
#include "proxy/resp/request_framer.hpp"
#include "proxy/session/ring.hpp"
#include "proxy/session/session_env.hpp"
#include "proxy/session/slot_pool.hpp"
#include "routing/router.hpp"

namespace respfence::proxy {

// A piece of bytes to write; the shell turns a list of them into one gathered write.
struct out_span {
  const char* data;
  size_t size;
};

enum class entry_state : uint8_t { held, sent, done };
const char* to_string(entry_state s);

// What to do with the reply(ies) an entry gets back.
enum class reply_kind : uint8_t {
  pass,       // the server's reply, as is
  ping_bare,  // ECHO was sent for a bare PING: answer +PONG
  subscribe,  // (P|S)(UN)SUBSCRIBE: one confirmation per channel
  tx_exec,    // EXEC of a transaction the proxy held: only EXEC's reply is the client's
  merge,      // parts on several backends, merged (slots mode)
  local,      // answered by the proxy itself
  own_name,   // CLIENT GETNAME on a shared connection: the server checks it, the name is the client's
};
const char* to_string(reply_kind k);

// Why a command waits in the proxy. `confirm`: the server answered LOADING, and whether
// it is sent again waits for the prober's verdict and for what ran after it on its link.
// `drain`: shared mode, the command waits until this client's commands on its shared
// connection are answered (it pins the link, or changes its connection key).
enum class hold_reason : uint8_t { none, order, loading, fence, flush, barrier, retry, confirm, drain };
const char* to_string(hold_reason r);

class session_core {
 public:
  struct limits {
    size_t client_output = 8u << 20;  // stop reading backends past this much pending output
    // Requests are read (but not forwarded while the output is over its limit) up to
    // this much unanswered input, so that a client that writes a whole pipeline before
    // it reads its replies never deadlocks below it.
    size_t input_window = 64u << 20;
    // Shared backend connections (docs/design.md §12): links start shared, and a link
    // gets a connection of its own (is pinned) from the first command whose effect lives
    // in the connection.
    bool shared = false;
    // Shared mode: requests in flight per client, past which its next requests wait (a
    // shared connection is never stopped for one client, so this bounds its replies).
    size_t max_inflight = 4096;
  };

  session_core(session_env& env, limits lim);
  ~session_core();
  session_core(const session_core&) = delete;
  session_core& operator=(const session_core&) = delete;

  // ---- client side ----
  bool wants_client_read() const;
  // Where to read client bytes into; empty when wants_client_read() is false.
  std::pair<char*, size_t> client_read_buffer();
  void on_client_data(size_t n);
  // The client went away: everything it had queued is dropped, never sent. A flush of
  // its own already on the wire is the exception: the fence stays up until the backend
  // answers it (lingering()), or later commands of other clients could overtake it.
  // Called again with `final` when the shell really closes; then nothing is kept.
  void on_client_closed(bool final = false);
  // The client's end of file (it closed, or half-closed its side). True: what it sent
  // before is still run and answered, then the session closes, as redis-server does.
  // False: close now, because something in flight would wait for a client that is gone
  // (a blocking command or WAIT, which the close unblocks direct; pub/sub; MONITOR; a
  // tunnel), a command is queued for a loading backend (it is dropped unsent), or a
  // CLIENT PAUSE the proxy saw is in force (the server drops a postponed write direct).
  bool on_client_eof();
  bool loading_held() const;  // some command waits for a loading backend
  bool eof_done() const;      // after the EOF: all of it run, answered and written
  // The client is gone, but its flush is still on the wire, or a fence waits for commands
  // it sent before the flush: keep the backend links open until they are answered.
  bool lingering() const;

  bool has_client_output() const { return !out_.empty() && writing_.empty(); }
  std::string_view take_client_output();  // valid until client_output_done()
  void client_output_done();
  // Close the client once this is true and nothing is being written.
  bool finished() const;

  // ---- backend links, one per backend, opened on first use ----
  size_t link_count() const { return links_.size(); }
  bool link_needs_connect(size_t b) const;
  void on_link_connecting(size_t b);
  void on_link_connected(size_t b, bool adopted = false);
  // A link about to connect may take an idle shared connection of this key instead.
  bool adopt_key(size_t b, pool_key& key) const;
  // A connect failed (`was_open` false) or an open connection broke (true).
  // `not_run`: a shared connection the server closed after a protocol error (another
  // client's request over a limit of the server's own): the server ran nothing it read
  // after that request, so this client's commands behind it go again, unseen.
  void on_link_failed(size_t b, bool was_open, bool not_run = false);
  bool link_has_output(size_t b) const;
  // The spans stay valid until link_output_done(b).
  const std::vector<out_span>& take_link_output(size_t b);
  void link_output_done(size_t b);
  bool link_wants_read(size_t b) const;
  std::pair<char*, size_t> link_read_buffer(size_t b);
  void on_link_data(size_t b, size_t n);
  bool link_wanted(size_t b) const;  // the shell should keep this link open
  bool link_open(size_t b) const;

  // ---- shared links (docs/design.md §12): the worker's upstream carries their bytes ----
  bool link_shared(size_t b) const { return b < links_.size() && links_[b].shared; }
  // The connection state its bytes need: the key after a SELECT/AUTH/HELLO/RESET that is
  // on its way, else the current one.
  const pool_key& link_key() const { return key_target_set_ ? key_target_ : key_; }
  // After take_link_output(b): how many replies the bytes taken will bring.
  size_t take_link_items(size_t b);
  // ...and what they hold: a script (taken once, like the items).
  uint8_t take_link_marks(size_t b) {
    const uint8_t v = links_[b].marks_untaken;
    links_[b].marks_untaken = 0;
    return v;
  }
  static constexpr uint8_t mark_solo = 1;
  // A CLIENT SETNAME answered OK on shared link b since the last call: its connection now
  // bears this client's name (upstream: shared_link::set_named_by).
  bool take_link_named(size_t b) {
    const bool v = links_[b].named;
    links_[b].named = false;
    return v;
  }
  // Replies are due on shared link b for bytes the upstream took: its next bytes must go
  // on the same connection (execution order); with none due, any connection will do.
  bool link_due(size_t b) const { return links_[b].inflight.size() > links_[b].untaken; }
  // Replies, in order, for this session's items on the shared connection of link b.
  // read_us: when the read that brought it returned (steady clock, µs; one clock read
  // per read, not per reply: at pipeline 16 a clock read per reply was 4 % of the CPU).
  void on_link_reply(size_t b, std::string_view reply, const reply_info& info, int64_t read_us);
  // The latest reply on link b refused its request (a protocol error): see link::refused_seq.
  bool link_refused(size_t b) const { return links_[b].refused_seq != UINT64_MAX; }
  void after_link_replies(size_t b);
  // Links idle and free of connection state go back to shared; true if one did (the
  // shell then closes its socket).
  bool maybe_unpin();
  void note_pin_in_tx(const policy::command_entry* cmd);
  size_t pinned_links() const;

  // ---- from the worker ----
  void resume();              // a backend's state changed, or a fence lifted
  void tick(int64_t now_ms);  // deadlines of held commands
  // A flush fence went up: remember what came before it; true if all of that is answered.
  // Any number of fences may be up at once, each with its own mark.
  bool fence_begin(uint64_t fence_id, const std::vector<size_t>& backends);
  void fence_ready(uint64_t fence_id);  // this session's flush may go now
  void fence_end(uint64_t fence_id);    // the fence lowered everywhere
  void begin_shutdown();                // SIGTERM: finish what is in flight, take nothing new

  // Memory: a session with nothing in flight may give its buffers back; the next byte
  // allocates them again. The worker calls this for sessions quiet for a while.
  bool touched_since(bool clear);
  void release_buffers();

  // The shell that owns this core (the worker finds it from the env callbacks).
  void set_user(void* u) { user_ = u; }
  void* user() const { return user_; }

  // For tests and /status.
  size_t pipeline_size() const { return pipe_.size(); }
  size_t held_count() const { return held_; }
  int protocol() const { return resp3_ ? 3 : 2; }
  bool subscribed() const { return sub_channels_ + sub_patterns_ + sub_shard_ > 0; }
  bool tunnel() const { return tunnel_; }
  int db() const { return db_; }

 private:
  struct entry {
    uint64_t seq = 0;
    size_t req_off = 0;  // the request's bytes in in_
    size_t req_len = 0;
    policy::command_kind ckind = policy::command_kind::plain;
    uint32_t cflags = 0;  // the command's table flags when it was decided
    uint16_t backend = 0;
    entry_state state = entry_state::held;
    reply_kind kind = reply_kind::pass;
    hold_reason hold = hold_reason::none;
    bool admitted = false;     // counted against the global queue bounds
    bool exempt = false;       // a flush fence does not wait for it (blocking, pub/sub, ...)
    bool is_flush = false;     // FLUSHALL/FLUSHDB/SWAPDB, or an EXEC that holds one
    uint8_t flushes = 1;       // flushes it carries (an EXEC may hold several)
    bool saw_loading = false;  // tx_exec: a part was answered -LOADING
    bool retry = false;        // a -LOADING reply sends it back to the queue
    bool fence_passed = false; // a flush whose fence has drained
    bool stored = false;       // its reply sits in stash_
    uint32_t expect = 1;       // replies still to come
    int64_t deadline = 0;      // held for loading until then
    uint32_t timeout_ms = 0;   // how long it may be held for loading
    int64_t t0_us = 0;         // arrival, for the latency histogram
    size_t rep_off = 0;        // reply kept in stash_ until it is this entry's turn
    size_t rep_len = 0;
    int32_t merge = -1;        // index into merges_
    int32_t tx = -1;           // index into txs_
    int32_t force_backend = -1;  // cluster: a node named by -MOVED/-ASK, used once
    bool asking = false;         // cluster: send ASKING first (-ASK)
    bool saw_redirect = false;   // tx_exec: a part was redirected; the block goes again
    uint8_t redirects = 0;       // cluster: bounded
    uint16_t waits = 0;          // its LOADING answers (or its parts') waiting for a verdict
    bool decided = false;        // dispatched once already (a retry decides it again)
    bool in_tx = false;          // it arrived inside MULTI (or is MULTI)
    int64_t queued_at = 0;       // when it first waited for its backend: the deadline counts from there
    uint64_t own_fence = 0;      // a flush: the fence it raised, until it is answered
    bool unpause = false;        // shared mode: a CLIENT UNPAUSE outside MULTI
    // Under CLIENT REPLY OFF/SKIP the client gets nothing of its reply (decide_reply),
    // whether or not the proxy waits for one (a command sent to several backends, a held
    // transaction's EXEC, a server connection that still answers).
    bool quiet = false;
    bool reply_refused = false;  // a CLIENT REPLY the server refuses (RESP2 subscribed context)
    bool sub_counted = false;    // counted in sub_inflight_ until it completes
    bool protocol_error = false; // a protocol error's answer, silenced or not in its turn
    bool auth_counted = false;   // an AUTH or HELLO, counted in auth_inflight_ until it completes
    // A blocking command (or WAIT) sent outside MULTI: until it is answered, the server
    // reads nothing more from its connection, so what was sent behind it runs after any
    // flush sent meanwhile, as direct (fence_drained).
    bool blocks = false;
    // It arrived while the queue for its loading backend was full (admit_in_order): in
    // its turn it gets the server's LOADING answer, as it would have on arrival.
    bool over_bound = false;
  };

  // A LOADING answer whose command may be sent again (design.md §6): only once the prober has
  // confirmed that the backend loads, and only if nothing sent after it on the same
  // connection ran (a SELECT pipelined behind it would otherwise be reordered before it).
  struct retry_wait {
    uint64_t seq = 0;
    uint16_t part = 0;
    bool is_part = false;
    bool quiet = false;  // every later command on its connection was answered LOADING too
    uint16_t backend = 0;
    uint64_t after_round = 0;  // the prober's verdict counts from the probe after this one
    int64_t deadline = 0;      // then the client gets the server's answer as it came
  };

  // A flush fence as this session sees it: what it accepted before the flush (seq < mark).
  struct fence_mark {
    uint64_t id = 0;
    uint64_t mark = 0;
    std::vector<size_t> backends;
    bool reported = false;  // drained, and said so
  };

  struct seg {
    bool gen;  // bytes in the link's generated buffer, else in in_
    size_t off;
    size_t len;
  };

  struct inflight_item {
    uint64_t seq = 0;
    uint8_t what = 0;  // item_reply, item_swallow, item_replay, item_part
    uint16_t part = 0;
  };

  struct link {
    enum class conn : uint8_t { closed, connecting, open };
    conn state = conn::closed;
    bool wanted = false;  // something is waiting to be sent
    ring<inflight_item> inflight;
    std::vector<seg> out;
    std::vector<seg> writing;
    std::string gen;
    std::string gen_writing;
    std::vector<out_span> spans;
    bool writing_in = false;  // `writing` points into in_
    std::vector<char> rbuf;
    size_t rstart = 0;
    size_t rend = 0;
    size_t read_at = 0;  // as read_at_, for this link's read buffer
    uint64_t silent_seq = 0;  // the last command sent here that answers nothing (CLIENT REPLY), +1
    bool shared = false;      // its bytes ride a shared connection of the worker's upstream
    uint32_t untaken = 0;     // items pushed since the upstream last took this link's bytes
    uint8_t marks_untaken = 0;  // ...and what they hold (shared_link::mark_solo)
    bool named = false;  // a CLIENT SETNAME was answered OK here (take_link_named)
    reply_framer framer;
    bool server_multi = false;  // the server connection is inside MULTI
    // The server connection's CLIENT REPLY state, as the commands sent on it set it. The
    // client's own (reply_off_, reply_skip_next_) may differ: CLIENT REPLY reaches one
    // backend, and a new connection starts with replies on.
    bool server_reply_off = false;
    bool server_skip_next = false;
    bool served = false;     // a client command was answered on this connection
    // The latest reply on it refused its request with a protocol error, after which the
    // server closes the connection (refused()): that command's number.
    uint64_t refused_seq = UINT64_MAX;
    bool reconnect = false;  // reopen it now, to restore the client's state (on_link_failed)
    // WAIT counts the replicas that have the connection's last write. The client wrote on
    // a connection other than the one it now holds (a shared one, or an own connection
    // since closed): the next WAIT on its own connection is preceded by a write of the
    // proxy's (wait_sync), so that the server waits for the client's writes, not for none.
    bool woff_behind = false;
    bool conn_wrote = false;  // a write went on the connection it holds now
  };

  // A transaction the proxy holds (its commands were answered +QUEUED locally).
  struct tx_block {
    std::vector<seg> cmds;  // the commands between MULTI and EXEC, in in_
    size_t exec_off = SIZE_MAX;  // EXEC itself
    size_t exec_len = 0;
    bool multi_sent = false;
    policy::action act = policy::action::forward;  // while the backend is not ready
    // A command of it is neither loading-safe nor queued (forward): the server's LOADING
    // abort is the client's answer, and the block is not sent again.
    bool forwards_unsafe = false;
    uint32_t timeout_ms = UINT32_MAX;
    int32_t backend = -1;    // slots mode: the backend its keys live on
    int32_t slot = -1;       // cluster mode: the slot its keys live in
    bool crossslot = false;  // slots mode: its keys live on several backends
    int32_t multi_backend = -1;  // where its MULTI (and the commands after it) went
    bool broken = false;     // that connection broke: the server forgot the head of the block
    uint8_t flushes = 0;     // FLUSHALL/FLUSHDB/SWAPDB inside it
    bool watched = false;    // a WATCH was active at EXEC: it cannot be sent a second time
  };

  // ---- requests and decisions (session/core.cpp; buffers in session/buffers.cpp,
  //      the fence in session/fence.cpp) ----
  void parse_input();
  void accept_request(size_t off, size_t len, std::string_view view);
  // Decides an entry; false if it is (still) held.
  bool dispatch(entry& e, const routing::arg_source& args);
  void hold(entry& e, hold_reason why);
  void admit_in_order(entry& e, const routing::arg_source& args);
  // What policy::decide needs for a command whose backend is not serving (dispatch, and
  // admit_in_order, which must decide as dispatch will).
  policy::decide_input loading_input(const backend_view& v, const policy::rule& ru,
                                     policy::command_kind k,
                                     const routing::arg_source& args) const;
  bool hold_for_loading(entry& e, size_t b, uint32_t timeout_ms);
  void release_admission(entry& e);
  void send(entry& e, size_t b, const routing::arg_source& args);
  void send_rewritten_ping(entry& e, size_t b, const routing::arg_source& args);
  void send_gen(size_t b, std::string_view bytes, uint8_t what, uint64_t seq, uint16_t tag = 0);
  // Before a command whose reply the proxy waits for goes on link b: a server connection
  // that CLIENT REPLY left silent (OFF, or a SKIP still pending) is made to answer again.
  // False where it cannot be (inside MULTI under OFF): the server will answer nothing.
  bool expect_server_reply(size_t b, uint64_t seq);
  // Whether the server answers the command about to go on l, under the connection's
  // CLIENT REPLY state; that state moves as the server moves it.
  static bool server_answers(link& l, const entry& e, const routing::arg_source& args);
  // Whether the server answers e on link b whatever the connection's CLIENT REPLY state
  // (CLIENT REPLY ON, RESET, pub/sub confirmations): no need to make it answer first.
  bool answered_whatever_mode(size_t b, const entry& e, const routing::arg_source& args) const;
  // Whether the client hears e's reply (e.quiet), under its CLIENT REPLY; that state
  // moves as the server moves it. Once per command, in the client's order.
  void decide_reply(entry& e, const routing::arg_source& args);
  void append_in(link& l, size_t off, size_t len);
  void answer_local(entry& e, std::string_view reply);
  bool start_flush(entry& e, const std::vector<size_t>& targets, const char* why);
  bool fenced(const entry& e, size_t b) const;
  bool fence_drained(const fence_mark& f) const;
  bool own_flush_on_wire() const;
  void answer_null_exec(entry& e);
  void push_item(link& l, inflight_item it);
  // Shared mode: a command that needs a connection of its own, or that changes the
  // connection's key, first waits for this client's commands in flight on the shared
  // connection; false while it waits. `pin_all` pins every link (a fan-out).
  bool shared_prepare(entry& e, const policy::command_entry* cmd, const routing::arg_source& args,
                      size_t b, bool pin_all);
  // Shared mode, a command on its way: a script marks its batch solo; CLIENT PAUSE tells
  // the worker's upstream (session_env::note_pause) when it is sent, or with the EXEC of
  // its block; CLIENT UNPAUSE is marked, and noted once it is answered OK.
  void note_shared_effects(entry& e, link& l, const routing::arg_source& args);
  // ...and what its answer (not an error) says: a name on a shared connection, a pause
  // that ended.
  void note_shared_reply(const entry& e);
  bool answer_client_name(entry& e, const routing::arg_source& args);
  int64_t tx_pause_ms_ = 0;  // shared mode: the longest CLIENT PAUSE queued in this MULTI
  // The server refused the proxy's wait_sync write (an ACL user with no channels, a
  // server without SPUBLISH): it is not sent again for this client.
  bool wait_sync_refused_ = false;
  bool pinned_for_good_ = false;  // pinned by state that cannot be replayed
  std::vector<seg> tunnel_held_;  // SYNC's bytes, waiting for a new link's replayed state
  // A MULTI block on the server: state commands answered +QUEUED, by their place in the
  // block, applied when EXEC's reply says they ran.
  struct tx_state_cmd {
    size_t index;
    policy::command_kind kind;
    std::string args;
  };
  std::vector<tx_state_cmd> tx_state_;
  size_t tx_queued_ = 0;
  void on_exec_reply(std::string_view reply, const reply_info& info);
  void apply_state(policy::command_kind kind, std::string_view request);
  // The next whole reply read on link b, framed; false when more is needed (or the link
  // failed on a protocol error).
  bool next_link_reply(size_t b, std::string_view& reply);
  bool links_quiet() const;
  // Shared mode: how many requests may be in flight. A shared connection is never stopped
  // for one client that does not read, so its replies in flight are bounded instead: by
  // its output limit over the size its replies have had (at first, 16).
  size_t inflight_cap() const;
  void grow_links(size_t n);
  void update_key();
  // SYNC/PSYNC: from this request on, the client's connection is a byte tunnel to the
  // backend's (the RDB payload and the command stream are not RESP replies).
  void start_tunnel(entry& e, size_t b);
  void tunnel_client_data(size_t n);
  void tunnel_link_data(size_t b);
  // The client's transaction ends without the server's EXEC/DISCARD: end its WATCH there
  // too, as they would have.
  void end_watch(entry& e);

  // ---- LOADING answers and retries (session/retry.cpp) ----
  void begin_wait(entry& e, size_t b, const inflight_item& it, std::string_view reply);
  void on_ran(size_t b);        // a command on link b ran: earlier LOADING answers stand
  void check_quiet(size_t b);
  void settle_waits();          // decide the waits whose verdict is in
  void end_wait(size_t i, bool retry);
  void forget_waits(uint64_t seq);
  void compact_input();
  size_t input_floor() const;

  // ---- transactions (session/tx.cpp) ----
  // `ru` is the command's rule, as dispatch() looked it up.
  bool dispatch_tx(entry& e, const routing::arg_source& args, const policy::command_entry* cmd,
                   routing::route r, const policy::rule& ru);
  bool defer_command(entry& e, const routing::arg_source& args, const policy::command_entry* cmd,
                     routing::route r, const policy::rule& ru);
  bool exec_held_tx(entry& e, size_t b);
  void abandon_tx(entry& e);
  // The server answered `seq` with a protocol error and closes the connection: nothing
  // after it runs or is answered (the client is closed after that reply).
  void drop_after(uint64_t seq);
  // A reply that refuses its request with a protocol error (refuses), and what follows.
  bool refuses(const entry& e, std::string_view reply, const reply_info& info);
  void refused(size_t b, const entry& e);
  void free_tx(int32_t i);
  void reset_tx();

  // ---- slots mode: split and fan-out (session/sharded.cpp) ----
  bool dispatch_sharded(entry& e, const routing::arg_source& args, const policy::rule& ru,
                        routing::route r);
  // A refused command, or a fan-out that changes state on every backend inside MULTI:
  // answered here (true).
  bool refuse_sharded(entry& e, const routing::route& r);
  bool send_parts(entry& e);
  void on_part_reply(entry& e, uint16_t part, std::string_view reply);
  void retry_part(entry& e, uint16_t part, size_t b);
  void finish_merge(entry& e);

  // ---- replies and output (session/replies.cpp; redirections in session/cluster.cpp) ----
  void on_reply(size_t b, std::string_view reply, const reply_info& info);
  bool out_of_band(size_t b, std::string_view reply, const reply_info& info) const;
  void deliver(entry& e, std::string_view reply);
  void complete(entry& e);
  void flush_head();
  void fail_link(size_t b, std::string_view why);
  // The link is gone: it forgets what it was to send and hands back what was in flight.
  ring<inflight_item> close_link_state(size_t b);
  // Calls f(entry, item) for each item of a client command still waiting (defined and
  // used in session/replies.cpp).
  template <typename F>
  void for_each_waiting(const ring<inflight_item>& items, F&& f);
  void after_completion();
  void check_fence_drained();
  bool output_over_limit() const;
  void on_subscribe_confirmation(std::string_view reply, const reply_info& info);
  // Cluster mode: -MOVED, -ASK, -TRYAGAIN, -CLUSTERDOWN. True if handled (the reply is
  // then the proxy's, never the client's).
  bool redirected(size_t b, const inflight_item& it, std::string_view line);
  void hold_retry(entry& e);
  void record_state(const entry& e, std::string_view reply);

  entry& at(uint64_t seq) { return pipe_[seq - head_seq_]; }
  const routing::router& rt() const { return env_.router(); }
  link& ensure_link(size_t b);

  session_env& env_;
  limits lim_;

  // Client input: [0, in_len_) holds bytes; requests before parse_pos_ are framed.
  std::vector<char> in_;
  size_t in_len_ = 0;
  // Where the shell's outstanding read puts its bytes. If the buffer was reset to 0 in
  // the meantime (everything answered), the bytes are moved down on arrival.
  size_t read_at_ = 0;
  size_t parse_pos_ = 0;
  request_framer framer_;
  request_framer reframer_;  // re-frames a held request when it is decided later
  std::vector<size_t> keys_;

  ring<entry> pipe_;
  uint64_t head_seq_ = 0;  // seq of pipe_[0]
  uint64_t next_seq_ = 0;
  size_t held_ = 0;
  bool watching_ = false;
  std::vector<retry_wait> waits_;
  std::string kept_;  // LOADING answers of entries waiting for a verdict
  size_t kept_live_ = 0;
  bool waits_changed_ = false;

  std::deque<link> links_;  // grows as backends appear; references stay valid
  size_t in_pins_ = 0;  // links whose write in progress points into in_

  std::string out_;      // replies ready for the client, in order
  std::string writing_;  // being written
  std::string stash_;    // replies that came back before their turn
  size_t stash_live_ = 0;
  size_t stash_bytes_ = 0;  // of those, the bytes not yet sent on (what counts for the limit)
  size_t reply_avg_ = 0;    // shared mode: its replies' size, a moving average (0: none yet)

  slot_pool<merge_state> merges_;
  slot_pool<tx_block> txs_;

  // Shared mode: this client's connection key, and the one a SELECT/AUTH/HELLO/RESET on
  // its way will give it; commands after that one wait for its answer (key_wait_seq_).
  pool_key key_;
  pool_key key_target_;
  bool key_target_set_ = false;
  uint64_t key_wait_seq_ = UINT64_MAX;
  std::string auth_key_;     // the AUTH (or HELLO's AUTH) that succeeded, as AUTH
  std::string client_name_;  // CLIENT SETNAME, answered by the proxy in shared mode
  bool has_name_ = false;

  // Per-connection state, replayed on every new backend connection.
  std::string replay_auth_;
  std::string replay_hello_;
  std::string replay_select_;
  std::string replay_setname_;
  int db_ = 0;
  bool resp3_ = false;

  // WATCH: active on the server connection `watch_link_`; lost when that connection broke
  // (the next EXEC then answers a null array, as for a touched key, never a commit).
  bool watch_active_ = false;
  bool watch_lost_ = false;
  size_t watch_link_ = 0;

  // Transactions.
  bool tx_open_ = false;      // the client is between MULTI and EXEC/DISCARD
  uint8_t tx_flushes_ = 0;    // flushes queued on the server inside this MULTI
  bool tx_deferred_ = false;  // ...and the proxy holds the block
  bool tx_dirty_ = false;     // a command of the held block failed: EXEC aborts
  bool tx_aborted_ = false;   // the backend connection broke inside MULTI
  int32_t watch_backend_ = -1;  // slots mode: where WATCH went
  int32_t tx_cur_ = -1;       // the held block being built
  size_t tx_floor_ = SIZE_MAX;

  // Pub/sub, MONITOR, CLIENT TRACKING, CLIENT REPLY.
  int64_t sub_channels_ = 0;
  int64_t sub_patterns_ = 0;
  int64_t sub_shard_ = 0;
  bool monitor_ = false;
  bool tunnel_ = false;  // SYNC/PSYNC: bytes flow as they are, both ways
  size_t tunnel_link_ = 0;
  bool tracking_ = false;
  bool reply_off_ = false;
  bool reply_skip_next_ = false;
  // SUBSCRIBE-family commands decided and not yet answered (confirmed or refused): while
  // any is, whether a RESP2 connection is in subscribed context (where CLIENT REPLY is
  // refused) is not known yet.
  uint32_t sub_inflight_ = 0;

  // Flush fences up now, and the entry whose flush is raising one (its own later
  // commands come after the flush, even if they were read in the same batch).
  std::vector<fence_mark> fences_;
  uint64_t flushing_seq_ = UINT64_MAX;

  int64_t batch_us_ = 0;     // when the current batch of bytes arrived
  bool touched_ = false;     // bytes moved since the last idle sweep
  bool stop_input_ = false;  // QUIT, protocol error, shutdown: no more requests
  bool eof_ = false;  // the client's end of file: what it sent is still run (on_client_eof)
  bool eof_abort_ = false;  // ...but a command that would wait for it came up: close now
  bool close_when_done_ = false;
  uint64_t dropped_after_ = UINT64_MAX;
  size_t auth_inflight_ = 0;  // AUTH and HELLO commands not yet answered
  // Whether the server took this client, with no AUTH of its own, as authenticated: its
  // latest answer said -NOAUTH (refused) or served it; unknown: the worker's guess.
  enum class auth_seen : uint8_t { unknown, refused, served };
  auth_seen auth_seen_ = auth_seen::unknown;  // drop_after(): nothing after it is sent or heard
  bool client_gone_ = false;
  bool shutting_down_ = false;
  void* user_ = nullptr;
};

}  // namespace respfence::proxy

#include "proxy/prober.hpp"

#include <hiredis/hiredis.h>
#include <cerrno>
#include <chrono>
#include <string>

#include "proxy/hiredis_raw.hpp"

namespace respfence::proxy {

namespace {

timeval to_tv(uint32_t ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms % 1000) * 1000);
  return tv;
}

struct reply_ptr {
  redisReply* r;
  explicit reply_ptr(void* p) : r(static_cast<redisReply*>(p)) {}
  ~reply_ptr() {
    if (r) freeReplyObject(r);
  }
  reply_ptr(const reply_ptr&) = delete;
  reply_ptr& operator=(const reply_ptr&) = delete;
};

void add_learned(const resp_value& v, policy::learned_commands& out) {
  if (v.type != '*' || v.elems.size() < 6 || v.elems[0].str.empty()) return;
  policy::command_entry e;
  e.name = v.elems[0].str;
  e.arity = static_cast<int32_t>(v.elems[1].integer);
  for (const auto& f : v.elems[2].elems) e.flags |= policy::parse_command_flag(f.str);
  e.first_key = static_cast<int32_t>(v.elems[3].integer);
  e.last_key = static_cast<int32_t>(v.elems[4].integer);
  e.key_step = static_cast<int32_t>(v.elems[5].integer);
  out.entries.push_back(std::move(e));
  if (v.elems.size() > 9) {
    for (const auto& sub : v.elems[9].elems) add_learned(sub, out);
  }
}

}  // namespace

prober::prober(backend_registry& reg, size_t backend, policy::endpoint ep,
               const health_settings& hs)
    : reg_(reg), b_(backend), ep_(std::move(ep)), hs_(hs) {}

prober::~prober() {
  join();
  drop();
}

void prober::start() { thread_ = std::thread([this] { run(); }); }

void prober::join() {
  if (thread_.joinable()) thread_.join();
}

void prober::drop() {
  if (ctx_ != nullptr) {
    redisFree(ctx_);
    ctx_ = nullptr;
  }
}

bool prober::connect(std::string& why) {
  const timeval tv = to_tv(hs_.timeout_ms.load());
  ctx_ = ep_.is_unix() ? redisConnectUnixWithTimeout(ep_.unix_path.c_str(), tv)
                       : redisConnectWithTimeout(ep_.host.c_str(), ep_.port, tv);
  if (ctx_ == nullptr || ctx_->err != 0) {
    why = ctx_ ? ctx_->errstr : "out of memory";
    drop();
    return false;
  }
  redisSetTimeout(ctx_, tv);
  const auto& cfg = reg_.config(b_);
  if (!cfg.password.empty()) {
    reply_ptr r(cfg.username.empty()
                    ? redisCommand(ctx_, "AUTH %s", cfg.password.c_str())
                    : redisCommand(ctx_, "AUTH %s %s", cfg.username.c_str(), cfg.password.c_str()));
    if (r.r == nullptr || r.r->type == REDIS_REPLY_ERROR) {
      why = r.r ? std::string(r.r->str, r.r->len) : std::string(ctx_->errstr);
      drop();
      return false;
    }
  }
  return true;
}

bool prober::probe(std::string& why) {
  const uint64_t round = reg_.probe_begin(b_);
  timed_out_ = false;
  std::string text;
  bool busy = false;
  bool blind = false;
  auto info = [&](const char* cmd) -> int {
    reply_ptr r(redisCommand(ctx_, cmd));
    if (r.r == nullptr) {
      const int e = errno;
      why = std::string("probe failed: ") + ctx_->errstr;
      // The read timed out (SO_RCVTIMEO): the connection is up, the server silent.
      timed_out_ = ctx_->err == REDIS_ERR_IO && (e == EAGAIN || e == EWOULDBLOCK);
      return -1;
    }
    if (r.r->type == REDIS_REPLY_ERROR) {
      why = std::string(r.r->str, r.r->len);
      // A script or function past busy-reply-threshold: the server is up and answers
      // at once, but runs nothing else until it ends or is killed.
      busy = why.rfind("BUSY", 0) == 0;
      blind = why.rfind("NOAUTH", 0) == 0 || why.rfind("NOPERM", 0) == 0;
      return 0;
    }
    if (r.r->type == REDIS_REPLY_STRING) text.append(r.r->str, r.r->len);
    return 1;
  };
  // An error that says the server is up all the same: it is busy, or it will not tell
  // the prober its state. True if so (the probe is answered).
  auto answered_up = [&] {
    if (busy) reg_.probe_busy(b_, why, round);
    if (blind) reg_.probe_blind(b_, why, round);
    return busy || blind;
  };
  if (!split_info_) {
    const int rc = info("INFO server persistence commandstats cluster");
    if (rc < 0) return false;
    if (answered_up()) return true;
    if (rc == 0) split_info_ = true;  // before Redis 7 INFO takes one section
  }
  if (split_info_) {
    const int rc = info("INFO") <= 0 ? -1 : info("INFO commandstats");
    if (answered_up()) return true;
    if (rc <= 0) return false;
  }
  policy::probe_info parsed = policy::parse_info(text);
  if (parsed.cluster_enabled && !parsed.loading) {
    // Same key:value text; an error (a node still starting) leaves the state unknown.
    text.clear();
    if (info("CLUSTER INFO") < 0) return false;
    parsed.cluster_state = policy::parse_info(text).cluster_state;
  }
  reg_.probe_answer(b_, parsed, round);
  return true;
}

void prober::learn() {
  auto v = raw_command(ctx_, {"COMMAND"}, hs_.timeout_ms.load() * 2);
  if (!v) {
    // A half-read reply leaves the connection out of step: start a new one.
    drop();
    return;
  }
  policy::learned_commands learned;
  for (const auto& c : v->elems) add_learned(c, learned);
  if (!learned.entries.empty()) reg_.learned(b_, learned);
}

void prober::run() {
  std::string why;
  while (!reg_.stopping()) {
    if (reg_.retired(b_)) {
      // A node that left the cluster is not probed (it may be gone for good).
      drop();
      reg_.wait(b_, std::chrono::milliseconds(hs_.interval_ms.load()));
      continue;
    }
    if (ctx_ == nullptr) {
      if (!connect(why)) {
        reg_.probe_failed(b_, why);
        reg_.wait(b_, std::chrono::milliseconds(hs_.loading_interval_ms.load()));
        continue;
      }
      reg_.probe_connected(b_);
      if (hs_.learn.load() && learn_failures_ < 3) {
        learn();
        if (ctx_ == nullptr) {
          ++learn_failures_;
          continue;
        }
      }
    }
    if (!probe(why)) {
      drop();
      if (timed_out_) {
        reg_.probe_timed_out(b_, why);
      } else {
        reg_.probe_failed(b_, why);
      }
      reg_.wait(b_, std::chrono::milliseconds(hs_.loading_interval_ms.load()));
      continue;
    }
    // Ready or busy: the server answers; nothing to watch closely.
    const bool ready = policy::serving(reg_.snapshot(b_).state);
    reg_.wait(b_, std::chrono::milliseconds(ready ? hs_.interval_ms.load()
                                                  : hs_.loading_interval_ms.load()));
  }
}

}  // namespace respfence::proxy

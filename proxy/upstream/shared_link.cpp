#include "proxy/upstream/shared_link.hpp"

#include <algorithm>
#include <cstring>

#include "proxy/resp/resp_writer.hpp"

namespace respfence::proxy {

namespace {
constexpr size_t min_read = 16 * 1024;
constexpr size_t big_buffer = 1u << 20;
}  // namespace

void shared_link::push_run(owner o, size_t replies, bool solo) {
  if (replies == 0) return;
  due_ += replies;
  // Consecutive batches of one owner are one run.
  if (!runs_.empty() && runs_.back().o == o && o != nullptr) {
    run& r = runs_.back();
    r.replies += static_cast<uint32_t>(replies);
    if (solo && !r.solo) {
      r.solo = true;
      ++solo_runs_;
    }
    return;
  }
  runs_.push_back(run{o, static_cast<uint32_t>(replies), solo});
  if (solo) ++solo_runs_;
}

void shared_link::pop_run() {
  if (runs_.front().solo) --solo_runs_;
  runs_.pop_front();
}

void shared_link::on_connected() {
  std::string hs;
  size_t n = 0;
  if (!key_.auth.empty()) {
    hs += key_.auth;
    ++n;
  }
  if (key_.resp3) {
    write_to(hs).array(2).bulk("HELLO").bulk("3");
    ++n;
  }
  if (key_.db != 0) {
    write_to(hs).array(2).bulk("SELECT").bulk(std::to_string(key_.db));
    ++n;
  }
  if (n == 0) return;
  // The handshake goes before anything queued meanwhile (its bytes first in gen_ too:
  // take_output gives the link's own spans their bytes in order).
  gen_.insert(0, hs);
  out_.insert(out_.begin(), out_span{nullptr, hs.size()});
  runs_.push_front(run{nullptr, static_cast<uint32_t>(n), false});
  due_ += n;
}

void shared_link::add_own(std::string_view cmd, size_t replies) {
  gen_.append(cmd);
  out_.push_back(out_span{nullptr, cmd.size()});
  push_run(nullptr, replies, false);
}

shared_link::failure shared_link::on_failed() {
  failure f;
  auto note = [](std::vector<owner>& v, owner o) {
    if (o != nullptr && o != dropped() && std::find(v.begin(), v.end(), o) == v.end()) {
      v.push_back(o);
    }
  };
  f.after_protocol_error = last_protocol_error_;
  last_protocol_error_ = false;
  for (size_t i = 0; i < runs_.size(); ++i) note(f.due, runs_[i].o);
  for (owner o : out_owners_) note(f.batched, o);
  for (owner o : writing_owners_) note(f.batched, o);
  runs_.clear();
  due_ = 0;
  solo_runs_ = 0;
  out_.clear();
  out_owners_.clear();
  writing_.clear();
  writing_owners_.clear();
  gen_writing_.clear();
  gen_.clear();
  framer_.reset();
  rstart_ = rend_ = read_at_ = 0;
  bad_ = false;
  named_by_ = nullptr;  // a new connection has no name
  return f;
}

void shared_link::add(owner o, const std::vector<out_span>& spans, size_t replies, uint8_t marks) {
  const bool solo = (marks & mark_solo) != 0;
  out_.insert(out_.end(), spans.begin(), spans.end());
  if (std::find(out_owners_.begin(), out_owners_.end(), o) == out_owners_.end()) {
    out_owners_.push_back(o);
  }
  push_run(o, replies, solo);
}

const std::vector<out_span>& shared_link::take_output() {
  std::swap(out_, writing_);
  std::swap(out_owners_, writing_owners_);
  std::swap(gen_, gen_writing_);
  out_.clear();
  out_owners_.clear();
  gen_.clear();
  // The link's own spans (the handshake, a cleared name) were recorded before their
  // bytes had a stable address; they lie in gen_ in the order they were added.
  size_t off = 0;
  for (out_span& s : writing_) {
    if (s.data != nullptr) continue;
    s.data = gen_writing_.data() + off;
    off += s.size;
  }
  return writing_;
}

void shared_link::output_done() {
  writing_.clear();
  writing_owners_.clear();
  gen_writing_.clear();
}

std::pair<char*, size_t> shared_link::read_buffer() {
  if (rstart_ == rend_) {
    rstart_ = rend_ = 0;
    if (rbuf_.size() > big_buffer) std::vector<char>(min_read).swap(rbuf_);
  }
  if (rbuf_.size() - rend_ < min_read / 4) {
    if (rstart_ > 0) {
      std::memmove(rbuf_.data(), rbuf_.data() + rstart_, rend_ - rstart_);
      rend_ -= rstart_;
      rstart_ = 0;
    }
    if (rbuf_.size() - rend_ < min_read / 4) {
      rbuf_.resize(std::max(rbuf_.size() * 2, rend_ + min_read));
    }
  }
  read_at_ = rend_;
  return {rbuf_.data() + rend_, rbuf_.size() - rend_};
}

void shared_link::forget(owner o) {
  for (size_t i = 0; i < runs_.size(); ++i) {
    if (runs_[i].o == o) runs_[i].o = dropped();
  }
  out_owners_.erase(std::remove(out_owners_.begin(), out_owners_.end(), o), out_owners_.end());
  if (named_by_ == o) clear_name();
}

void shared_link::clear_name() {
  named_by_ = nullptr;
  add_own("*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n$0\r\n\r\n", 1);
}


}  // namespace respfence::proxy

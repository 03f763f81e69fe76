#pragma once
// A growable FIFO on one power-of-two array. Unlike std::deque it never allocates once it
// has grown to the working size, which keeps the per-command path allocation-free.

#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

namespace respfence::proxy {

template <typename T>
class ring {
 public:
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  T& operator[](size_t i) { return buf_[(head_ + i) & mask()]; }
  const T& operator[](size_t i) const { return buf_[(head_ + i) & mask()]; }
  T& front() { return (*this)[0]; }
  const T& front() const { return (*this)[0]; }
  T& back() { return (*this)[size_ - 1]; }

  // Appends a value-initialised element and returns it. Every slot outside the live range
  // already holds T{} (the array is created so, and pop_front/pop_back reset what they
  // free), so nothing is written here: a session's 170-byte entry was built on the stack
  // and copied in twice per request before.
  T& emplace_back() {
    if (size_ == buf_.size()) grow();
    T& slot = buf_[(head_ + size_) & mask()];
    ++size_;
    return slot;
  }
  T& push_back(T v) {
    if (size_ == buf_.size()) grow();
    T& slot = buf_[(head_ + size_) & mask()];
    slot = std::move(v);
    ++size_;
    return slot;
  }
  void push_front(T v) {
    if (size_ == buf_.size()) grow();
    head_ = (head_ + buf_.size() - 1) & mask();
    buf_[head_] = std::move(v);
    ++size_;
  }
  void pop_front() {
    reset(buf_[head_]);
    head_ = (head_ + 1) & mask();
    --size_;
  }
  void pop_back() {
    reset((*this)[size_ - 1]);
    --size_;
  }
  void clear() {
    while (!empty()) pop_front();
    head_ = 0;
  }

 private:
  size_t mask() const { return buf_.size() - 1; }
  // Value-initialises in place: `slot = T{}` built the element on the stack and copied it,
  // which for a session entry was most of the cost of answering a command.
  static void reset(T& slot) {
    std::destroy_at(&slot);
    std::construct_at(&slot);
  }
  void grow() {
    std::vector<T> next(buf_.empty() ? 16 : buf_.size() * 2);
    for (size_t i = 0; i < size_; ++i) next[i] = std::move((*this)[i]);
    buf_ = std::move(next);
    head_ = 0;
  }

  std::vector<T> buf_;
  size_t head_ = 0;
  size_t size_ = 0;
};

}  // namespace respfence::proxy

#pragma once
// Objects addressed by a small index, reused through a free list: merge states and held
// transactions are taken and given back per command, so that, once warm, none of them
// costs an allocation.

#include <cstdint>
#include <vector>

namespace respfence::proxy {

template <typename T>
class slot_pool {
 public:
  int32_t acquire() {
    if (!free_.empty()) {
      const int32_t i = free_.back();
      free_.pop_back();
      return i;
    }
    items_.emplace_back();
    return static_cast<int32_t>(items_.size() - 1);
  }
  void release(int32_t i) { free_.push_back(i); }
  T& operator[](int32_t i) { return items_[static_cast<size_t>(i)]; }
  // Every object, in use or free.
  typename std::vector<T>::iterator begin() { return items_.begin(); }
  typename std::vector<T>::iterator end() { return items_.end(); }

 private:
  std::vector<T> items_;
  std::vector<int32_t> free_;
};

}  // namespace respfence::proxy

#pragma once
// Redis Cluster's key hashing, bit for bit: CRC16 (XMODEM) of the key, or of its first
// non-empty {hashtag}, modulo 16384; and the map from slots to backends.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace respfence::routing {

inline constexpr uint16_t slot_count = 16384;

uint16_t crc16(const char* data, size_t len);
// CLUSTER KEYSLOT.
uint16_t key_slot(std::string_view key);

// Slot -> backend index. Replaceable at run time: cluster mode rebuilds it from the
// cluster's own topology, so routing holds it by value and swaps whole maps.
class slot_map {
 public:
  struct range {
    uint16_t first;
    uint16_t last;  // inclusive
  };

  slot_map() { owner_.fill(0); }
  // Explicit ranges per backend (every slot must be covered), or an even split in order.
  static slot_map from_ranges(const std::vector<std::vector<range>>& per_backend);
  static slot_map even(size_t backends);

  uint16_t owner(uint16_t slot) const { return owner_[slot]; }
  void set_owner(uint16_t slot, uint16_t backend) { owner_[slot] = backend; }
  void set_backends(size_t n) { backends_ = n; }
  uint16_t owner_of_key(std::string_view key) const { return owner_[key_slot(key)]; }
  size_t backends() const { return backends_; }

 private:
  std::array<uint16_t, slot_count> owner_;
  size_t backends_ = 1;
};

}  // namespace respfence::routing

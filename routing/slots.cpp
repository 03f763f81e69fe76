#include "routing/slots.hpp"

#include <cmath>

namespace respfence::routing {

namespace {
// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, no reflection. The table is
// derived from the polynomial at compile time.
constexpr std::array<uint16_t, 256> make_table() {
  std::array<uint16_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t crc = i << 8;
    for (int b = 0; b < 8; ++b) crc = (crc & 0x8000) ? ((crc << 1) ^ 0x1021) : (crc << 1);
    t[i] = static_cast<uint16_t>(crc & 0xffff);
  }
  return t;
}
constexpr auto k_table = make_table();
}  // namespace

uint16_t crc16(const char* data, size_t len) {
  uint16_t crc = 0;
  for (size_t i = 0; i < len; ++i) {
    crc = static_cast<uint16_t>((crc << 8) ^
                                k_table[((crc >> 8) ^ static_cast<unsigned char>(data[i])) & 0xff]);
  }
  return crc;
}

uint16_t key_slot(std::string_view key) {
  // Only the first '{' counts, and only if a '}' follows with something in between.
  const size_t open = key.find('{');
  if (open != std::string_view::npos) {
    const size_t close = key.find('}', open + 1);
    if (close != std::string_view::npos && close != open + 1) {
      key = key.substr(open + 1, close - open - 1);
    }
  }
  return crc16(key.data(), key.size()) & (slot_count - 1);
}

slot_map slot_map::from_ranges(const std::vector<std::vector<range>>& per_backend) {
  slot_map m;
  m.backends_ = per_backend.size();
  for (size_t b = 0; b < per_backend.size(); ++b) {
    for (const range& r : per_backend[b]) {
      for (uint32_t s = r.first; s <= r.last; ++s) m.owner_[s] = static_cast<uint16_t>(b);
    }
  }
  return m;
}

slot_map slot_map::even(size_t backends) {
  // The same split as `redis-cli --cluster create`: N ranges of 16384/N slots, rounded,
  // the last one running to 16383.
  slot_map m;
  m.backends_ = backends == 0 ? 1 : backends;
  const double per = static_cast<double>(slot_count) / static_cast<double>(m.backends_);
  double cursor = 0;
  long first = 0;
  for (size_t i = 0; i < m.backends_; ++i) {
    long last = std::lround(cursor + per - 1);
    if (last > slot_count - 1 || i == m.backends_ - 1) last = slot_count - 1;
    if (last < first) last = first;
    for (long s = first; s <= last; ++s) m.owner_[static_cast<size_t>(s)] = static_cast<uint16_t>(i);
    first = last + 1;
    cursor += per;
  }
  return m;
}

}  // namespace respfence::routing

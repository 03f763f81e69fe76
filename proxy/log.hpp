#pragma once
// Structured logs: one line per event on stderr, `ts=... level=... event=... k=v ...`.
// Only events (state changes, flush epochs, reloads, backend errors), never per command.

#include <atomic>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

#include "policy/config.hpp"

namespace respfence::proxy::log {

using level = policy::log_level;

void set_level(level l);
level current_level();
bool enabled(level l);

struct field {
  std::string_view key;
  std::string value;
  field(std::string_view k, std::string_view v) : key(k), value(v) {}
  field(std::string_view k, const std::string& v) : key(k), value(v) {}
  field(std::string_view k, const char* v) : key(k), value(v) {}
  template <typename T, typename = std::enable_if_t<std::is_arithmetic_v<T>>>
  field(std::string_view k, T v) : key(k), value(std::to_string(v)) {}
};

void write(level l, std::string_view event, std::initializer_list<field> fields);

inline void debug(std::string_view ev, std::initializer_list<field> f = {}) {
  if (enabled(level::debug)) write(level::debug, ev, f);
}
inline void info(std::string_view ev, std::initializer_list<field> f = {}) {
  if (enabled(level::info)) write(level::info, ev, f);
}
inline void warn(std::string_view ev, std::initializer_list<field> f = {}) {
  if (enabled(level::warn)) write(level::warn, ev, f);
}
inline void error(std::string_view ev, std::initializer_list<field> f = {}) {
  if (enabled(level::error)) write(level::error, ev, f);
}

}  // namespace respfence::proxy::log

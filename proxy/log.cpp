#include "proxy/log.hpp"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace respfence::proxy::log {

namespace {
std::atomic<int> g_level{static_cast<int>(level::info)};
std::mutex g_mu;

// Values with spaces, quotes or '=' are quoted so that every line stays parseable.
void append_value(std::string& out, const std::string& v) {
  const bool plain = !v.empty() && v.find_first_of(" \"=\t\r\n") == std::string::npos;
  if (plain) {
    out += v;
    return;
  }
  out += '"';
  for (char c : v) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else {
      out += c;
    }
  }
  out += '"';
}
}  // namespace

void set_level(level l) { g_level.store(static_cast<int>(l), std::memory_order_relaxed); }
level current_level() { return static_cast<level>(g_level.load(std::memory_order_relaxed)); }
bool enabled(level l) { return static_cast<int>(l) >= g_level.load(std::memory_order_relaxed); }

void write(level l, std::string_view event, std::initializer_list<field> fields) {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char ts[96];
  std::snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  std::string line = "ts=";
  line += ts;
  line += " level=";
  line += policy::to_string(l);
  line += " event=";
  line += event;
  for (const field& f : fields) {
    line += ' ';
    line += f.key;
    line += '=';
    append_value(line, f.value);
  }
  line += '\n';
  std::lock_guard<std::mutex> lock(g_mu);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace respfence::proxy::log

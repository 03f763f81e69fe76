#pragma once
// Small text helpers shared by every layer: line splitting for the data tables and INFO,
// and the case-insensitive compare the command names need.

#include <string_view>

namespace respfence::policy {

// Calls f(line) for each line of `text`, without its "\n" or "\r\n".
template <typename F>
void for_each_line(std::string_view text, F&& f) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    f(line);
  }
}

// `a` equals `lower` (already lower case) ignoring ASCII case.
inline bool iequals_lower(std::string_view a, std::string_view lower) {
  if (a.size() != lower.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char c = a[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
    if (c != lower[i]) return false;
  }
  return true;
}

}  // namespace respfence::policy

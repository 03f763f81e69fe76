#pragma once
// Reads the TOML config (design.md §3). Every error names file:line:column. This is the only
// part of respfence that sees toml++.

#include <string>
#include <string_view>

#include "policy/config.hpp"

namespace respfence::policy {

struct load_result {
  config cfg;
  std::string error;  // "path:line:col: message"; empty on success
  bool ok() const { return error.empty(); }
};

load_result load_config_file(const std::string& path);
// `source` names the text in error messages.
load_result load_config_text(std::string_view text, std::string_view source);

}  // namespace respfence::policy

// libFuzzer: the TOML config loader never crashes; it either accepts a config that
// passes validation, or reports an error that names the source.

#include <cstdint>
#include <cstdlib>
#include <string>

#include "policy/config_loader.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto r = respfence::policy::load_config_text(text, "fuzz.toml");
  if (r.ok()) {
    if (!respfence::policy::validate(r.cfg).empty()) std::abort();
    respfence::policy::policy_table::build(r.cfg.policy);
  } else if (r.error.rfind("fuzz.toml", 0) != 0) {
    std::abort();
  }
  return 0;
}

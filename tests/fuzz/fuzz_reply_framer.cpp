// libFuzzer: reply framing is the same at once or split anywhere, and every framed reply
// parses, alone and whole, with the proxy's own RESP value parser.

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "proxy/resp/reply_framer.hpp"
#include "proxy/resp/resp_value.hpp"

using namespace respfence::proxy;

namespace {
std::vector<std::string> run(const std::string& in, size_t cut, bool& error) {
  std::vector<std::string> out;
  reply_framer f;
  std::string buf;
  size_t start = 0;
  error = false;
  auto drain = [&]() {
    while (true) {
      const frame_status s = f.next(std::string_view(buf).substr(start));
      if (s == frame_status::need_more) return true;
      if (s == frame_status::error) {
        error = true;
        return false;
      }
      if (f.consumed() == 0 || start + f.consumed() > buf.size()) std::abort();
      out.push_back(buf.substr(start, f.consumed()));
      start += f.consumed();
    }
  };
  buf.append(in, 0, cut);
  if (!drain()) return out;
  buf.append(in, cut, std::string::npos);
  drain();
  return out;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string in(reinterpret_cast<const char*>(data) + 1, size - 1);
  const size_t cut = in.empty() ? 0 : data[0] % (in.size() + 1);
  bool e1 = false;
  bool e2 = false;
  const auto whole = run(in, in.size(), e1);
  const auto split = run(in, cut, e2);
  if (whole != split || e1 != e2) std::abort();
  for (const auto& r : whole) {
    if (!parse_resp(r)) std::abort();
  }
  return 0;
}

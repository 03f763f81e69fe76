// libFuzzer: the request framer must give the same commands and the same error whether
// the bytes arrive at once or in two pieces split anywhere (the first input byte picks
// the split). It must never crash, hang, or read outside its input.

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "proxy/resp/request_framer.hpp"

using namespace respfence::proxy;

namespace {
struct outcome {
  std::vector<std::vector<std::string>> cmds;
  int error = -1;
  bool operator==(const outcome& o) const { return cmds == o.cmds && error == o.error; }
};

outcome run(const std::string& in, size_t cut) {
  outcome out;
  request_framer f;
  std::string buf;
  size_t start = 0;
  auto drain = [&]() {
    while (true) {
      const frame_status s = f.next(std::string_view(buf).substr(start));
      if (s == frame_status::need_more) return true;
      if (s == frame_status::error) {
        out.error = static_cast<int>(f.error());
        if (f.error_reply().empty()) std::abort();
        return false;
      }
      if (f.consumed() == 0 || start + f.consumed() > buf.size()) std::abort();
      if (s == frame_status::complete) {
        std::vector<std::string> args;
        for (size_t i = 0; i < f.argc(); ++i) args.emplace_back(f.arg(std::string_view(buf).substr(start), i));
        out.cmds.push_back(std::move(args));
      }
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
  if (!(run(in, in.size()) == run(in, cut))) std::abort();
  return 0;
}

#include "proxy/merge.hpp"

#include <charconv>

#include "proxy/reply_framer.hpp"
#include "proxy/resp_writer.hpp"

namespace respfence::proxy {

using routing::merge_rule;

void merge_state::reset(merge_rule r, uint16_t n) {
  rule = r;
  parts = n;
  answered = 0;
  part_backend.assign(n, 0);
  state.assign(n, part_state::pending);
  ping_bare.assign(n, 0);
  asking.assign(n, 0);
  replies.resize(n);
  for (auto& s : replies) s.clear();
  requests.resize(n);
  for (auto& s : requests) s.clear();
  order.clear();
  scan_shard = 0;
  shards = 0;
  names.clear();
  act = policy::action::forward;
  loading_safe = false;
  overridden = false;
  ping_message.clear();
  has_message = false;
}

unsigned shard_bits(size_t shards) {
  unsigned bits = 0;
  while ((size_t{1} << bits) < shards) ++bits;
  return bits;
}

bool decode_scan_cursor(std::string_view text, size_t shards, scan_cursor& out) {
  uint64_t c = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), c);
  if (ec != std::errc() || p != text.data() + text.size()) return false;
  const unsigned bits = shard_bits(shards);
  out.shard = static_cast<uint16_t>(c & ((uint64_t{1} << bits) - 1));
  out.backend_cursor = bits == 0 ? c : c >> bits;
  return out.shard < shards;
}

uint64_t next_scan_cursor(uint64_t backend_next, uint16_t shard, size_t shards) {
  const unsigned bits = shard_bits(shards);
  if (backend_next == 0) {
    // This shard is done: the next one starts at its cursor 0.
    return shard + 1u < shards ? shard + 1u : 0;
  }
  return (backend_next << bits) | shard;
}

bool split_elements(std::string_view reply, std::vector<std::string_view>& out, int64_t* count) {
  out.clear();
  const size_t eol = reply.find("\r\n");
  if (eol == std::string_view::npos || reply.empty()) return false;
  const char t = reply[0];
  if (t != '*' && t != '~' && t != '>') return false;
  int64_t n = 0;
  auto [p, ec] = std::from_chars(reply.data() + 1, reply.data() + eol, n);
  if (ec != std::errc()) return false;
  if (count) *count = n;
  size_t pos = eol + 2;
  reply_framer f;
  for (int64_t i = 0; i < n; ++i) {
    if (f.next(reply.substr(pos)) != frame_status::complete) return false;
    out.push_back(reply.substr(pos, f.consumed()));
    pos += f.consumed();
  }
  return pos == reply.size();
}

namespace {

bool is_error(const std::string& r) { return !r.empty() && (r[0] == '-' || r[0] == '!'); }

const std::string* first_error(const merge_state& m) {
  for (const auto& r : m.replies) {
    if (is_error(r)) return &r;
  }
  return nullptr;
}

bool integer_of(const std::string& r, int64_t& v) {
  if (r.size() < 4 || r[0] != ':') return false;
  auto [p, ec] = std::from_chars(r.data() + 1, r.data() + r.size() - 2, v);
  return ec == std::errc();
}

std::string_view bulk_payload(std::string_view element) {
  const size_t eol = element.find("\r\n");
  if (element.empty() || element[0] != '$' || eol == std::string_view::npos) return {};
  return element.substr(eol + 2, element.size() - eol - 4);
}

}  // namespace

std::string merge_replies(const merge_state& m, bool resp3) {
  if (const std::string* err = first_error(m)) return *err;
  std::string out;
  auto w = write_to(out);
  std::vector<std::string_view> el;
  switch (m.rule) {
    case merge_rule::mget: {
      std::vector<std::vector<std::string_view>> per(m.parts);
      for (size_t p = 0; p < m.parts; ++p) {
        if (!split_elements(m.replies[p], per[p])) return m.replies[p];
      }
      w.array(static_cast<int64_t>(m.order.size()));
      for (const auto& [part, idx] : m.order) {
        if (idx >= per[part].size()) return "-ERR respfence: a shard's MGET reply was short\r\n";
        out.append(per[part][idx]);
      }
      return out;
    }
    case merge_rule::all_ok:
      for (const auto& r : m.replies) {
        if (r != "+OK\r\n") return r;
      }
      return "+OK\r\n";
    case merge_rule::sum: {
      int64_t total = 0;
      for (const auto& r : m.replies) {
        int64_t v = 0;
        if (!integer_of(r, v)) return r;
        total += v;
      }
      w.integer(total);
      return out;
    }
    case merge_rule::concat: {
      int64_t total = 0;
      std::string body;
      for (const auto& r : m.replies) {
        int64_t n = 0;
        if (!split_elements(r, el, &n)) return r;
        total += n > 0 ? n : 0;
        for (auto e : el) body.append(e);
      }
      w.header(m.replies.empty() || m.replies[0].empty() ? '*' : m.replies[0][0], total);
      out += body;
      return out;
    }
    case merge_rule::first_value:
      for (const auto& r : m.replies) {
        if (r != "$-1\r\n" && r != "_\r\n") return r;
      }
      return resp3 ? "_\r\n" : "$-1\r\n";
    case merge_rule::ping:
    case merge_rule::none:
      return m.replies.empty() ? std::string("+OK\r\n") : m.replies[0];
    case merge_rule::info: {
      // Each backend's INFO under a header naming it; a bulk string like the server's.
      std::string text;
      for (size_t p = 0; p < m.parts; ++p) {
        const std::string& r = m.replies[p];
        std::string_view body;
        if (!r.empty() && r[0] == '=') {
          // RESP3 verbatim string: "=N\r\ntxt:..." — the text after its format tag.
          const size_t eol = r.find("\r\n");
          if (eol != std::string::npos && r.size() >= eol + 2 + 4 + 2) {
            body = std::string_view(r).substr(eol + 2 + 4, r.size() - eol - 2 - 4 - 2);
          }
        } else {
          body = bulk_payload(r);
        }
        if (p > 0) text += "\r\n";
        text += "# respfence backend ";
        text += p < m.names.size() ? m.names[p] : std::to_string(m.part_backend[p]);
        text += "\r\n";
        text.append(body);
      }
      w.bulk(text);
      return out;
    }
    case merge_rule::scan: {
      // One part: rewrite its cursor.
      const std::string& r = m.replies[0];
      if (!split_elements(r, el) || el.size() != 2) return r;
      uint64_t next = 0;
      const std::string_view cur = bulk_payload(el[0]);
      std::from_chars(cur.data(), cur.data() + cur.size(), next);
      w.array(2).bulk(std::to_string(next_scan_cursor(next, m.scan_shard, m.shards)));
      out.append(el[1]);
      return out;
    }
  }
  return m.replies.empty() ? std::string() : m.replies[0];
}

}  // namespace respfence::proxy

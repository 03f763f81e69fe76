#include "proxy/session/merge.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdio>
#include <optional>
#include <random>
#include <unordered_map>

#include "proxy/resp/errors.hpp"
#include "proxy/resp/reply_framer.hpp"
#include "proxy/resp/resp_writer.hpp"
#include "proxy/session/session_internal.hpp"

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
  reload = false;
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
  if (t != '*' && t != '~' && t != '>' && t != '%') return false;
  int64_t n = 0;
  auto [p, ec] = std::from_chars(reply.data() + 1, reply.data() + eol, n);
  if (ec != std::errc()) return false;
  if (count) *count = n;
  if (t == '%') n *= 2;
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

using detail::parse_i64;

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

// The text of an INFO reply: a bulk string, or a RESP3 verbatim string after its
// "txt:" format tag.
std::string_view info_body(std::string_view r) {
  if (!r.empty() && r[0] == '=') {
    const size_t eol = r.find("\r\n");
    if (eol != std::string_view::npos && r.size() >= eol + 2 + 4 + 2) {
      return r.substr(eol + 2 + 4, r.size() - eol - 2 - 4 - 2);
    }
    return {};
  }
  return bulk_payload(r);
}

// How one INFO field of several backends becomes one.
enum class field_op : uint8_t { first, sum, max, worst };

field_op op_of(std::string_view key) {
  // Counters of what happened on any backend, and what is in progress on any.
  static const std::unordered_map<std::string_view, field_op> ops = {
      {"blocked_clients", field_op::sum},
      {"clients_in_timeout_table", field_op::sum},
      {"connected_clients", field_op::max},
      {"tracking_clients", field_op::max},
      {"lazyfree_pending_objects", field_op::sum},
      {"lazyfreed_objects", field_op::sum},
      {"loading", field_op::max},
      {"async_loading", field_op::max},
      {"rdb_changes_since_last_save", field_op::sum},
      {"rdb_bgsave_in_progress", field_op::max},
      {"rdb_last_bgsave_status", field_op::worst},
      {"rdb_saves", field_op::max},
      {"current_save_keys_processed", field_op::sum},
      {"current_save_keys_total", field_op::sum},
      {"rdb_last_load_keys_expired", field_op::sum},
      {"rdb_last_load_keys_loaded", field_op::sum},
      {"aof_rewrite_in_progress", field_op::max},
      {"aof_rewrite_scheduled", field_op::max},
      {"aof_last_bgrewrite_status", field_op::worst},
      {"aof_last_write_status", field_op::worst},
      {"aof_rewrites", field_op::max},
      {"module_fork_in_progress", field_op::max},
      {"total_connections_received", field_op::max},
      {"total_commands_processed", field_op::sum},
      {"instantaneous_ops_per_sec", field_op::sum},
      {"total_net_input_bytes", field_op::sum},
      {"total_net_output_bytes", field_op::sum},
      {"rejected_connections", field_op::sum},
      {"expired_keys", field_op::sum},
      {"expired_time_cap_reached_count", field_op::sum},
      {"expire_cycle_cpu_milliseconds", field_op::sum},
      {"evicted_keys", field_op::sum},
      {"evicted_clients", field_op::sum},
      {"total_eviction_exceeded_time", field_op::max},
      {"current_eviction_exceeded_time", field_op::max},
      {"keyspace_hits", field_op::sum},
      {"keyspace_misses", field_op::sum},
      {"pubsub_channels", field_op::sum},
      {"pubsub_patterns", field_op::sum},
      {"pubsubshard_channels", field_op::sum},
      {"total_forks", field_op::max},
      {"migrate_cached_sockets", field_op::sum},
      {"active_defrag_hits", field_op::sum},
      {"active_defrag_misses", field_op::sum},
      {"active_defrag_key_hits", field_op::sum},
      {"active_defrag_key_misses", field_op::sum},
      {"tracking_total_keys", field_op::sum},
      {"tracking_total_items", field_op::sum},
      {"tracking_total_prefixes", field_op::max},
      {"unexpected_error_replies", field_op::sum},
      {"total_error_replies", field_op::sum},
      {"dump_payload_sanitizations", field_op::sum},
      {"total_reads_processed", field_op::sum},
      {"total_writes_processed", field_op::sum},
      {"io_threaded_reads_processed", field_op::sum},
      {"io_threaded_writes_processed", field_op::sum},
      {"reply_buffer_shrinks", field_op::sum},
      {"reply_buffer_expands", field_op::sum},
  };
  auto it = ops.find(key);
  return it == ops.end() ? field_op::first : it->second;
}

using part_values = std::vector<std::optional<std::string_view>>;

std::string_view first_of(const part_values& v) {
  for (const auto& x : v) {
    if (x) return *x;
  }
  return {};
}

std::string merge_scalar(const part_values& v, field_op op) {
  if (op == field_op::worst) {
    for (const auto& x : v) {
      if (x && *x != "ok") return std::string(*x);
    }
    return std::string(first_of(v));
  }
  if (op == field_op::first) return std::string(first_of(v));
  int64_t total = 0;
  bool any = false;
  for (const auto& x : v) {
    if (!x) continue;
    int64_t n = 0;
    if (!parse_i64(*x, n)) return std::string(first_of(v));
    total = !any ? n : op == field_op::sum ? total + n : std::max(total, n);
    any = true;
  }
  return std::to_string(total);
}

// "keys=3,expires=1,avg_ttl=0" and "calls=2,usec=5,usec_per_call=2.50,...": integers
// added (or the largest), usec_per_call recomputed, avg_ttl weighted by expires.
std::string merge_subfields(const part_values& v, field_op op) {
  std::vector<std::string_view> names;
  std::vector<part_values> vals;
  for (size_t p = 0; p < v.size(); ++p) {
    if (!v[p]) continue;
    std::string_view rest = *v[p];
    while (!rest.empty()) {
      const size_t comma = rest.find(',');
      const std::string_view item = rest.substr(0, comma);
      rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
      const size_t eq = item.find('=');
      if (eq == std::string_view::npos) continue;
      const std::string_view name = item.substr(0, eq);
      size_t i = std::find(names.begin(), names.end(), name) - names.begin();
      if (i == names.size()) {
        names.push_back(name);
        vals.emplace_back(v.size());
      }
      vals[i][p] = item.substr(eq + 1);
    }
  }
  auto total_of = [&](std::string_view name) -> int64_t {
    const size_t i = std::find(names.begin(), names.end(), name) - names.begin();
    if (i == names.size()) return 0;
    int64_t n = 0;
    return parse_i64(merge_scalar(vals[i], op), n) ? n : 0;
  };
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i) out += ',';
    out.append(names[i]);
    out += '=';
    if (names[i] == "usec_per_call") {
      const int64_t calls = total_of("calls");
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.2f",
                    calls ? static_cast<double>(total_of("usec")) / static_cast<double>(calls) : 0.0);
      out += buf;
    } else if (names[i] == "avg_ttl" && op == field_op::sum) {
      // Each backend's average over its keys with a TTL: weighted by how many it has.
      const size_t e = std::find(names.begin(), names.end(), "expires") - names.begin();
      int64_t weighted = 0;
      int64_t count = 0;
      for (size_t p = 0; p < v.size(); ++p) {
        int64_t ttl = 0;
        int64_t n = 0;
        if (!vals[i][p] || !parse_i64(*vals[i][p], ttl)) continue;
        if (e == names.size() || !vals[e][p] || !parse_i64(*vals[e][p], n)) continue;
        weighted += ttl * n;
        count += n;
      }
      out += std::to_string(count ? weighted / count : 0);
    } else {
      out += merge_scalar(vals[i], op);
    }
  }
  return out;
}

// A command that reaches every backend counts once per backend: its commandstats are the
// largest backend's, not the sum.
bool fans_out(std::string_view cmdstat_key) {
  constexpr std::string_view prefix = "cmdstat_";
  if (cmdstat_key.substr(0, prefix.size()) != prefix) return false;
  const routing::class_rule* r = routing::listed_class(cmdstat_key.substr(prefix.size()));
  return r != nullptr && r->cls == routing::command_class::fanout;
}

int64_t db_number(std::string_view key) {
  int64_t n = 0;
  return key.size() > 2 && parse_i64(key.substr(2), n) ? n : INT64_MAX;
}

bool hex_digest(std::string_view r, std::array<uint8_t, 20>& out) {
  // "+<40 hex digits>\r\n"
  if (r.size() != 1 + 40 + 2 || r[0] != '+') return false;
  for (size_t i = 0; i < 20; ++i) {
    uint8_t b = 0;
    for (size_t k = 0; k < 2; ++k) {
      const char c = r[1 + 2 * i + k];
      uint8_t d = 0;
      if (c >= '0' && c <= '9') {
        d = static_cast<uint8_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        d = static_cast<uint8_t>(c - 'a' + 10);
      } else {
        return false;
      }
      b = static_cast<uint8_t>(b << 4 | d);
    }
    out[i] = b;
  }
  return true;
}

}  // namespace

std::string merge_info_text(const std::vector<std::string_view>& texts) {
  struct section {
    std::string_view name;  // after "# "
    std::vector<std::string_view> keys;
    std::vector<part_values> values;
    std::unordered_map<std::string_view, size_t> index;
  };
  const size_t n = texts.size();
  std::vector<section> sections;
  auto section_named = [&](std::string_view name) -> section& {
    for (auto& sec : sections) {
      if (sec.name == name) return sec;
    }
    sections.push_back(section{name, {}, {}, {}});
    return sections.back();
  };
  for (size_t p = 0; p < n; ++p) {
    std::string_view rest = texts[p];
    section* cur = nullptr;
    while (!rest.empty()) {
      const size_t nl = rest.find('\n');
      std::string_view line = rest.substr(0, nl);
      rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.empty()) continue;
      if (line[0] == '#') {
        line.remove_prefix(1);
        while (!line.empty() && line[0] == ' ') line.remove_prefix(1);
        cur = &section_named(line);
        continue;
      }
      const size_t colon = line.find(':');
      if (colon == std::string_view::npos) continue;
      if (cur == nullptr) cur = &section_named({});
      const std::string_view key = line.substr(0, colon);
      auto [it, added] = cur->index.emplace(key, cur->keys.size());
      if (added) {
        cur->keys.push_back(key);
        cur->values.emplace_back(n);
      }
      cur->values[it->second][p] = line.substr(colon + 1);
    }
  }
  std::string out;
  for (size_t si = 0; si < sections.size(); ++si) {
    const section& sec = sections[si];
    if (si) out += "\r\n";
    if (!sec.name.empty()) {
      out += "# ";
      out.append(sec.name);
      out += "\r\n";
    }
    std::vector<size_t> order(sec.keys.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    const bool keyspace = sec.name == "Keyspace";
    if (keyspace) {
      std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        return db_number(sec.keys[a]) < db_number(sec.keys[b]);
      });
    }
    for (size_t i : order) {
      const std::string_view key = sec.keys[i];
      out.append(key);
      out += ':';
      if (keyspace || sec.name == "Errorstats") {
        out += merge_subfields(sec.values[i], field_op::sum);
      } else if (sec.name == "Commandstats") {
        out += merge_subfields(sec.values[i], fans_out(key) ? field_op::max : field_op::sum);
      } else {
        out += merge_scalar(sec.values[i], op_of(key));
      }
      out += "\r\n";
    }
  }
  return out;
}

std::string merge_replies(const merge_state& m, bool resp3) {
  if (m.rule == merge_rule::any_ok) {
    // SCRIPT KILL, FUNCTION KILL: whichever backend ran the script answers +OK.
    for (const auto& r : m.replies) {
      if (r == "+OK\r\n") return r;
    }
    // The busy backend's answer (-UNKILLABLE, ...) over the idle ones' -NOTBUSY.
    for (const auto& r : m.replies) {
      if (r.size() > 1 && r[0] == '-' && r.compare(1, 7, "NOTBUSY") != 0) return r;
    }
    if (const std::string* err = first_error(m)) return *err;
    return m.replies.empty() ? std::string("+OK\r\n") : m.replies[0];
  }
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
    case merge_rule::random_value: {
      // RANDOMKEY: one of the backends that has a key, picked at random (always the first
      // would never name a key of the others).
      std::vector<size_t> found;
      for (size_t p = 0; p < m.replies.size(); ++p) {
        if (m.replies[p] != "$-1\r\n" && m.replies[p] != "_\r\n") found.push_back(p);
      }
      if (found.empty()) return resp3 ? "_\r\n" : "$-1\r\n";
      thread_local std::minstd_rand pick(std::random_device{}());
      return m.replies[found[pick() % found.size()]];
    }
    case merge_rule::ping:
    case merge_rule::none:
      return m.replies.empty() ? std::string("+OK\r\n") : m.replies[0];
    case merge_rule::info: {
      std::vector<std::string_view> texts;
      for (const auto& r : m.replies) texts.push_back(info_body(r));
      const std::string text = merge_info_text(texts);
      if (!m.replies.empty() && !m.replies[0].empty() && m.replies[0][0] == '=') {
        // RESP3: a verbatim string, as the server sends it.
        w.header('=', static_cast<int64_t>(text.size() + 4)).raw("txt:").raw(text).raw("\r\n");
      } else {
        w.bulk(text);
      }
      return out;
    }
    case merge_rule::agree:
      for (const auto& r : m.replies) {
        if (r != m.replies[0]) return std::string(err::backends_disagree);
      }
      return m.replies.empty() ? std::string("+OK\r\n") : m.replies[0];
    case merge_rule::any_ok:
      return m.replies.empty() ? std::string("+OK\r\n") : m.replies[0];  // handled above
    case merge_rule::min:
    case merge_rule::max: {
      int64_t best = 0;
      for (size_t p = 0; p < m.replies.size(); ++p) {
        int64_t v = 0;
        if (!integer_of(m.replies[p], v)) return m.replies[p];
        if (p == 0 || (m.rule == merge_rule::min ? v < best : v > best)) best = v;
      }
      w.integer(best);
      return out;
    }
    case merge_rule::digest: {
      // Each backend's digest of its keys, XORed: all zeros when every backend is empty,
      // and equal for equal datasets (what DEBUG DIGEST is used for).
      std::array<uint8_t, 20> acc{};
      for (const auto& r : m.replies) {
        std::array<uint8_t, 20> d{};
        if (!hex_digest(r, d)) return r;
        for (size_t i = 0; i < 20; ++i) acc[i] ^= d[i];
      }
      static constexpr char hex[] = "0123456789abcdef";
      out += '+';
      for (uint8_t b : acc) {
        out += hex[b >> 4];
        out += hex[b & 15];
      }
      out += "\r\n";
      return out;
    }
    case merge_rule::numsub: {
      // [name, count, name, count, ...] (a map in RESP3): counts added by position.
      std::vector<std::vector<std::string_view>> per(m.parts);
      int64_t pairs = 0;
      for (size_t p = 0; p < m.parts; ++p) {
        if (!split_elements(m.replies[p], per[p], p == 0 ? &pairs : nullptr)) return m.replies[p];
        if (per[p].size() != per[0].size() || per[p].size() % 2 != 0) return m.replies[p];
      }
      if (m.parts == 0) return {};
      const char type = m.replies[0][0];
      w.header(type, type == '%' ? pairs : static_cast<int64_t>(per[0].size()));
      for (size_t i = 0; i < per[0].size(); i += 2) {
        out.append(per[0][i]);
        int64_t total = 0;
        for (size_t p = 0; p < m.parts; ++p) {
          int64_t v = 0;
          if (!integer_of(std::string(per[p][i + 1]), v)) return m.replies[p];
          total += v;
        }
        w.integer(total);
      }
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

#pragma once
// What a redis-server keeps per connection that changes what a client's command means:
// the identity it authenticated as, the protocol, the db. Clients whose keys are equal
// can share a backend connection (docs/design.md §12); each shared connection is opened
// with its key's state (AUTH, HELLO 3, SELECT) before anything else.

#include <string>

namespace respfence::proxy {

struct pool_key {
  std::string auth;  // the AUTH command that authenticated, as RESP ("" = none)
  bool resp3 = false;
  int db = 0;
  bool operator==(const pool_key&) const = default;
};

// Why a client got a backend connection of its own (metrics: pins by reason).
enum class pin_reason : uint8_t {
  transaction,  // MULTI, WATCH
  blocking,     // a blocking command
  pubsub,       // SUBSCRIBE and its family
  monitor,
  client_state,  // CLIENT TRACKING/REPLY/ID/INFO/LIST/KILL/..., READONLY, ASKING
  replication,   // SYNC/PSYNC
  count_,
};
const char* to_string(pin_reason r);

}  // namespace respfence::proxy

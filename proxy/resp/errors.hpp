#pragma once
// Every error (and every canned reply) respfence itself sends to a client, in one place.
// Where the server has an answer for the same situation, the text is the server's, byte
// for byte (Redis 7.0 networking.c, multi.c, server.c, cluster.c).

#include <string>
#include <string_view>

namespace respfence::proxy {

namespace err {

// Request framing (networking.c, processMultibulkBuffer / processInlineBuffer).
inline constexpr std::string_view proto_invalid_multibulk_length =
    "-ERR Protocol error: invalid multibulk length\r\n";
inline constexpr std::string_view proto_invalid_bulk_length =
    "-ERR Protocol error: invalid bulk length\r\n";
inline constexpr std::string_view proto_expected_dollar_prefix =
    "-ERR Protocol error: expected '$', got '";
inline constexpr std::string_view proto_too_big_mbulk_count =
    "-ERR Protocol error: too big mbulk count string\r\n";
inline constexpr std::string_view proto_too_big_bulk_count =
    "-ERR Protocol error: too big bulk count string\r\n";
inline constexpr std::string_view proto_too_big_inline =
    "-ERR Protocol error: too big inline request\r\n";
// A client not yet authenticated, where the server wants a password (networking.c, since
// CVE-2021-32675): at most 10 arguments of at most 16384 bytes.
inline constexpr std::string_view proto_unauth_multibulk_length =
    "-ERR Protocol error: unauthenticated multibulk length\r\n";
inline constexpr std::string_view proto_unauth_bulk_length =
    "-ERR Protocol error: unauthenticated bulk length\r\n";
inline constexpr std::string_view proto_unbalanced_quotes =
    "-ERR Protocol error: unbalanced quotes in request\r\n";
// The server's answer to a client that must authenticate first.
inline constexpr std::string_view noauth_prefix = "-NOAUTH";
// The server's protocol errors start so (a script may return the same text: see
// refuses_forwarded_request).
inline constexpr std::string_view proto_error_prefix = "-ERR Protocol error";
// The server's protocol errors for a request respfence framed and forwarded (so within
// respfence's own limits): over a limit of the server's configuration, or the stricter
// ones for a client not authenticated, before respfence knew that a password is wanted.
// The server closes the connection after one, having run nothing read after it.
// `argc`, `max_arg`: the request's shape; a refusal its shape cannot earn is some other
// reply with the same text (a script's error_reply).
inline constexpr size_t min_proto_max_bulk_len = 1024 * 1024;  // CONFIG SET's floor
inline bool refuses_forwarded_request(std::string_view reply, size_t argc, size_t max_arg) {
  if (reply == proto_invalid_bulk_length) return max_arg > min_proto_max_bulk_len;
  if (reply == proto_unauth_multibulk_length) return argc > 10;
  if (reply == proto_unauth_bulk_length) return max_arg > 16384;
  return false;
}

// Loading (server.c shared.loadingerr). The server's name is the backend's own.
inline constexpr std::string_view loading_prefix = "-LOADING ";
inline constexpr std::string_view loading_suffix = " is loading the dataset in memory\r\n";
inline std::string loading(std::string_view server_name) {
  std::string s(loading_prefix);
  s += server_name;
  s += loading_suffix;
  return s;
}

// Transactions (multi.c, server.c).
inline constexpr std::string_view multi_nested = "-ERR MULTI calls can not be nested\r\n";
inline constexpr std::string_view exec_without_multi = "-ERR EXEC without MULTI\r\n";
inline constexpr std::string_view discard_without_multi = "-ERR DISCARD without MULTI\r\n";
inline constexpr std::string_view watch_inside_multi = "-ERR WATCH inside MULTI is not allowed\r\n";
inline constexpr std::string_view not_allowed_in_multi =
    "-ERR Command not allowed inside a transaction\r\n";
inline constexpr std::string_view execabort_previous_errors =
    "-EXECABORT Transaction discarded because of previous errors.\r\n";
inline constexpr std::string_view execabort_because_prefix =
    "-EXECABORT Transaction discarded because of: ";

// Command checks (server.c commandCheckExistence / commandCheckArity).
std::string unknown_command(std::string_view name, const std::string_view* args, size_t nargs);
std::string unknown_subcommand(std::string_view container, std::string_view sub);
std::string wrong_arity(std::string_view fullname);

// CLIENT SETNAME (networking.c validateClientName).
inline constexpr std::string_view client_name_invalid =
    "-ERR Client names cannot contain spaces, newlines or special characters.\r\n";

// Cluster-style routing (cluster.c).
inline constexpr std::string_view crossslot =
    "-CROSSSLOT Keys in request don't hash to the same slot\r\n";

// respfence's own: the server has no answer for these.
inline constexpr std::string_view backend_lost =
    "-ERR respfence: connection to the backend was lost; the command may or may not have run\r\n";
inline constexpr std::string_view backend_protocol =
    "-ERR respfence: the backend sent a reply that is not RESP\r\n";
inline constexpr std::string_view shutting_down = "-ERR respfence: shutting down\r\n";
// A command of class `refused` (routing/command_class.hpp): its name as the client would
// write it ("MIGRATE", "DEBUG POPULATE"), the mode ("slots", "cluster") and why, e.g.
// -ERR respfence: 'DEBUG POPULATE' is not supported with routing.mode = "slots" (...)
std::string not_supported(std::string_view command, std::string_view mode,
                          std::string_view reason);
// A command that changes state on every backend, inside MULTI: the transaction runs on one.
std::string fanout_in_multi(std::string_view command, std::string_view mode);
// A fan-out whose backends must all give the same answer did not (FUNCTION LOAD, ...).
inline constexpr std::string_view backends_disagree =
    "-ERR respfence: the backends gave different answers to a command sent to all of them\r\n";
// A replica's SYNC/PSYNC needs one server behind the connection.
inline constexpr std::string_view replication_slots =
    "-ERR respfence: SYNC and PSYNC are not supported with routing.mode = \"slots\"\r\n";
inline constexpr std::string_view replication_cluster =
    "-ERR respfence: SYNC and PSYNC are not supported with routing.mode = \"cluster\"; "
    "replicate from the cluster's nodes\r\n";
// A flush (or SWAPDB) inside MULTI would run on the one shard the transaction runs on.
inline constexpr std::string_view flush_in_multi_sharded =
    "-ERR respfence: FLUSHALL, FLUSHDB and SWAPDB inside MULTI would reach one shard; "
    "send them outside MULTI with routing.mode = \"slots\" or \"cluster\"\r\n";

// Cluster redirections and refusals (cluster.c): what a node answers when the slot is
// elsewhere, moving, or the cluster cannot serve it.
enum class redirect_kind : uint8_t { none, moved, ask, tryagain, clusterdown };
struct redirect {
  redirect_kind kind = redirect_kind::none;
  uint16_t slot = 0;
  std::string_view target;  // "host:port" for MOVED and ASK
};
redirect parse_redirect(std::string_view line);

// Is this error line a server saying it is loading? Its error code is LOADING (Redis,
// Valkey, Kvrocks), or it is one of a few exact texts of other servers. Free text that
// merely mentions loading never matches: it may be a script's own answer.
bool is_loading_error(std::string_view line);

}  // namespace err

namespace rep {
inline constexpr std::string_view ok = "+OK\r\n";
inline constexpr std::string_view queued = "+QUEUED\r\n";
inline constexpr std::string_view pong = "+PONG\r\n";
inline constexpr std::string_view null_bulk = "$-1\r\n";
inline constexpr std::string_view null_array = "*-1\r\n";
inline constexpr std::string_view null_resp3 = "_\r\n";
}  // namespace rep

}  // namespace respfence::proxy

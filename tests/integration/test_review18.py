"""Review of 43b754e..1490e8d, review 18 (client_poller; the client's end of file:
session_core::on_client_eof decides "close now" or "run and answer what was read", and
eof_done() then ends the session).

Each test runs the same client code against redis-server directly (the control) and
through respfence, and asserts that both agree. As in test_review16/17, the process under
test is stopped with SIGSTOP while a client sends and closes, so that its bytes and its
FIN are read together (on_client_eof runs before any reply came back). The "SUSPECTED
DEFECT" comments say what each test expects direct and through the proxy, and why.

Not run by the reviewer (no build was allowed): the expectations come from reading the
code (file:line as of 1490e8d). Run afterwards: these 5 fail on 1490e8d (10 subtests); 4 pass on the fixes
that followed, and 3 are skipped as differences left open (one of them is among the 5:
its BLPOP is no longer sent, but its session can stall). The two skipped tests are
differences left open, said so in the README and the issue note."""

import socket
import time
import unittest

from harness import RawConn, TestCase, encode, info_field, one_shot
from test_review16 import PingedClients, fd_count, hang_up_stopped, read_until_eof, stopped

MODES = ('connections = "shared"', 'connections = "dedicated"')
LOADING = "LOADING Redis is loading the dataset in memory"
FAST_PROBER = "interval_ms = 100\nloading_interval_ms = 50"


def eventually(pred, timeout, interval=0.05):
    """True as soon as pred() is; False if it never was within `timeout` seconds."""
    end = time.monotonic() + timeout
    while True:
        try:
            if pred():
                return True
        except Exception:  # noqa: BLE001 - e.g. the metrics endpoint not answering yet
            pass
        if time.monotonic() >= end:
            return False
        time.sleep(interval)


def set_direct(port, key, value):
    assert one_shot(port, "SET", key, value) == "OK"


class Review18(PingedClients, TestCase):
    connect_timeout = 10

    def targets(self, threads=2, extra="", health=""):
        r = self.redis()
        yield "direct", r, r.port, r.pid, None
        r2 = self.redis()
        p = self.proxy(r2, threads=threads, extra=extra, health=health)
        yield "proxy", r2, p.port, p.pid, p

    # ------------------------------------------------------------- 1. held, then blocking

    def test_blocking_command_held_behind_a_flush_then_half_close(self):
        # SUSPECTED DEFECT (both models): a session that never ends, and a pop for nobody.
        # The client sends FLUSHALL + BLPOP q 0 and half-closes. Direct, redis-server runs
        # FLUSHALL (+OK), blocks in BLPOP, reads the EOF and frees the client (BLPOP ends
        # with it): +OK, then EOF; blocked_clients 0; a later LPUSH stays in the list.
        # Through respfence: FLUSHALL is held for its fence (fence.cpp start_flush, hold
        # flush) and BLPOP behind it (core.cpp:231 accept_request, hold order). At EOF
        # on_client_eof (replies.cpp:437-444) only looks at e.exempt, which send() sets
        # (core.cpp:476) and a held entry never had: no exempt entry, no loading hold, so
        # eof_ = true. When the fence lowers, resume() (holds.cpp, not gated by eof_) sends
        # BLPOP after the EOF; it blocks on the server forever, eof_done() (replies.cpp:466)
        # waits for it: no EOF for the client, the backend connection stays blocked, and
        # the next LPUSH is popped by the dead session (and its reply written to the
        # half-closed client, which direct never answers).
        seen = {}
        for mode in MODES:
            for where, server, port, pid, p in self.targets(extra=mode):
                with self.subTest(where=where, mode=mode):
                    s = self.connected(port)
                    hang_up_stopped(s, pid, encode("FLUSHALL") + encode("BLPOP", "q18", "0"))
                    got, eof = read_until_eof(s, 3.0)
                    blocked = int(info_field(server.port, "clients", "blocked_clients"))
                    pusher = RawConn(server.port)
                    self.assertIsInstance(pusher.cmd("LPUSH", "q18", "x"), int)
                    time.sleep(0.5)
                    llen = pusher.cmd("LLEN", "q18")
                    pusher.close()
                    late, _ = read_until_eof(s, 1.0)
                    s.close()
                    seen[(mode, where)] = (got, eof, blocked, llen, late)
                    if where == "direct":
                        self.assertEqual(seen[(mode, where)], (b"+OK\r\n", True, 0, 1, b""))
                    else:
                        self.assertEqual(seen[(mode, where)], seen[(mode, "direct")],
                                         "(reply, EOF, blocked_clients, LLEN after LPUSH, "
                                         "bytes after LPUSH)")

    def test_blocking_command_behind_a_shared_drain_then_close(self):
        # SUSPECTED DEFECT (shared connections, the default): the same, with no flush at
        # all. "SET + WAIT 1 0" (a write, then wait for a replica: common) and "SELECT 0 +
        # BLPOP", then close(). Direct: WAIT/BLPOP blocks, the EOF frees the client,
        # blocked_clients 0, the client's fd goes. Through respfence, WAIT and BLPOP pin
        # the link and first wait for the shared connection to drain (shared.cpp:184 hold
        # drain; SELECT: key_wait_seq_, core.cpp:231 hold order). Held, so not exempt at
        # the EOF (replies.cpp:444): eof_ = true, and the command is sent once the SET or
        # SELECT is answered (replies.cpp:376 after_completion -> resume). It blocks
        # forever on a pinned connection; the session and its fd never go.
        # (test_review17 checked WAIT alone: it is sent at once, exempt, and closes.)
        cases = {
            "set_wait": encode("SET", "w18", "1") + encode("WAIT", "1", "0"),
            "select_blpop": encode("SELECT", "0") + encode("BLPOP", "q18s", "0"),
        }
        for name, req in cases.items():
            for where, server, port, pid, p in self.targets(extra='connections = "shared"'):
                with self.subTest(where=where, case=name):
                    s = self.connected(port)
                    time.sleep(0.2)
                    fds = fd_count(pid)
                    hang_up_stopped(s, pid, req, full=True)
                    time.sleep(1.0)
                    blocked = int(info_field(server.port, "clients", "blocked_clients"))
                    fd_gone = eventually(lambda: fd_count(pid) < fds, 3.0)
                    # Direct: (0, True). Proxy (suspected): (1, False).
                    self.assertEqual((blocked, fd_gone), (0, True),
                                     "%s: (blocked_clients, client fd gone)" % where)

    @unittest.skip("left open (issue 14 note): a blocking command parsed after the EOF "
                   "behind a full output is not sent, but the last replies can stall")
    def test_blocking_command_parsed_after_eof_behind_a_full_output(self):
        # SUSPECTED DEFECT (both models). A client pipelines GETs of a 1 MB value, reads
        # nothing for a second (its output is over client_output_limit), then sends
        # BLPOP q 0 and half-closes, then reads everything. Direct: redis-server runs BLPOP
        # (blocks), reads the EOF and frees the client: the client reads part of the
        # replies, then EOF; blocked_clients 0. Through respfence BLPOP is read but not
        # parsed (core.cpp:181 parse_input waits while output_over_limit()), the EOF is
        # read with an empty pipe (eof_ = true), and once the client has read the GET
        # replies client_output_done() parses BLPOP and sends it, after the EOF: it
        # blocks forever, the client never sees the EOF, the session stays.
        # The BLPOP is no longer sent (nothing blocks, nothing is popped: blocked_clients
        # stays 0), but the session does not always close: the last replies stall
        # (seen under ASan with dedicated connections, and with shared ones in release),
        # and the client sees no EOF. Left open (issue 14 note): skipped until fixed.
        self.blocking_parsed_after_eof(MODES)

    def blocking_parsed_after_eof(self, modes):
        val = b"v" * (1 << 20)
        n = 24
        for mode in modes:
            extra = mode + "\nclient_output_limit = 1024"
            for where, server, port, pid, p in self.targets(extra=extra):
                with self.subTest(where=where, mode=mode):
                    set_direct(server.port, "big18", val)
                    s = self.connected(port, rcvbuf=65536)
                    s.sendall(encode("GET", "big18") * n)
                    time.sleep(1.0)  # the client reads nothing yet: its output fills up
                    hang_up_stopped(s, pid, encode("BLPOP", "q18f", "0"))
                    got, eof = read_until_eof(s, 15.0)
                    s.close()
                    time.sleep(0.3)
                    blocked = int(info_field(server.port, "clients", "blocked_clients"))
                    # Direct: (True, 0). Proxy (suspected): (False, 1).
                    self.assertEqual((eof, blocked), (True, 0),
                                     "%s: (EOF, blocked_clients) after %d bytes"
                                     % (where, len(got)))

    # ------------------------------------------------------------- 2. CLIENT PAUSE

    def test_read_during_a_write_pause_then_half_close_is_answered(self):
        # SUSPECTED DEFECT (both models): a reply lost. Another client runs CLIENT PAUSE
        # 3000 WRITE; this client sends GET and half-closes. Direct: a WRITE pause does not
        # postpone a read, so redis-server answers the GET, then closes at the EOF. Through
        # respfence, on_client_eof returns false whenever pause_in_force()
        # (replies.cpp:441, worker.hpp pause_in_force: one process-wide deadline, any
        # pause mode, any backend), so the session closes at once and the GET's reply is
        # never written: the client gets nothing, then EOF. (Only a write postponed by the
        # pause should go with the client, as test_review17 checked.)
        seen = {}
        for mode in MODES:
            for where, server, port, pid, p in self.targets(extra=mode):
                with self.subTest(where=where, mode=mode):
                    set_direct(server.port, "p18", "v")
                    pauser = RawConn(port)
                    s = self.connected(port)
                    self.assertEqual(pauser.cmd("CLIENT", "PAUSE", "3000", "WRITE"), "OK")
                    hang_up_stopped(s, pid, encode("GET", "p18"))
                    got, eof = read_until_eof(s, 2.0)
                    s.close()
                    self.assertEqual(pauser.cmd("CLIENT", "UNPAUSE"), "OK")
                    pauser.close()
                    seen[(mode, where)] = (got, eof)
                    if where == "direct":
                        self.assertEqual((got, eof), (b"$1\r\nv\r\n", True))
                    else:
                        self.assertEqual((got, eof), seen[(mode, "direct")])

    @unittest.skip("known difference, left open (README, What respfence promises): a pause "
                   "sent to the server another way is not seen by the proxy")
    def test_write_postponed_by_a_pause_the_proxy_did_not_see(self):
        # SUSPECTED DEFECT (dedicated connections; a regression of 9eb4ed8). A pause that
        # did not go through respfence (an operator's redis-cli, or the pause FAILOVER and
        # CLUSTER FAILOVER make themselves): pause_in_force() is false, so on_client_eof
        # keeps the session to answer the SET (replies.cpp:441). Direct, the SET is
        # postponed, the client's close frees it, and the SET never runs. Through
        # respfence the SET waits on the dedicated connection and runs when the pause
        # ends, for a client long gone. (43b754e closed at EOF, and with it the
        # connection: the server dropped the SET. With shared connections the SET runs
        # anyway, before and after these commits: not checked here.)
        for where, server, port, pid, p in self.targets(extra='connections = "dedicated"'):
            with self.subTest(where=where):
                pauser = RawConn(server.port)  # straight to the server, for both
                s = self.connected(port)
                self.assertEqual(pauser.cmd("CLIENT", "PAUSE", "1500", "WRITE"), "OK")
                hang_up_stopped(s, pid, encode("SET", "paused18", "1"), full=True)
                time.sleep(2.5)
                pauser.close()
                self.assertIsNone(one_shot(server.port, "GET", "paused18"),
                                  "%s: a write postponed by CLIENT PAUSE ran after its "
                                  "client had closed" % where)

    # ------------------------------------------------------------- 3. confirm is not loading

    def test_loading_coded_script_error_then_half_close_gets_its_reply(self):
        # SUSPECTED DEFECT (both models): a reply lost. A script ends with
        # redis.error_reply('LOADING ...') (test_hazards: the proxy keeps that answer
        # while it finds out whether the backend loads, then delivers it). The client
        # sends the EVAL and half-closes. Direct: the script runs, the client reads the
        # -LOADING error, then EOF. Through respfence the EOF is read first (eof_ = true),
        # then the -LOADING answer puts the entry on hold "confirm" (retry.cpp:46), which
        # loading_held() (replies.cpp:458) counts as "queued for a loading backend":
        # eof_done() is true at once (replies.cpp:471) and the session closes without the
        # answer, though the script ran and the backend never loaded. (More generally any
        # -LOADING answer after the EOF drops the replies of every command after it that
        # is already on the wire, whether or not they ran.)
        script = ("redis.call('INCR','ev18'); "
                  "return redis.error_reply('%s')" % LOADING)
        seen = {}
        for mode in MODES:
            for where, server, port, pid, p in self.targets(extra=mode, health=FAST_PROBER):
                with self.subTest(where=where, mode=mode):
                    s = self.connected(port)
                    hang_up_stopped(s, pid, encode("EVAL", script, "0"))
                    got, eof = read_until_eof(s, 3.0)
                    s.close()
                    ran = one_shot(server.port, "GET", "ev18")
                    seen[(mode, where)] = (got, eof, ran)
                    if where == "direct":
                        self.assertEqual(seen[(mode, where)],
                                         (b"-" + LOADING.encode() + b"\r\n", True, b"1"))
                    else:
                        self.assertEqual(seen[(mode, where)], seen[(mode, "direct")],
                                         "(reply, EOF, script ran)")

    # ------------------------------------------------------------- 4. half-closed, not reading

    @unittest.skip("known difference, left open (issue 14 note): a half-closed client is "
                   "kept until its replies are written")
    def test_half_closed_client_that_never_reads_is_freed(self):
        # SUSPECTED DEFECT, lower impact (both models). A client with a small receive
        # buffer sends GETs of a 1 MB value (16 MB of replies), half-closes, and never
        # reads. Direct: redis-server frees a client when a read returns 0
        # (readQueryFromClient: "Client closed connection", freeClientAsync), whatever
        # output is still queued: connected_clients is back to its base at once. Through
        # respfence eof_done() needs the client output empty (replies.cpp:472, and pump's
        # close needs !writing_): the session, its fd and up to client_output_limit of
        # buffers stay for as long as the client keeps its half of the socket.
        val = b"v" * (1 << 20)
        n = 16
        for mode in MODES:
            for where, server, port, pid, p in self.targets(extra=mode):
                with self.subTest(where=where, mode=mode):
                    set_direct(server.port, "big18n", val)
                    time.sleep(0.1)
                    base = int(info_field(server.port, "clients", "connected_clients"))
                    s = self.connected(port, rcvbuf=4096)
                    hang_up_stopped(s, pid, encode("GET", "big18n") * n)
                    if where == "direct":
                        gone = eventually(lambda: int(info_field(
                            server.port, "clients", "connected_clients")) <= base, 3.0)
                    else:
                        gone = eventually(
                            lambda: p.metrics()["respfence_client_connections"] == 0, 3.0)
                    s.close()  # unread data: a reset, which frees it in both
                    self.assertTrue(gone, "%s: a half-closed client that reads nothing is "
                                    "still connected 3 s after its EOF" % where)


if __name__ == "__main__":
    unittest.main()

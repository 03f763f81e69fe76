"""Review 29 of b03ce95: real client code used the way applications use it (redis-py 4.3,
raw RESP2/RESP3 sockets, redis-cli), through respfence's default configuration
(connections = "shared", one I/O thread) and with `[server] threads = 2`, each next to a
direct control against redis-server 7.0.15. Every test here fails against b03ce95.

Themes:
- Connection state created *inside* a MULTI block (SUBSCRIBE, PSUBSCRIBE, CLIENT ID,
  CLIENT INFO, CLIENT NO-EVICT) is not seen by the proxy: the block pins the client, and
  about a second later the unpin sweep closes the client's own connection as if it held
  nothing. Direct, the client stays subscribed (its messages are lost silently through
  respfence: PUBLISH counts 0 receivers), keeps its id, and keeps its no-evict flag.
- WAIT waits for the replication offset of the *connection's* last command (c->woff).
  A client whose write went on a shared connection and whose WAIT then pins a new
  connection (the shared one is busy with another client's command) has WAIT answered
  on a connection that has run nothing: woff 0, so every replica counts as having
  acknowledged the write, which it never received.
"""

import re
import threading
import time
import unittest

from harness import RawConn, RedisServer, TestCase, encode, info_field, one_shot, wait_until

THREADS = (1, 2)  # 1 is respfence's default; 2 is the other setting under review


def others_reply(conn, timeout):
    conn.sock.settimeout(timeout)
    try:
        return conn.reply()
    except OSError as e:  # socket.timeout
        return "no reply within %.1f s (%s)" % (timeout, type(e).__name__)


class StateCreatedInsideMulti(TestCase):
    """MULTI pins a shared client (README, Pinning). A block may change the connection:
    the README names SELECT, AUTH, HELLO and CLIENT REPLY for that reason, and the proxy
    tracks SELECT, AUTH, CLIENT SETNAME and CLIENT TRACKING run by EXEC (those pass). But
    a SUBSCRIBE or PSUBSCRIBE run by EXEC leaves the session thinking it holds no
    subscription, and CLIENT ID / CLIENT INFO / CLIENT NO-EVICT run by EXEC do not make
    the pin sticky ("keeps its own connection until it disconnects, so its id and flags
    never change under it"). maybe_unpin() (proxy/session/shared.cpp) then closes the
    connection after about a second of quiet.

    Likely cause: subscription counts come from the confirmations' replies as top-level
    pushes (replies.cpp, sub_channels_/sub_patterns_), never from the elements of an EXEC
    array; pinned_for_good_ is set in shared_prepare() from the command's own pin
    reason, which is not reached for commands queued inside a block on an already pinned
    link."""

    def each(self, run):
        """run(port, r) straight to a server, then through respfence with one and two
        I/O threads; returns {label: result}."""
        out = {}
        r = self.redis()
        out["direct"] = run(r.port, r)
        for t in THREADS:
            r = self.redis()
            p = self.proxy(r, threads=t)
            out["threads=%d" % t] = run(p.port, r)
            p.stop()
        return out

    def assert_same(self, got):
        direct = got.pop("direct")
        wrong = ["%s: direct %r, respfence %r" % (k, direct, v) for k, v in got.items()
                 if v != direct]
        self.assertEqual(wrong, [], "\n".join(wrong))

    def test_subscribe_inside_multi_stays_subscribed(self):
        def run(port, r):
            c = RawConn(port)
            out = [c.cmd("MULTI"), c.cmd("SUBSCRIBE", "news"), c.cmd("EXEC")]
            time.sleep(2.5)  # quiet: respfence's unpin sweep runs once a second
            pub = RawConn(port)
            out.append(pub.cmd("PUBLISH", "news", "hello"))
            out.append(others_reply(c, 2.0))
            return out
        got = self.each(run)
        self.assertEqual(got["direct"], ["OK", "QUEUED", [[b"subscribe", b"news", 1]], 1,
                                         [b"message", b"news", b"hello"]], "the control")
        self.assert_same(got)

    def test_psubscribe_inside_multi_in_resp3_stays_subscribed(self):
        def run(port, r):
            c = RawConn(port)
            out = [c.cmd("HELLO", "3")["proto"], c.cmd("MULTI"), c.cmd("PSUBSCRIBE", "n*"),
                   c.cmd("EXEC")]
            time.sleep(2.5)
            pub = RawConn(port)
            out.append(pub.cmd("PUBLISH", "news", "hello"))
            out.append(others_reply(c, 2.0))
            return out
        got = self.each(run)
        self.assertEqual(got["direct"][4:], [1, [b"pmessage", b"n*", b"news", b"hello"]],
                         "the control")
        self.assert_same(got)

    def test_client_id_inside_multi_does_not_change(self):
        def run(port, r):
            c = RawConn(port)
            out = [c.cmd("MULTI"), c.cmd("CLIENT", "ID")]
            first = c.cmd("EXEC")[0]
            time.sleep(2.5)
            again = c.cmd("CLIENT", "ID")
            out.append("same id" if again == first else "id %r, then %r" % (first, again))
            return out
        got = self.each(run)
        self.assertEqual(got["direct"], ["OK", "QUEUED", "same id"], "the control")
        self.assert_same(got)

    def test_client_info_inside_multi_names_the_same_connection(self):
        def run(port, r):
            c = RawConn(port)
            c.cmd("MULTI")
            c.cmd("CLIENT", "INFO")
            first = re.search(rb"id=(\d+)", c.cmd("EXEC")[0]).group(1)
            time.sleep(2.5)
            again = re.search(rb"id=(\d+)", c.cmd("CLIENT", "INFO")).group(1)
            return "same id" if again == first else "id %s, then %s" % (first, again)
        got = self.each(run)
        self.assertEqual(got["direct"], "same id", "the control")
        self.assert_same(got)

    def test_client_no_evict_inside_multi_stays_on(self):
        def run(port, r):
            c = RawConn(port)
            out = [c.cmd("MULTI"), c.cmd("CLIENT", "NO-EVICT", "on"), c.cmd("EXEC")]
            time.sleep(2.5)
            out.append(re.search(rb"flags=(\S+)", c.cmd("CLIENT", "INFO")).group(1))
            return out
        got = self.each(run)
        self.assertEqual(got["direct"], ["OK", "QUEUED", ["OK"], b"e"], "the control")
        self.assert_same(got)


class WaitAfterASharedWrite(TestCase):
    """WAIT numreplicas timeout "blocks the current client until all the previous write
    commands are successfully transferred and acknowledged by at least numreplicas": the
    server waits for the client connection's own offset (c->woff, set after each command
    it runs). Through respfence the client's SET runs on the shared connection, and WAIT
    pins the client (README, Pinning). When the shared connection has another client's
    command in flight at that moment (here a DEBUG SLEEP 0.3; in production, any command
    of the other clients on the worker), it is not idle and cannot be adopted, so the
    client gets a brand new connection on which nothing is replayed (db 0, no name, no
    AUTH): its woff is 0, every connected replica has acknowledged offset 0, and WAIT 1
    answers 1 at once, although the replica (stalled in DEBUG SLEEP) never received the
    write. Direct: 0 after the 500 ms timeout. An application using WAIT for durability
    is told a write is on a replica when it is not.

    Likely cause: proxy/session/shared.cpp shared_prepare() (pin onto a new connection)
    with nothing to bring the new connection's offset up to the client's writes."""

    def run_case(self, port, replica_port):
        stall = threading.Thread(target=lambda: RawConn(replica_port).cmd("DEBUG", "SLEEP", 2))
        a = RawConn(port)
        b = RawConn(port)
        self.assertEqual(a.cmd("SET", "w", "1"), "OK")
        stall.start()
        time.sleep(0.2)  # the replica now acknowledges nothing for 2 s
        out = [a.cmd("SET", "w", "2")]
        b.send(encode("DEBUG", "SLEEP", "0.3"))  # another client's command in flight
        time.sleep(0.05)
        out.append(a.cmd("WAIT", 1, 500))
        out.append(b.reply())
        stall.join()
        return out

    def setup_pair(self):
        r = self.redis()
        rep = RedisServer(self).start("--replicaof", "127.0.0.1", str(r.port))
        wait_until(lambda: info_field(r.port, "replication", "connected_slaves") == "1", 10,
                   what="replica connected")
        wait_until(lambda: b"master_link_status:up" in one_shot(rep.port, "INFO", "replication"),
                   10, what="replica link up")
        return r, rep

    def test_wait_counts_only_replicas_that_acknowledged_the_write(self):
        r, rep = self.setup_pair()
        self.assertEqual(self.run_case(r.port, rep.port), ["OK", 0, "OK"],
                         "the control: direct, the stalled replica has not acknowledged")
        r, rep = self.setup_pair()
        p = self.proxy(r, threads=1)  # respfence's default
        self.assertEqual(self.run_case(p.port, rep.port), ["OK", 0, "OK"],
                         "through respfence, WAIT 1 500 after the client's SET")


if __name__ == "__main__":
    unittest.main()

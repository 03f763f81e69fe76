"""Review 25 of e5d5c5f: the unauthenticated-client limits respfence now applies itself,
the protocol error that closes a backend connection, and what is re-sent after it.

Each test runs the same client code straight to a redis-server 7.0.15 and through
respfence, and expects the same answer. Every test here fails against e5d5c5f.
"""

import time
import unittest

from harness import RawConn, TestCase, encode
from test_review24 import (SHARED, after_was_set, exchange, limited, reply_or_error,
                           same_in_models, same_unauthenticated)

MSET12 = ("MSET", "a", "1", "b", "2", "c", "3", "d", "4", "e", "5", "f", "6")
INVALID_BULK = b"-ERR Protocol error: invalid bulk length\r\n"
UNAUTH_MULTIBULK = b"-ERR Protocol error: unauthenticated multibulk length\r\n"


class RefusedRequestAloneOnASharedConnection(TestCase):
    """The server refuses a request by a protocol error and closes its connection. The
    change closes the client from on_link_failed, which upstream::fail calls only for the
    sessions that still have replies due on that shared connection (f.due). A client
    whose refused request was its last one on the connection is not among them: it hears
    the error and stays connected, and its next commands are served."""

    BIG = encode("SET", "k", "x" * 2000000)

    def test_proto_max_bulk_len_request_alone(self):
        """proto-max-bulk-len 1mb; a client writes SET k <2,000,000 bytes> and nothing
        else. Direct: the protocol error and the connection closes. respfence (shared):
        the protocol error, the connection stays open."""
        r = limited(self)
        direct = exchange(r.port, self.BIG)
        self.assertEqual(direct, (INVALID_BULK, True))
        same_in_models(self, r, lambda port: exchange(port, self.BIG), direct)

    def test_commands_after_the_refused_request_are_served(self):
        """The same client, once it has read the error, sends PING and SET after=1.
        Direct: the connection is gone (nothing runs). respfence (shared): PONG and OK,
        and `after` is set on the server."""
        r = limited(self)

        def run(port):
            a = RawConn(port)
            try:
                a.send(self.BIG)  # direct, the server may reset while it is written
            except OSError:
                pass
            out = [str(reply_or_error(a))]
            time.sleep(0.3)
            try:
                a.send(encode("PING") + encode("SET", "after", "1"))
                out.append(str(reply_or_error(a)))
            except OSError as e:
                out.append("connection error: %s" % type(e).__name__)
            a.close()
            out.append(after_was_set(r))
            return out

        direct = run(r.port)
        self.assertTrue(direct[1].startswith("connection error"), direct)
        self.assertEqual(direct[2], 0)
        p = self.proxy(r, threads=1, extra=SHARED)
        got = run(p.port)
        self.assertEqual([got[0], got[1][:16], got[2]], [direct[0], direct[1][:16], direct[2]],
                         "direct %r, respfence %r" % (direct, got))

    def test_unauthenticated_request_after_a_failed_auth(self):
        """requirepass pw. An unauthenticated client writes AUTH wrong and a 12-argument
        MSET in one write (respfence does not apply the limits while the AUTH is
        unanswered, and forwards the MSET, which the server refuses). Direct: the AUTH
        error, `unauthenticated multibulk length`, close. respfence (shared): the same two
        errors, and the connection stays open."""
        r = self.redis(args=["--requirepass", "pw"])
        data = encode("AUTH", "wrong") + encode(*MSET12)
        direct = exchange(r.port, data)
        self.assertEqual(direct[1], True)
        self.assertTrue(direct[0].endswith(UNAUTH_MULTIBULK), direct)
        same_unauthenticated(self, r, data, direct)


class AuthenticatedBeforeRequirepass(TestCase):
    """A client connected while the server wanted no password is authenticated for good
    (redis createClient: the default user was nopass); `CONFIG SET requirepass` later
    does not change that. respfence learns "a password is wanted" from another, new
    client's -NOAUTH and then applies the unauthenticated limits to every client of the
    worker that never sent AUTH, this one included: its 12-argument MSET is refused with
    `unauthenticated multibulk length` and it is disconnected."""

    def run_case(self, port):
        a = RawConn(port)
        out = [type(a.cmd("CLIENT", "ID")).__name__,  # pins (shared model): its own connection
               a.cmd("PING"), a.cmd("CONFIG", "SET", "requirepass", "pw")]
        b = RawConn(port)
        out.append(str(b.cmd("GET", "x")))
        a.send(encode(*MSET12))
        out.append(str(reply_or_error(a)))
        a.send(encode("SET", "big", "v" * 20000))
        out.append(str(reply_or_error(a)))
        c = RawConn(port)
        c.cmd("AUTH", "pw")
        c.cmd("CONFIG", "SET", "requirepass", "")
        for x in (a, b, c):
            x.close()
        return out

    def test_mset_of_a_client_authenticated_before_requirepass(self):
        r = self.redis()
        direct = self.run_case(r.port)
        self.assertEqual(direct, ["int", "PONG", "OK", "NOAUTH Authentication required.",
                                  "OK", "OK"])
        same_in_models(self, r, self.run_case, direct)


SLOTS_EXTRA = ['slots = "0-8191"', 'slots = "8192-16383"']  # {bar}: 5061, {foo}: 12182


class SlotsMode(TestCase):
    """`[routing] mode = "slots"`, two backends, one shared connection per thread."""

    def test_backend_without_password_after_another_backends_noauth(self):
        """Backend 0 has requirepass, backend 1 none. A client's GET {bar} gets -NOAUTH
        from backend 0 (the worker learns "a password is wanted", for every backend);
        another client's 12-argument MSET of {foo} keys, all on backend 1, is then refused
        by respfence with `unauthenticated multibulk length` and the client closed.
        Direct to backend 1 (the server that owns those keys): +OK."""
        r0 = self.redis(args=["--requirepass", "pw"])
        r1 = self.redis()
        mset = encode("MSET", "{foo}a", "1", "{foo}b", "2", "{foo}c", "3", "{foo}d", "4",
                      "{foo}e", "5", "{foo}f", "6")
        direct = exchange(r1.port, mset)
        self.assertEqual(direct, (b"+OK\r\n", False))
        same_unauthenticated(self, [r0, r1], mset, direct, key="{bar}x", mode="slots",
                             backend_extra=['password = "pw"\n' + SLOTS_EXTRA[0], SLOTS_EXTRA[1]])

    def test_split_request_refused_by_one_backend(self):
        """proto-max-bulk-len 1mb on every server. Client C: DEBUG SLEEP 0.3; 5 ms later
        client A: MSET {bar}k <2,000,000 bytes> {foo}j v; 20 ms later client B: INCR
        {bar}n. Direct (one server): C OK, A the protocol error and its connection closes,
        nothing of the MSET runs, B's INCR is 1. respfence: A's MSET is split; backend 0
        refuses its part (on_reply's item_part path never sets refused_seq), so A stays
        connected (its PING answers PONG), {foo}j is set on backend 1, and B's INCR, which
        was behind A's part on backend 0's shared connection and never ran, is answered
        "may or may not have run" instead of being sent again."""
        servers = [limited(self), limited(self)]
        data = encode("MSET", "{bar}k", "x" * 2000000, "{foo}j", "v")

        def run(port, ports):
            c, a, b = RawConn(port), RawConn(port), RawConn(port)
            c.send(encode("DEBUG", "SLEEP", "0.3"))
            time.sleep(0.005)
            try:
                a.send(data)
            except OSError:
                pass
            time.sleep(0.02)
            b.send(encode("INCR", "{bar}n"))
            out = [c.reply(), str(reply_or_error(a)), str(reply_or_error(b))]
            time.sleep(0.3)
            try:
                a.send(encode("PING"))
                out.append(str(reply_or_error(a))[:16])
            except OSError:
                out.append("connection error")
            n, j = None, 0
            for port_ in ports:
                d = RawConn(port_)
                n = n or d.cmd("GET", "{bar}n")
                j += d.cmd("EXISTS", "{foo}j")
                d.cmd("FLUSHALL")
                d.close()
            for x in (a, b, c):
                x.close()
            return out + [n, j]

        direct = run(servers[0].port, [servers[0].port])
        self.assertEqual(direct, ["OK", "ERR Protocol error: invalid bulk length", "1",
                                  "connection error", b"1", 0])
        p = self.proxy(servers, mode="slots", threads=1, extra=SHARED,
                       backend_extra=SLOTS_EXTRA)
        got = run(p.port, [s.port for s in servers])
        # The last item, whether {foo}j exists, differs on purpose (README, Slots mode): the
        # part that went to backend 1 has run; everything else must be as direct.
        self.assertEqual(got[:-1], direct[:-1])
        self.assertEqual(got[-1], 1)


if __name__ == "__main__":
    unittest.main()

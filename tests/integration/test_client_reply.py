"""CLIENT REPLY OFF/SKIP through respfence, each sequence against a direct control.

The client's CLIENT REPLY goes to one server connection; the proxy's other server
connections (other backends in slots mode, a connection reopened after a kill) still answer
every command. Before this file, those answers reached the client: an extra +OK after a
reconnect, other backends' replies and merged (fan-out) replies under OFF, and every later
reply was then off by one (a GET answered with another GET's value)."""

import time
import unittest

from harness import Error, TestCase, encode
from test_faults import others_in_db

MODELS = ('connections = "shared"', 'connections = "dedicated"')
# "foo" hashes to slot 12182 and "bar" to 5061: two backends with these ranges.
SLOTS = ['slots = "0-8191"', 'slots = "8192-16383"']
END = [("ECHO", "end")]  # every sequence ends answered: nothing may hang


def run(port_conn, seq, pipelined):
    c = port_conn
    if pipelined:
        c.send(b"".join(encode(*a) for a in seq + END))
    else:
        for a in seq + END:
            c.send(encode(*a))
            time.sleep(0.02)
    out = b""
    deadline = time.monotonic() + 10
    while not out.endswith(b"$3\r\nend\r\n") and time.monotonic() < deadline:
        out += c.read_all(settle=0.2)
    return out


# Each sequence starts from an empty db (the values it reads are the ones it writes).
SEQUENCES = {
    "off_two_backends": [("CLIENT", "REPLY", "OFF"), ("SET", "foo", "1"), ("SET", "bar", "2"),
                         ("GET", "foo"), ("GET", "bar"), ("CLIENT", "REPLY", "ON"),
                         ("GET", "foo"), ("GET", "bar")],
    "skip_then_other_backend": [("CLIENT", "REPLY", "SKIP"), ("SET", "bar", "2"),
                                ("GET", "foo"), ("GET", "bar")],
    "skip_then_first_backend": [("CLIENT", "REPLY", "SKIP"), ("SET", "foo", "1"),
                                ("GET", "bar"), ("GET", "foo")],
    "skip_skip": [("CLIENT", "REPLY", "SKIP"), ("CLIENT", "REPLY", "SKIP"), ("SET", "foo", "1"),
                  ("SET", "bar", "2"), ("MGET", "foo", "bar")],
    "off_fanout_and_split": [("CLIENT", "REPLY", "OFF"), ("DBSIZE",), ("MSET", "foo", "1", "bar", "2"),
                             ("MGET", "foo", "bar"), ("PING",), ("CLIENT", "REPLY", "ON"),
                             ("MGET", "foo", "bar"), ("DBSIZE",), ("PING",)],
    "skip_fanout": [("CLIENT", "REPLY", "SKIP"), ("DBSIZE",), ("SET", "foo", "1"), ("DBSIZE",)],
    "off_reset": [("CLIENT", "REPLY", "OFF"), ("SET", "foo", "1"), ("RESET",), ("GET", "foo"),
                  ("GET", "bar")],
    "skip_reset": [("CLIENT", "REPLY", "SKIP"), ("RESET",), ("GET", "foo"), ("GET", "bar")],
    "off_bad_mode_on": [("CLIENT", "REPLY", "OFF"), ("CLIENT", "REPLY", "MAYBE"),
                        ("CLIENT", "REPLY", "ON"), ("GET", "bar")],
    "off_flush": [("SET", "foo", "1"), ("CLIENT", "REPLY", "OFF"), ("FLUSHALL",), ("SET", "bar", "2"),
                  ("CLIENT", "REPLY", "ON"), ("DBSIZE",), ("GET", "foo")],
    "off_select": [("CLIENT", "REPLY", "OFF"), ("SELECT", "3"), ("SET", "foo", "x"),
                   ("CLIENT", "REPLY", "ON"), ("GET", "foo"), ("SELECT", "0"), ("GET", "foo")],
    "skip_select": [("CLIENT", "REPLY", "SKIP"), ("SELECT", "3"), ("SET", "bar", "y"),
                    ("GET", "bar"), ("SELECT", "0"), ("GET", "bar")],
    "off_multi": [("CLIENT", "REPLY", "OFF"), ("MULTI",), ("SET", "foo", "1"), ("SET", "{foo}x", "2"),
                  ("EXEC",), ("CLIENT", "REPLY", "ON"), ("MGET", "foo", "{foo}x")],
    "off_multi_first_backend": [("CLIENT", "REPLY", "OFF"), ("MULTI",), ("SET", "bar", "1"),
                                ("SET", "{bar}x", "2"), ("EXEC",), ("CLIENT", "REPLY", "ON"),
                                ("MGET", "bar", "{bar}x")],
    "skip_multi": [("CLIENT", "REPLY", "SKIP"), ("MULTI",), ("SET", "bar", "1"), ("EXEC",),
                   ("GET", "bar")],
    "off_multi_discard": [("CLIENT", "REPLY", "OFF"), ("MULTI",), ("SET", "bar", "1"), ("DISCARD",),
                          ("CLIENT", "REPLY", "ON"), ("GET", "bar")],
    "off_multi_error": [("CLIENT", "REPLY", "OFF"), ("MULTI",), ("SET", "bar"), ("SET", "foo", "1"),
                        ("EXEC",), ("CLIENT", "REPLY", "ON"), ("GET", "foo")],
    "skip_watch": [("CLIENT", "REPLY", "SKIP"), ("WATCH", "foo"), ("MULTI",), ("SET", "foo", "1"),
                   ("EXEC",), ("GET", "foo")],
    "skip_eval": [("CLIENT", "REPLY", "SKIP"), ("EVAL", "return redis.call('incr', KEYS[1])", "1", "foo"),
                  ("EVAL", "return redis.call('incr', KEYS[1])", "1", "bar"), ("MGET", "foo", "bar")],
    "off_script_keyless": [("CLIENT", "REPLY", "OFF"), ("EVAL", "return 1", "0"), ("PING", "x"),
                           ("CLIENT", "REPLY", "ON"), ("EVAL", "return 2", "0")],
}


class ClientReplyDirectControl(TestCase):
    """Each sequence, pipelined and one command at a time, gives the client the very bytes
    redis-server gives it directly, in single and slots mode, in both connection models."""

    def _compare(self, mode, backends, extra_for):
        r = self.redis()
        want = {}
        for name, seq in SEQUENCES.items():
            for pipelined in (True, False):
                d = r.raw()
                d.cmd("FLUSHALL")
                want[name, pipelined] = run(d, seq, pipelined)
                d.close()
        servers = [self.redis() for _ in range(backends)]
        wrong = []
        for model in MODELS:
            p = self.proxy(servers, mode=mode, extra=model, backend_extra=extra_for)
            for (name, pipelined), expected in want.items():
                for s in servers:
                    s.raw().cmd("FLUSHALL")
                c = p.raw()
                got = run(c, SEQUENCES[name], pipelined)
                c.close()
                if got != expected:
                    wrong.append("%s, %s, %s:\n  direct %r\n  proxy  %r" % (
                        model, name, "pipelined" if pipelined else "one at a time", expected, got))
            p.stop()
        self.assertEqual(wrong, [], "\n".join(wrong))

    def test_slots_mode_two_backends(self):
        self._compare("slots", 2, SLOTS)

    def test_single_mode(self):
        self._compare("single", 1, None)


class ReplyOffAcrossAReconnect(TestCase):
    """CLIENT REPLY OFF, then the server connection is killed: the proxy reopens it, and the
    new connection answers every command. Direct (no kill), the client reads +OK (the ON),
    then 1 and 2; through respfence it read an extra +OK, and every later reply was the one
    before it."""

    def _run(self, model):
        r = self.redis()
        p = self.proxy(r, extra=model)
        c = p.raw()
        self.assertEqual(c.cmd("SELECT", "9"), "OK")  # to find its connection
        c.send(encode("CLIENT", "REPLY", "OFF") + encode("SET", "a", "1"))
        ctl = r.raw()
        ctl.cmd("SELECT", "9")
        for _ in range(100):
            if ctl.cmd("GET", "a") is not None:
                break
            time.sleep(0.02)
        ctl.cmd("SELECT", "0")
        conns = others_in_db(ctl, 9)
        self.assertEqual(len(conns), 1, conns)
        self.assertEqual(ctl.cmd("CLIENT", "KILL", "ID", conns[0]["id"]), 1)
        time.sleep(0.3)
        c.send(encode("SET", "b", "2") + encode("CLIENT", "REPLY", "ON") + encode("GET", "a") +
               encode("GET", "b"))
        self.assertEqual(c.reply(), "OK")
        self.assertEqual(c.reply(), b"1")
        self.assertEqual(c.reply(), b"2")
        self.assertEqual(c.read_all(settle=0.3), b"")

    def test_shared(self):
        self._run(MODELS[0])

    def test_dedicated(self):
        self._run(MODELS[1])


class ClientReplyInsideMulti(TestCase):
    """Direct, Redis 7.0 queues CLIENT REPLY OFF/SKIP in MULTI and answers EXEC with an
    array whose length counts the replies it then drops: a malformed reply (here, *2
    followed by one element, and the SKIP silences the command after EXEC: a client
    waits for the second element for ever). respfence refuses
    it as a command not allowed in a transaction, as Valkey 9 does, and EXEC aborts.
    Before, through respfence the client hung or lost its +QUEUED replies."""

    def test_direct_is_malformed(self):
        d = self.redis().raw()
        d.send(encode("MULTI") + encode("CLIENT", "REPLY", "SKIP") + encode("PING", "x") +
               encode("EXEC") + encode("ECHO", "end"))
        self.assertEqual(d.read_all(settle=0.5),
                         b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n$1\r\nx\r\n")

    def _check(self, p):
        for mode in ("OFF", "SKIP", "ON"):
            c = p.raw()
            c.send(encode("MULTI") + encode("CLIENT", "REPLY", mode) + encode("SET", "foo", mode) +
                   encode("EXEC") + encode("GET", "foo") + encode("PING"))
            self.assertEqual(c.reply(), "OK")
            self.assertEqual(c.reply(), Error("ERR Command not allowed inside a transaction"))
            self.assertEqual(c.reply(), "QUEUED")
            self.assertEqual(c.reply(),
                             Error("EXECABORT Transaction discarded because of previous errors."))
            self.assertIsNone(c.reply())
            self.assertEqual(c.reply(), "PONG")
            self.assertEqual(c.read_all(settle=0.2), b"")
            c.close()

    def test_single(self):
        r = self.redis()
        for model in MODELS:
            p = self.proxy(r, extra=model)
            self._check(p)
            p.stop()

    def test_slots(self):
        servers = [self.redis() for _ in range(2)]
        for model in MODELS:
            p = self.proxy(servers, mode="slots", extra=model, backend_extra=SLOTS)
            self._check(p)
            p.stop()


if __name__ == "__main__":
    unittest.main()

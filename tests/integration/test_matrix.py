"""Issue 12's hazard matrix: every hazard crossed with every client situation, through
respfence against a real redis-server. No cell is left untested.

A cell passes when the client sees, in order and without hanging:
  - for each command either the answer it gets with no hazard at all (the control, run
    straight to a redis-server first), or an error: a visible, honest failure;
  - data afterwards that agrees with every answer: a write answered OK ran exactly once;
    one answered LOADING, BUSY or EXECABORT did not run; only "may or may not have run"
    leaves it open;
  - an EXEC under a WATCH whose connection was lost never commits.
"""

import threading
import time
import unittest

from harness import Error, RawConn, TestCase, encode, wait_until

WATCHED = "w"
SPIN = "local i = 0 while true do i = i + 1 end"

# name: (commands before the hazard, commands after it)
SITUATIONS = {
    "pipeline": ([], [("SET", "a", "1"), ("INCR", "n"), ("GET", "a")]),
    "state changes": ([], [("CLIENT", "SETNAME", "x"), ("SELECT", "1"), ("SET", "b", "2"),
                           ("SELECT", "0"), ("GET", "b"), ("CLIENT", "GETNAME")]),
    "multi/exec": ([], [("MULTI",), ("INCR", "n"), ("SET", "c", "3"), ("EXEC",)]),
    "watch+multi": ([("WATCH", WATCHED)], [("MULTI",), ("SET", WATCHED, "mine"), ("EXEC",)]),
    "eval": ([], [("EVAL", "redis.call('INCR','e'); return redis.call('GET','e')", "0")]),
    "blocking": ([], [("RPUSH", "q", "x"), ("BLPOP", "q", "1")]),
}


def maybe_ran(reply):
    return isinstance(reply, Error) and "may or may not have run" in reply


def did_not_run(reply):
    return isinstance(reply, Error) and reply.split(" ", 1)[0] in ("LOADING", "BUSY", "EXECABORT")


class Cell:
    """One situation run on one connection; replies read with a deadline (no hangs)."""

    def __init__(self, case, port, name):
        self.case = case
        self.name = name
        self.pre, self.cmds = SITUATIONS[name]
        self.conn = RawConn(port, timeout=60)

    def run_pre(self):
        self.pre_replies = [self.conn.cmd(*c) for c in self.pre]

    def send(self):
        self.conn.send(b"".join(encode(*c) for c in self.cmds))

    def read(self):
        self.replies = [self.conn.reply() for _ in self.cmds]
        self.conn.close()
        return self.replies


class Matrix(TestCase):
    control = None

    def setUp(self):
        super().setUp()
        if Matrix.control is None:
            # The control: each situation straight to a redis-server, with no hazard.
            r = self.redis()
            Matrix.control = {}
            for name in SITUATIONS:
                RawConn(r.port).cmd("FLUSHALL")
                RawConn(r.port).cmd("SET", WATCHED, "orig")
                cell = Cell(self, r.port, name)
                cell.run_pre()
                cell.send()
                Matrix.control[name] = cell.read()

    # ------------------------------------------------------------------ the oracle

    def check(self, name, replies, server, link_lost):
        normal = Matrix.control[name]
        self.assertEqual(len(replies), len(normal))
        for got, want in zip(replies, normal):
            if got == want or isinstance(got, Error):
                continue
            # The honest, non-error differences: an aborted transaction after a lost WATCH,
            # a BLPOP that timed out because its RPUSH failed.
            if name == "watch+multi" and got is None:
                continue
            if name == "blocking" and got is None and isinstance(replies[0], Error):
                continue
            self.fail("%s: answer %r where direct says %r (all: %r)" % (name, got, want, replies))
        d = RawConn(server.port)

        def applied(reply, ok):
            """True/False if the write ran, None if the answer leaves it open."""
            if maybe_ran(reply):
                return None
            if did_not_run(reply) or isinstance(reply, Error):
                return False
            return ok(reply)

        if name == "pipeline":
            ran = applied(replies[0], lambda x: x == "OK")
            if ran is not None:
                self.assertEqual(d.cmd("GET", "a"), b"1" if ran else None, replies)
            if isinstance(replies[1], int):
                self.assertEqual(int(d.cmd("GET", "n")), replies[1], replies)
            elif did_not_run(replies[1]):
                self.assertEqual(d.cmd("GET", "n"), None, replies)
        elif name == "state changes":
            if replies[1] == "OK":
                self.assertEqual(d.cmd("GET", "b"), None, "b written into db 0: %r" % (replies,))
            if replies[2] == "OK" and replies[1] == "OK":
                d.cmd("SELECT", "1")
                self.assertEqual(d.cmd("GET", "b"), b"2", replies)
                d.cmd("SELECT", "0")
            if replies[0] == "OK" and not isinstance(replies[5], Error):
                self.assertEqual(replies[5], b"x", replies)
        elif name == "multi/exec":
            ex = replies[3]
            if isinstance(ex, list):
                self.assertEqual(ex, [1, "OK"])
                self.assertEqual((d.cmd("GET", "n"), d.cmd("GET", "c")), (b"1", b"3"))
            elif not maybe_ran(ex):
                self.assertEqual((d.cmd("GET", "n"), d.cmd("GET", "c")), (None, None), replies)
        elif name == "watch+multi":
            ex = replies[2]
            if link_lost:
                self.assertNotEqual(ex, ["OK"], "committed after its WATCH was lost")
            if ex == ["OK"]:
                self.assertEqual(d.cmd("GET", WATCHED), b"mine")
            elif not maybe_ran(ex):
                self.assertEqual(d.cmd("GET", WATCHED), b"orig", replies)
        elif name == "eval":
            ran = applied(replies[0], lambda x: x == b"1")
            if ran is not None:
                self.assertEqual(d.cmd("GET", "e"), b"1" if ran else None, replies)
        elif name == "blocking":
            if replies[1] == [b"q", b"x"]:
                self.assertEqual(d.cmd("LLEN", "q"), 0)
            elif did_not_run(replies[0]):
                self.assertEqual(d.cmd("LLEN", "q"), 0, replies)
        d.close()

    def reset_data(self, server):
        d = RawConn(server.port)
        d.cmd("FLUSHALL")
        d.cmd("SET", WATCHED, "orig")
        d.close()

    # ------------------------------------------------------------------ the hazards

    def each_cell(self, hazard, run):
        for name in SITUATIONS:
            with self.subTest(hazard=hazard, situation=name):
                run(name)

    def loading_row(self, health, hazard):
        r = self.redis()
        r.make_dataset(15000, {WATCHED: "orig"})
        p = self.proxy(r, health=health)

        def run(name):
            p.wait_state("ready", timeout=60)
            cell = Cell(self, p.port, name)
            cell.run_pre()
            r.restart_loading(delay_us=100)
            cell.send()
            replies = cell.read()
            r.wait_loaded()
            time.sleep(0.3)
            self.check(name, replies, r, link_lost=True)
        self.each_cell(hazard, run)

    def test_restart_into_loading_with_a_slow_prober(self):
        self.loading_row("interval_ms = 600000\nloading_interval_ms = 50", "loading, slow prober")

    def test_restart_into_loading_with_a_fast_prober(self):
        self.loading_row("interval_ms = 100\nloading_interval_ms = 50", "loading, fast prober")

    def test_link_killed_with_client_kill(self):
        r = self.redis()
        p = self.proxy(r)

        def run(name):
            self.reset_data(r)
            cell = Cell(self, p.port, name)
            cell.run_pre()
            RawConn(r.port).cmd("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
            time.sleep(0.2)
            cell.send()
            self.check(name, cell.read(), r, link_lost=True)
        self.each_cell("client kill", run)

    def test_concurrent_flushes(self):
        r = self.redis()
        p = self.proxy(r)
        stop = threading.Event()
        flushes = []

        def flusher():
            c = RawConn(p.port, timeout=30)
            c.cmd("SELECT", "9")
            n = 0
            while not stop.is_set():
                c.cmd("FLUSHDB")
                n += 1
            flushes.append(n)

        t = threading.Thread(target=flusher)
        t.start()
        try:
            def run(name):
                self.reset_data(r)
                cell = Cell(self, p.port, name)
                cell.run_pre()
                time.sleep(0.05)
                cell.send()
                self.check(name, cell.read(), r, link_lost=False)
            self.each_cell("concurrent flush", run)
        finally:
            stop.set()
            t.join(30)
        self.assertGreater(flushes[0], 10)

    def test_full_output_buffer(self):
        r = self.redis()
        p = self.proxy(r, extra="client_output_limit = 1048576")
        big = "v" * 200000

        def run(name):
            self.reset_data(r)
            RawConn(r.port).cmd("SET", "big", big)
            cell = Cell(self, p.port, name)
            cell.run_pre()
            # 4 MB of replies the client does not read yet, then the situation.
            cell.conn.send(encode("GET", "big") * 20)
            cell.send()
            for _ in range(20):
                self.assertEqual(cell.conn.reply(), big.encode())
            self.check(name, cell.read(), r, link_lost=False)
        self.each_cell("full output buffer", run)

    def test_busy_script(self):
        r = self.redis()
        RawConn(r.port).cmd("CONFIG", "SET", "busy-reply-threshold", "100")
        p = self.proxy(r, health="interval_ms = 100\nloading_interval_ms = 50")

        def run(name):
            self.reset_data(r)
            cell = Cell(self, p.port, name)
            cell.run_pre()
            runner = p.raw(timeout=30)
            runner.send(encode("EVAL", SPIN, "0"))

            def busy():
                reply = RawConn(r.port).cmd("PING")
                return isinstance(reply, Error) and reply.startswith("BUSY")
            wait_until(busy, 5, what="the server busy")
            cell.send()
            replies = cell.read()
            self.assertEqual(RawConn(p.port).cmd("SCRIPT", "KILL"), "OK")
            self.assertIsInstance(runner.reply(), Error)
            self.check(name, replies, r, link_lost=False)
        self.each_cell("busy script", run)


if __name__ == "__main__":
    unittest.main()

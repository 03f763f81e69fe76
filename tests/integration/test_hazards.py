"""Issue 12: respfence's own machinery (retries, the fence, backpressure, the prober) must
never change what a command does. Each test runs the client code straight to a
redis-server as a control where one makes sense, then through respfence, and compares:
through the proxy a command behaves as it does direct, or it fails visibly (an error),
never silently differently."""

import socket
import threading
import time
import unittest

from harness import SANITIZED, Error, RawConn, TestCase, encode, wait_until

KEYS = 30000
LOADING = "LOADING Redis is loading the dataset in memory"
SLOW_PROBER = "interval_ms = 600000\nloading_interval_ms = 50"
FAST_PROBER = "interval_ms = 100\nloading_interval_ms = 50"


def client_list(server):
    c = RawConn(server.port)
    try:
        text = c.cmd("CLIENT", "LIST").decode()
    finally:
        c.close()
    out = []
    for line in text.splitlines():
        out.append(dict(kv.split("=", 1) for kv in line.split(" ") if "=" in kv))
    return out


class Retries(TestCase):
    """R1: a command is sent twice only when the server said it did not run it, and
    nothing after it on that connection ran."""

    def pipeline_across_select(self, port, timeout=60):
        c = RawConn(port, timeout=timeout)
        c.send(encode("SET", "k", "v") + encode("SELECT", "1") + encode("SET", "k2", "v2") +
               encode("SELECT", "0"))
        return [c.reply() for _ in range(4)]

    def check_placement(self, server, replies, tag):
        """Every SET answered OK landed in the db its pipeline position selected."""
        d = RawConn(server.port)
        try:
            k_db0 = d.cmd("GET", "k")
            k2_db0 = d.cmd("GET", "k2")
            d.cmd("SELECT", "1")
            k2_db1 = d.cmd("GET", "k2")
        finally:
            d.close()
        self.assertEqual(replies[1], "OK", tag)
        self.assertEqual(replies[3], "OK", tag)
        self.assertEqual(k2_db0, None, "%s: k2 was written into db 0: %r" % (tag, replies))
        if replies[0] == "OK":
            self.assertEqual(k_db0, b"v", tag)
        else:
            self.assertEqual(replies[0], Error(LOADING), tag)
        if replies[2] == "OK":
            self.assertEqual(k2_db1, b"v2", tag)
        else:
            self.assertEqual(replies[2], Error(LOADING), tag)

    def test_a_loading_retry_never_reorders_a_pipeline_with_select(self):
        for health in (SLOW_PROBER, FAST_PROBER):
            with self.subTest(prober=health.split("\n")[0]):
                r = self.redis()
                r.make_dataset(KEYS)
                p = self.proxy(r, health=health)
                warm = p.raw()
                self.assertEqual(warm.cmd("PING"), "PONG")
                r.restart_loading()
                # Control: straight to the loading server.
                direct = self.pipeline_across_select(r.port)
                self.assertEqual(direct, [Error(LOADING), "OK", Error(LOADING), "OK"])
                through = self.pipeline_across_select(p.port)
                r.wait_loaded()
                time.sleep(0.5)  # anything retried has run by now
                self.check_placement(r, through, "through respfence")

    def test_a_script_error_that_mentions_loading_runs_once(self):
        r = self.redis()
        p = self.proxy(r, health=FAST_PROBER)
        epoch = p.backend_status()["flush_epoch"]
        scripts = {
            "free text": ("evalcount",
                          "redis.call('INCR','evalcount'); "
                          "return redis.error_reply('ERR app is loading the dataset in memory')"),
            "LOADING code": ("evalcount2",
                             "redis.call('INCR','evalcount2'); "
                             "return redis.error_reply('LOADING Redis is loading the dataset in memory')"),
        }
        for tag, (counter, script) in scripts.items():
            with self.subTest(tag):
                d = RawConn(r.port)
                direct = d.cmd("EVAL", script, "0")
                self.assertIsInstance(direct, Error)
                self.assertEqual(int(d.cmd("GET", counter)), 1)
                c = p.raw(timeout=10)
                self.assertEqual(c.cmd("EVAL", script, "0"), direct)
                self.assertEqual(int(d.cmd("GET", counter)), 2, "the script ran more than once")
                d.close()
        self.assertEqual(p.backend_status()["state"], "ready")
        self.assertEqual(p.backend_status()["flush_epoch"], epoch)
        self.assertEqual(p.backend_status()["retried"], 0)


class Watch(TestCase):
    """R2: what cannot be replayed invisibly fails visibly: a WATCH lost with its backend
    connection makes the next EXEC answer a null array, never commit."""

    def test_watch_lost_with_the_backend_connection_never_commits(self):
        r = self.redis()
        p = self.proxy(r)
        setup = r.raw()
        setup.cmd("SET", "k", "orig")
        # Control: direct, the client sees its connection fail.
        direct = r.raw()
        self.assertEqual(direct.cmd("WATCH", "k"), "OK")
        c = p.raw()
        self.assertEqual(c.cmd("WATCH", "k"), "OK")
        self.assertEqual(setup.cmd("SET", "k", "theirs"), "OK")
        setup.cmd("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        time.sleep(0.3)
        with self.assertRaises((ConnectionError, OSError)):
            direct.cmd("MULTI")
        self.assertEqual(c.cmd("MULTI"), "OK")
        self.assertEqual(c.cmd("SET", "k", "mine"), "QUEUED")
        self.assertEqual(c.cmd("EXEC"), None)
        self.assertEqual(setup.cmd("GET", "k"), b"theirs", "a lost update")
        # The session goes on normally afterwards.
        self.assertEqual(c.cmd("MULTI"), "OK")
        self.assertEqual(c.cmd("SET", "k", "mine"), "QUEUED")
        self.assertEqual(c.cmd("EXEC"), ["OK"])

    def test_watch_lost_to_a_server_timeout_never_commits(self):
        r = self.redis()
        p = self.proxy(r)
        setup = r.raw()
        setup.cmd("SET", "k", "orig")
        c = p.raw()
        self.assertEqual(c.cmd("WATCH", "k"), "OK")
        self.assertEqual(setup.cmd("SET", "k", "theirs"), "OK")
        setup.cmd("CONFIG", "SET", "timeout", "1")
        time.sleep(2.5)  # the server closes idle connections, the proxy's link among them
        setup = r.raw()
        setup.cmd("CONFIG", "SET", "timeout", "0")
        self.assertEqual(c.cmd("MULTI"), "OK")
        self.assertEqual(c.cmd("SET", "k", "mine"), "QUEUED")
        self.assertEqual(c.cmd("EXEC"), None)
        self.assertEqual(setup.cmd("GET", "k"), b"theirs")

    def test_unwatch_after_a_lost_watch_commits_again(self):
        r = self.redis()
        p = self.proxy(r)
        setup = r.raw()
        c = p.raw()
        self.assertEqual(c.cmd("WATCH", "k"), "OK")
        setup.cmd("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        time.sleep(0.3)
        self.assertEqual(c.cmd("UNWATCH"), "OK")
        self.assertEqual(c.cmd("MULTI"), "OK")
        self.assertEqual(c.cmd("SET", "k", "mine"), "QUEUED")
        self.assertEqual(c.cmd("EXEC"), ["OK"])
        self.assertEqual(setup.cmd("GET", "k"), b"mine")


class HeldTransactions(TestCase):
    def test_a_held_transaction_never_runs_only_its_tail_after_its_link_broke(self):
        # MULTI and SET a go to the server. A flush fence then comes up (the server holds
        # the flush under CLIENT PAUSE WRITE), so SET b is held by the proxy. The link
        # holding the server's half of the transaction is killed. EXEC must not run SET b
        # alone.
        r = self.redis()
        p = self.proxy(r)
        ctl = r.raw()
        a = p.raw(timeout=30)
        self.assertEqual(a.cmd("MULTI"), "OK")
        self.assertEqual(a.cmd("SET", "a", "1"), "QUEUED")
        ctl.cmd("CLIENT", "PAUSE", "20000", "WRITE")
        flusher = p.raw(timeout=30)
        flusher.send(encode("FLUSHALL"))
        wait_until(lambda: any(c.get("cmd") == "flushall" for c in client_list(r)), 5,
                   what="the flush waiting in the server")
        self.assertEqual(a.cmd("SET", "b", "2"), "QUEUED")
        # MULTI pins in both connection models: the client's own connection is in MULTI.
        in_multi = [c for c in client_list(r) if "x" in c.get("flags", "")]
        self.assertEqual(len(in_multi), 1, in_multi)
        ctl.cmd("CLIENT", "KILL", "ID", in_multi[0]["id"])
        ctl.cmd("CLIENT", "UNPAUSE")
        self.assertEqual(flusher.reply(), "OK")
        result = a.cmd("EXEC")
        self.assertIsInstance(result, Error, "EXEC answered %r" % (result,))
        self.assertEqual((ctl.cmd("GET", "a"), ctl.cmd("GET", "b")), (None, None))

    def test_flushall_inside_multi_in_slots_mode_flushes_everything_or_fails(self):
        servers = [self.redis() for _ in range(2)]
        p = self.proxy(servers, mode="slots")
        c = p.client()
        keys = ["key:%d" % i for i in range(40)]
        for k in keys:
            c.set(k, "v")
        self.assertTrue(all(s.client().dbsize() > 0 for s in servers))
        conn = p.raw()
        self.assertEqual(conn.cmd("MULTI"), "OK")
        conn.cmd("FLUSHALL")
        result = conn.cmd("EXEC")
        sizes = [s.client().dbsize() for s in servers]
        if isinstance(result, Error):
            self.assertEqual(sizes, [s.client().dbsize() for s in servers])
            self.assertEqual(sum(sizes), 40, "a failed EXEC must not have flushed anything")
        else:
            self.assertEqual(sizes, [0, 0], "EXEC answered %r but flushed one shard" % (result,))


class ConcurrentFlushes(TestCase):
    """R3: any number of concurrent flushes complete in about the time they take direct."""

    def storm(self, port, seconds=6.0, clients=6):
        stop = threading.Event()
        ops = []
        worst = []
        wrong = []

        def run(i):
            c = RawConn(port, timeout=30)
            n = 0
            w = 0.0
            key = "storm:%d" % i
            while not stop.is_set():
                for args, check in ((("FLUSHDB",), lambda x: x == "OK"),
                                    (("SET", key, "v"), lambda x: x == "OK"),
                                    (("GET", key), lambda x: x in (b"v", None))):
                    t0 = time.perf_counter()
                    reply = c.cmd(*args)
                    w = max(w, time.perf_counter() - t0)
                    if not check(reply):
                        wrong.append((args, reply))
                    n += 1
            ops.append(n)
            worst.append(w)
        ts = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
        for t in ts:
            t.start()
        time.sleep(seconds)
        stop.set()
        for t in ts:
            t.join(60)
        self.assertEqual(wrong, [])
        return sum(ops), max(worst)

    def test_a_flush_storm_runs_at_direct_speed(self):
        r = self.redis()
        p = self.proxy(r)
        direct_ops, direct_worst = self.storm(r.port)
        ops, worst = self.storm(p.port)
        print("\n  flush storm, 6 clients, 6 s: direct %d ops (worst %.1f ms), "
              "respfence %d ops (worst %.1f ms)" % (direct_ops, direct_worst * 1000, ops,
                                                    worst * 1000))
        # Speed is measured by the benchmark, on a quiet machine (README: about half of
        # direct's operations, worst latency well under 100 ms); this test checks that no
        # flush ever waits for a fence timeout (before issue 12: 60 operations in 6 s, the
        # worst 10 s), with bounds loose enough for a loaded CI machine and sanitizers.
        self.assertNotIn("fence_drain_timeout", p.log())
        self.assertGreaterEqual(ops, direct_ops // (50 if SANITIZED else 10))
        self.assertLess(worst, 2.0 if SANITIZED else 1.0)


class Backpressure(TestCase):
    """R4: a client that writes a whole pipeline before it reads never deadlocks."""

    N = 400000

    def write_then_read(self, port):
        value = "x" * 20
        one_reply = b"$20\r\n" + value.encode() + b"\r\n"
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        s.settimeout(60)
        t0 = time.monotonic()
        s.sendall(encode("GET", "bp") * self.N)
        want = len(one_reply) * self.N
        got = bytearray()
        while len(got) < want:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            got += chunk
        s.close()
        self.assertEqual(len(got), want)
        self.assertEqual(bytes(got[:len(one_reply)]), one_reply)
        self.assertEqual(bytes(got[-len(one_reply):]), one_reply)
        return time.monotonic() - t0

    def test_a_big_pipeline_written_before_reading_completes(self):
        r = self.redis()
        p = self.proxy(r)
        RawConn(r.port).cmd("SET", "bp", "x" * 20)
        direct = self.write_then_read(r.port)
        through = self.write_then_read(p.port)
        print("\n  400,000 GETs written then read: direct %.2f s, respfence %.2f s" %
              (direct, through))


class Busy(TestCase):
    """A busy server (a script past busy-reply-threshold) is neither down nor loading:
    its -BUSY answers pass through, and FUNCTION KILL / SCRIPT KILL reach it."""

    LIB = ("#!lua name=spinlib\n"
           "redis.register_function('spin', function() local i = 0 while true do i = i + 1 end end)")

    def test_a_runaway_function_can_be_killed_through_the_proxy(self):
        r = self.redis()
        ctl = r.raw()
        ctl.cmd("CONFIG", "SET", "busy-reply-threshold", "100")
        self.assertEqual(ctl.cmd("FUNCTION", "LOAD", self.LIB), b"spinlib")
        p = self.proxy(r, health=FAST_PROBER)
        runner = p.raw(timeout=30)
        runner.send(encode("FCALL", "spin", "0"))
        time.sleep(0.5)
        direct = RawConn(r.port, timeout=5)
        busy = direct.cmd("PING")
        self.assertIsInstance(busy, Error)
        self.assertTrue(busy.startswith("BUSY"), busy)
        c = p.raw(timeout=5)
        t0 = time.monotonic()
        self.assertEqual(c.cmd("PING"), busy)
        self.assertLess(time.monotonic() - t0, 1.0)
        wait_until(lambda: p.backend_status()["state"] == "busy", 5, what="/status says busy")
        self.assertEqual(c.cmd("FUNCTION", "KILL"), "OK")
        killed = runner.reply()
        self.assertIsInstance(killed, Error)
        self.assertIn("killed", killed)
        self.assertEqual(c.cmd("PING"), "PONG")
        wait_until(lambda: p.backend_status()["state"] == "ready", 5, what="ready again")

    def test_a_runaway_script_can_be_killed_through_the_proxy(self):
        r = self.redis()
        ctl = r.raw()
        ctl.cmd("CONFIG", "SET", "busy-reply-threshold", "100")
        p = self.proxy(r, health=FAST_PROBER)
        runner = p.raw(timeout=30)
        runner.send(encode("EVAL", "local i = 0 while true do i = i + 1 end", "0"))
        time.sleep(0.5)
        c = p.raw(timeout=5)
        reply = c.cmd("GET", "x")
        self.assertIsInstance(reply, Error)
        self.assertTrue(reply.startswith("BUSY"), reply)
        self.assertEqual(c.cmd("SCRIPT", "KILL"), "OK")
        self.assertIsInstance(runner.reply(), Error)
        self.assertEqual(c.cmd("GET", "x"), None)


class FenceOrder(TestCase):
    """A command a client sent behind its own blocking command that still waits: the
    server reads it only once that command is answered, so direct it runs after a flush
    sent meanwhile. Through respfence it does too, and the flush does not wait for it.
    (Until review 30 the fence waited for it, to answer it from before the flush: a
    BLPOP 0 ahead of it then held every client for queue_timeout_ms, a flush behind a
    client's own BLPOP deadlocked with the LPUSH that would end it, and a write behind a
    BLPOP 1 was lost to a flush that direct runs before it.)"""

    def behind_a_blocked_command(self, port):
        c = RawConn(port)
        c.cmd("SET", "k", "v")
        slow = RawConn(port, timeout=30)
        slow.send(encode("BLPOP", "nothing", "0.5") + encode("GET", "k"))
        time.sleep(0.15)
        flusher = RawConn(port, timeout=30)
        t0 = time.monotonic()
        self.assertEqual(flusher.cmd("FLUSHALL"), "OK")
        took = time.monotonic() - t0
        self.assertEqual(slow.reply(), None)
        got = slow.reply()
        self.assertEqual(c.cmd("GET", "k"), None)
        for x in (c, slow, flusher):
            x.close()
        return got, took

    def test_a_command_behind_a_waiting_blpop_runs_after_the_flush_as_direct(self):
        r = self.redis()
        direct, _ = self.behind_a_blocked_command(r.port)
        self.assertEqual(direct, None)
        for model in ('connections = "shared"', 'connections = "dedicated"'):
            with self.subTest(model=model):
                p = self.proxy(r, extra=model)
                got, took = self.behind_a_blocked_command(p.port)
                self.assertEqual(got, None)
                self.assertLess(took, 0.3, "the flush waited for the blocked client")
                p.stop()


if __name__ == "__main__":
    unittest.main()

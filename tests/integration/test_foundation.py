"""Issue 2: a client cannot tell respfence from the redis-server behind it."""

import os
import signal
import subprocess
import threading
import time
import unittest

import redis

from harness import (BIN, Error, Push, RawConn, TestCase, encode, redis_cli, rss_kb,
                     wait_until)


class Transparency(TestCase):
    def setUp(self):
        self.r = self.redis()
        self.p = self.proxy(self.r)

    def test_pipelined_get_set_keep_order(self):
        c = self.p.client()
        pipe = c.pipeline(transaction=False)
        for i in range(2000):
            pipe.set("k%d" % i, "v%d" % i)
            pipe.get("k%d" % i)
        out = pipe.execute()
        self.assertEqual(out[0::2], [True] * 2000)
        self.assertEqual(out[1::2], [b"v%d" % i for i in range(2000)])
        # Every write reached the server.
        self.assertEqual(self.r.client().dbsize(), 2000)

    def test_raw_pipeline_in_one_write(self):
        conn = self.p.raw()
        conn.send(b"".join(encode("INCR", "n") for _ in range(500)))
        self.assertEqual([conn.reply() for _ in range(500)], list(range(1, 501)))

    def test_multi_exec_and_watch_abort(self):
        a = self.p.client()
        b = self.p.client()
        a.set("w", 1)
        with a.pipeline(transaction=True) as pipe:
            pipe.watch("w")
            b.set("w", 2)  # another client touches the watched key
            pipe.multi()
            pipe.set("w", 3)
            with self.assertRaises(redis.WatchError):
                pipe.execute()
        self.assertEqual(a.get("w"), b"2")
        with a.pipeline(transaction=True) as pipe:
            pipe.watch("w")
            pipe.multi()
            pipe.incr("w")
            pipe.incr("w")
            self.assertEqual(pipe.execute(), [3, 4])

    def test_multi_interactive_and_errors(self):
        conn = self.p.raw()
        self.assertEqual(conn.cmd("MULTI"), "OK")
        self.assertEqual(conn.cmd("SET", "t", "1"), "QUEUED")
        self.assertEqual(conn.cmd("MULTI"), Error("ERR MULTI calls can not be nested"))
        self.assertEqual(conn.cmd("INCR", "t"), "QUEUED")
        self.assertEqual(conn.cmd("EXEC"), ["OK", 2])
        self.assertEqual(conn.cmd("EXEC"), Error("ERR EXEC without MULTI"))
        self.assertEqual(conn.cmd("MULTI"), "OK")
        self.assertEqual(conn.cmd("GET"), Error("ERR wrong number of arguments for 'get' command"))
        self.assertTrue(conn.cmd("EXEC").startswith("EXECABORT"))

    def test_blpop_woken_by_another_client(self):
        waiter = self.p.client()
        got = {}

        def wait():
            got["v"] = waiter.blpop("queue", timeout=10)
        t = threading.Thread(target=wait)
        t.start()
        time.sleep(0.3)
        self.assertTrue(t.is_alive(), "BLPOP should block")
        self.p.client().lpush("queue", "job")
        t.join(10)
        self.assertEqual(got.get("v"), (b"queue", b"job"))

    def test_subscribe_publish_resp2(self):
        sub = self.p.client().pubsub()
        sub.subscribe("news", "sport")
        sub.psubscribe("wea*")
        confirmations = [sub.get_message(timeout=2) for _ in range(3)]
        self.assertEqual([m["type"] for m in confirmations], ["subscribe", "subscribe", "psubscribe"])
        pub = self.p.client()
        self.assertEqual(pub.publish("news", "hello"), 1)
        self.assertEqual(pub.publish("weather", "sunny"), 1)
        m1 = sub.get_message(timeout=2)
        m2 = sub.get_message(timeout=2)
        self.assertEqual((m1["type"], m1["channel"], m1["data"]), ("message", b"news", b"hello"))
        self.assertEqual((m2["type"], m2["pattern"], m2["data"]), ("pmessage", b"wea*", b"sunny"))
        # PING in subscribed context, and unsubscribing from everything.
        raw = self.p.raw()
        raw.cmd("SUBSCRIBE", "c1")
        self.assertEqual(raw.cmd("PING"), [b"pong", b""])
        raw.send(encode("UNSUBSCRIBE"))
        self.assertEqual(raw.reply(), [b"unsubscribe", b"c1", 0])
        self.assertEqual(raw.cmd("GET", "x"), None)  # normal commands work again

    def test_subscribe_publish_resp3(self):
        conn = self.p.raw()
        hello = conn.cmd("HELLO", "3")
        self.assertEqual(hello["proto"], 3)
        conn.send(encode("SUBSCRIBE", "ch"))
        self.assertEqual(conn.reply(), Push([b"subscribe", b"ch", 1]))
        self.assertEqual(self.p.client().publish("ch", "m1"), 1)
        self.assertEqual(conn.reply(), Push([b"message", b"ch", b"m1"]))
        # RESP3 allows ordinary commands while subscribed; replies stay in order.
        self.assertEqual(conn.cmd("SET", "k", "v"), "OK")
        self.assertEqual(conn.cmd("PING"), "PONG")
        conn.send(encode("UNSUBSCRIBE", "ch"))
        self.assertEqual(conn.reply(), Push([b"unsubscribe", b"ch", 0]))

    def test_redis_cli_resp3(self):
        self.p.client().hset("h", mapping={"f": "v"})
        out = redis_cli(self.p.port, "--no-raw", "hgetall", "h", proto3=True)
        self.assertIn('1# "f" => "v"', out)
        out = redis_cli(self.p.port, "hello", "3", proto3=True)
        self.assertIn("proto", out)
        # redis-cli -3 receiving pushes in subscribe mode.
        proc = subprocess.Popen(["redis-cli", "-p", str(self.p.port), "-3", "subscribe", "c3"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: self.p.client().publish("c3", "via-cli") == 1, 5,
                       what="redis-cli to subscribe")
        finally:
            time.sleep(0.2)
            proc.terminate()
            out = proc.communicate(timeout=5)[0].decode()
        self.assertIn("via-cli", out)

    def test_client_tracking_invalidation_push(self):
        conn = self.p.raw()
        conn.cmd("HELLO", "3")
        self.assertEqual(conn.cmd("CLIENT", "TRACKING", "ON"), "OK")
        self.p.client().set("tracked", "1")
        self.assertEqual(conn.cmd("GET", "tracked"), b"1")
        self.p.client().set("tracked", "2")
        self.assertEqual(conn.reply(), Push([b"invalidate", [b"tracked"]]))

    def test_client_tracking_resp2_redirect(self):
        listener = self.p.raw()
        my_id = listener.cmd("CLIENT", "ID")
        listener.send(encode("SUBSCRIBE", "__redis__:invalidate"))
        self.assertEqual(listener.reply()[0], b"subscribe")
        tracked = self.p.raw()
        self.assertEqual(tracked.cmd("CLIENT", "TRACKING", "ON", "REDIRECT", my_id), "OK")
        tracked.cmd("GET", "t2")
        self.p.client().set("t2", "x")
        msg = listener.reply()
        self.assertEqual(msg[:2], [b"message", b"__redis__:invalidate"])
        self.assertEqual(msg[2], [b"t2"])

    def test_select_kept_per_client(self):
        a = self.p.raw()
        b = self.p.raw()
        self.assertEqual(a.cmd("SELECT", "5"), "OK")
        a.cmd("SET", "k", "in5")
        self.assertEqual(b.cmd("GET", "k"), None)
        self.assertEqual(a.cmd("GET", "k"), b"in5")
        direct = self.r.client(db=5)
        self.assertEqual(direct.get("k"), b"in5")

    def test_inline_commands_and_quit(self):
        conn = self.p.raw()
        conn.send(b"SET inl \"a b\"\r\nGET inl\r\nPING\r\n")
        self.assertEqual([conn.reply(), conn.reply(), conn.reply()], ["OK", b"a b", "PONG"])
        conn.send(encode("QUIT") + encode("PING"))
        self.assertEqual(conn.reply(), "OK")
        self.assertTrue(conn.closed_by_peer())

    def test_monitor(self):
        mon = self.p.raw()
        self.assertEqual(mon.cmd("MONITOR"), "OK")
        self.p.client().set("watched-by-monitor", "1")
        line = mon.reply()
        self.assertIn('"set" "watched-by-monitor" "1"', line.lower())

    def test_client_reply_off_skip(self):
        conn = self.p.raw()
        conn.send(encode("CLIENT", "REPLY", "OFF") + encode("SET", "a", "1") +
                  encode("CLIENT", "REPLY", "ON") + encode("GET", "a"))
        self.assertEqual(conn.reply(), "OK")  # CLIENT REPLY ON
        self.assertEqual(conn.reply(), b"1")
        conn.send(encode("CLIENT", "REPLY", "SKIP") + encode("INCR", "c") + encode("INCR", "c"))
        self.assertEqual(conn.reply(), 2)

    def test_redis_benchmark_no_errors(self):
        p = subprocess.run(["redis-benchmark", "-p", str(self.p.port), "-c", "50", "-P", "16",
                            "-n", "100000", "-t", "get,set", "-q", "-e"],
                           capture_output=True, timeout=300)
        out = (p.stdout + p.stderr).decode(errors="replace")
        self.assertEqual(p.returncode, 0, out)
        self.assertNotIn("ERR", out)
        self.assertIn("SET:", out)
        self.assertIn("GET:", out)
        self.assertEqual(self.r.client().get("key:__rand_int__") is not None, True)


class ProtocolErrors(TestCase):
    """Every protocol error is answered as the server answers it, byte for byte, then the
    connection closes; commands before the error are answered first."""

    CASES = [
        b"*abc\r\n",
        b"*1\r\n$x\r\n",
        b"*1\r\n$-5\r\n",
        b"*1\r\n$536870913\r\n",
        b"*2\r\n$3\r\nGET\r\n:1\r\n",
        b"*1\r\n\n\r\n",
        b"GET \"unbalanced\r\n",
        b"SET k 'a'b\r\n",
        b"*" + b"1" * 70000,
        b"*1\r\n$" + b"9" * 70000,
        b"A" * 70000,
    ]

    def test_errors_byte_for_byte(self):
        r = self.redis()
        p = self.proxy(r)
        for bad in self.CASES:
            with self.subTest(bad=bad[:40]):
                got = []
                for port in (r.port, p.port):
                    conn = RawConn(port)
                    conn.send(encode("PING") + encode("SET", "before", "1") + bad)
                    data = conn.read_all(settle=0.5)
                    closed = conn.closed_by_peer(wait=2)
                    conn.close()
                    got.append((data, closed))
                self.assertEqual(got[1], got[0])
                self.assertTrue(got[0][1], "the server closes after a protocol error")
                self.assertIn(b"-ERR Protocol error", got[0][0])
        # The proxy keeps serving everyone else.
        self.assertEqual(p.client().ping(), True)


class BackendFailure(TestCase):
    def test_backend_killed_mid_pipeline_then_state_replayed(self):
        r = self.redis()
        p = self.proxy(r, health="interval_ms = 100\nloading_interval_ms = 50")
        conn = p.raw()
        self.assertEqual(conn.cmd("SELECT", "3"), "OK")
        self.assertEqual(conn.cmd("CLIENT", "SETNAME", "survivor"), "OK")
        conn.cmd("SET", "before", "1")
        # A pipeline whose first command keeps the server busy; the server dies under it.
        conn.send(encode("DEBUG", "SLEEP", "2") + b"".join(encode("INCR", "n") for _ in range(50)))
        time.sleep(0.3)
        r.kill9()
        replies = [conn.reply() for _ in range(51)]
        self.assertTrue(all(isinstance(x, Error) for x in replies), replies[:3])
        self.assertIn("connection to the backend was lost", replies[0])
        # Same port, empty dataset: the client keeps its connection and its state.
        r.start()
        p.wait_state("ready")
        self.assertEqual(conn.cmd("SET", "after", "2"), "OK")
        self.assertEqual(conn.cmd("CLIENT", "GETNAME"), b"survivor")
        self.assertEqual(r.client(db=3).get("after"), b"2")
        self.assertEqual(r.client(db=0).get("after"), None)

    def test_client_that_never_reads_stays_bounded(self):
        r = self.redis()
        p = self.proxy(r, extra="client_output_limit = 4194304")
        r.client().set("big", b"x" * (1 << 20))
        base = rss_kb(p.pid)
        conn = p.raw()
        conn.sock.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_RCVBUF, 4096)
        # 400 replies of 1 MB, never read: 400 MB if the proxy buffered them.
        sender = threading.Thread(target=lambda: conn.send(encode("GET", "big") * 400))
        sender.daemon = True
        sender.start()
        time.sleep(3)
        grown = rss_kb(p.pid) - base
        self.assertLess(grown, 64 * 1024, "proxy RSS grew by %d kB" % grown)
        # Others are still served.
        self.assertEqual(p.client().ping(), True)
        conn.close()


class Lifecycle(TestCase):
    def test_sigterm_drains_in_flight_then_exits_zero(self):
        r = self.redis()
        p = self.proxy(r)
        conn = p.raw()
        conn.send(encode("DEBUG", "SLEEP", "0.5"))
        time.sleep(0.1)
        p.signal(signal.SIGTERM)
        self.assertEqual(conn.reply(), "OK")
        self.assertEqual(p.proc.wait(10), 0)

    def test_admin_endpoints(self):
        r = self.redis()
        p = self.proxy(r)
        self.assertEqual(p.http("/healthz")[0], 200)
        self.assertEqual(p.http("/readyz")[0], 200)
        st = p.status()
        self.assertEqual(st["backends"][0]["state"], "ready")
        self.assertIn("flush_epoch", st["backends"][0])
        self.assertEqual(p.http("/nope")[0], 404)

    def test_cli(self):
        out = subprocess.run([BIN, "--version"], capture_output=True).stdout.decode()
        self.assertTrue(out.startswith("respfence "))
        self.assertIn("--config", subprocess.run([BIN, "--help"], capture_output=True).stdout.decode())
        r = self.redis()
        p = self.proxy(r)
        ok = subprocess.run([BIN, "--config", p.config, "--check"], capture_output=True)
        self.assertEqual(ok.returncode, 0, ok.stderr)
        self.assertIn(b"configuration OK", ok.stdout)
        with open(p.config, "a") as f:
            f.write("\n[policy.commands]\nGET = \"sometimes\"\n")
        bad = subprocess.run([BIN, "--config", p.config, "--check"], capture_output=True)
        self.assertNotEqual(bad.returncode, 0)
        err = bad.stderr.decode()
        self.assertRegex(err, r"respfence\.toml:\d+:\d+: ")
        self.assertIn("must be", err)

    def test_no_file_mode(self):
        r = self.redis()
        port = __import__("harness").free_port()
        proc = subprocess.Popen([BIN, "--listen", "127.0.0.1:%d" % port, "--backend",
                                 "127.0.0.1:%d" % r.port, "--admin", ""],
                                stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: (proc.kill(), proc.wait()))
        wait_until(lambda: RawConn(port).cmd("PING") == "PONG", 10, what="proxy")
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(10), 0)


if __name__ == "__main__":
    unittest.main()

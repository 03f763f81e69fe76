"""Issue 3: while a real redis-server loads its dataset, clients of respfence keep working.

Each test saves a dataset, restarts the server with --key-load-delay so that loading
lasts several seconds, and checks what clients see through the proxy while the server
itself answers -LOADING."""

import threading
import time
import unittest

from harness import Error, RawConn, TestCase, encode, wait_until

KEYS = 30000  # with 100 us per key: about 5 s of loading
LOADING = "LOADING Redis is loading the dataset in memory"


class Loading(TestCase):
    def start(self, policy="", health="interval_ms = 200\nloading_interval_ms = 50",
              extra_keys=None, keys=KEYS):
        self.r = self.redis()
        self.r.make_dataset(keys, extra_keys or {"k": "v", "counter": "10"})
        self.p = self.proxy(self.r, policy=policy, health=health)
        return self.r, self.p

    def direct_says_loading(self):
        c = RawConn(self.r.port)
        try:
            return c.cmd("GET", "k") == Error(LOADING)
        finally:
            c.close()

    def test_ping_stays_pong_while_the_server_says_loading(self):
        r, p = self.start()
        conn = p.raw()
        conn3 = p.raw()
        self.assertEqual(conn3.cmd("HELLO", "3")["proto"], 3)
        r.restart_loading()
        p.wait_state("loading")
        seen = 0
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            direct = RawConn(r.port)
            self.assertEqual(direct.cmd("PING"), Error(LOADING))
            direct.close()
            self.assertEqual(conn.cmd("PING"), "PONG")
            self.assertEqual(conn.cmd("PING", "hello"), b"hello")
            self.assertEqual(conn3.cmd("PING"), "PONG")
            seen += 1
            time.sleep(0.05)
        self.assertGreater(seen, 10)
        self.assertTrue(r.is_loading(), "the window must still be open")
        self.assertGreater(p.backend_status()["rewritten_pings"], 30)

    def test_queued_gets_and_pipeline_answer_in_order_after_loading(self):
        r, p = self.start()
        client = p.raw(timeout=60)
        r.restart_loading()
        self.assertTrue(self.direct_says_loading())
        t0 = time.monotonic()
        client.send(encode("GET", "k"))
        client.send(encode("SET", "x", "1") + encode("ECHO", "hi") + encode("GET", "x") +
                    encode("INCR", "counter"))
        replies = [client.reply() for _ in range(5)]
        waited = time.monotonic() - t0
        self.assertEqual(replies, [b"v", "OK", b"hi", b"1", 11])
        self.assertFalse(r.is_loading())
        self.assertGreater(waited, 1.0, "the commands must have waited for loading to end")
        self.assertEqual(p.backend_status()["queued"], 0)

    def test_python_client_rides_through_loading(self):
        r, p = self.start()
        c = p.client(socket_timeout=60)
        self.assertEqual(c.get("k"), b"v")
        r.restart_loading()
        with c.pipeline(transaction=False) as pipe:
            pipe.get("k").set("y", "2").get("y")
            self.assertEqual(pipe.execute(), [b"v", True, b"2"])
        with c.pipeline(transaction=True) as pipe:
            pipe.incr("counter").incr("counter")
            self.assertEqual(pipe.execute(), [11, 12])

    def test_multi_during_loading_is_held_whole(self):
        r, p = self.start()
        conn = p.raw(timeout=60)
        r.restart_loading()
        p.wait_state("loading")
        self.assertEqual(conn.cmd("MULTI"), "OK")
        self.assertEqual(conn.cmd("INCR", "counter"), "QUEUED")
        self.assertEqual(conn.cmd("GET", "k"), "QUEUED")
        self.assertEqual(conn.cmd("EXEC"), [11, b"v"])
        self.assertEqual(r.commandstat_calls("multi"), 1)

    def test_reject_answers_at_once_and_the_server_never_sees_it(self):
        r, p = self.start(policy='on_loading = "reject"')
        conn = p.raw()
        r.restart_loading()
        p.wait_state("loading")
        for _ in range(20):
            t0 = time.perf_counter()
            self.assertEqual(conn.cmd("GET", "k"), Error(LOADING))
            self.assertLess(time.perf_counter() - t0, 0.05)
        self.assertTrue(r.is_loading())
        r.wait_loaded()
        direct = RawConn(r.port)
        stats = direct.cmd("INFO", "commandstats").decode()
        self.assertNotIn("cmdstat_get:", stats, "GET reached the server")
        self.assertGreater(p.backend_status()["rejected"], 19)

    def test_queue_timeout_answers_loading_after_the_deadline(self):
        r, p = self.start(policy="queue_timeout_ms = 300")
        conn = p.raw()
        r.restart_loading()
        p.wait_state("loading")
        t0 = time.monotonic()
        self.assertEqual(conn.cmd("GET", "k"), Error(LOADING))
        waited = time.monotonic() - t0
        self.assertGreater(waited, 0.25)
        self.assertLess(waited, 1.0)
        self.assertTrue(r.is_loading())

    def test_policy_commands_override_wins(self):
        r, p = self.start(policy='on_loading = "queue"\n[policy.commands]\nGET = "reject"\n'
                                 'SET = { action = "queue", timeout_ms = 200 }\n')
        conn = p.raw(timeout=60)
        r.restart_loading()
        p.wait_state("loading")
        t0 = time.monotonic()
        self.assertEqual(conn.cmd("GET", "k"), Error(LOADING))  # override: reject
        self.assertLess(time.monotonic() - t0, 0.05)
        t0 = time.monotonic()
        self.assertEqual(conn.cmd("SET", "a", "1"), Error(LOADING))  # override: 200 ms
        self.assertGreater(time.monotonic() - t0, 0.15)
        self.assertLess(time.monotonic() - t0, 1.0)
        # The default still queues everything else.
        self.assertEqual(conn.cmd("INCR", "counter"), 11)

    def test_loading_reply_absorbed_with_a_slow_prober(self):
        # The prober would not notice the restart for a minute: the -LOADING reply to a
        # forwarded command is what tells the proxy, and the command is retried.
        r, p = self.start(health="interval_ms = 60000\nloading_interval_ms = 50")
        conn = p.raw(timeout=60)
        self.assertEqual(conn.cmd("GET", "k"), b"v")
        r.restart_loading()
        time.sleep(0.2)
        self.assertEqual(p.backend_status()["state"], "ready")  # the proxy does not know yet
        reply = conn.cmd("GET", "k")
        if isinstance(reply, Error):
            # The first command on the broken connection is told the connection was lost.
            self.assertIn("connection to the backend was lost", reply)
            reply = conn.cmd("GET", "k")
        self.assertEqual(reply, b"v")
        self.assertFalse(r.is_loading())
        self.assertGreaterEqual(p.backend_status()["retried"], 1)

    def test_status_reports_loading_then_ready(self):
        r, p = self.start()
        r.restart_loading()
        st = wait_until(lambda: (lambda b: b if b["state"] == "loading" and b["loading_perc"] > 0
                                 else None)(p.backend_status()), 10, what="loading in /status")
        self.assertGreaterEqual(st["loading_eta_s"], 0)
        self.assertEqual(p.http("/readyz")[0], 503)
        r.wait_loaded()
        p.wait_state("ready")
        self.assertEqual(p.http("/readyz")[0], 200)

    def test_client_keeps_connection_db_and_name_across_restart(self):
        r = self.redis()
        r.client(db=4).set("k4", "in-db-4")
        r.make_dataset(KEYS)
        p = self.proxy(r, health="interval_ms = 200\nloading_interval_ms = 50")
        conn = p.raw(timeout=60)
        self.assertEqual(conn.cmd("SELECT", "4"), "OK")
        self.assertEqual(conn.cmd("CLIENT", "SETNAME", "keeper"), "OK")
        r.restart_loading()
        p.wait_state("loading")
        self.assertEqual(conn.cmd("GET", "k4"), b"in-db-4")
        self.assertEqual(conn.cmd("CLIENT", "GETNAME"), b"keeper")
        self.assertEqual(conn.cmd("ECHO", "still-here"), b"still-here")

    def test_many_clients_queue_and_all_get_answers(self):
        r, p = self.start()
        r.restart_loading()
        p.wait_state("loading")
        results = []
        lock = threading.Lock()

        def one(i):
            c = p.raw(timeout=60)
            got = c.cmd("INCR", "counter")
            with lock:
                results.append(got)
            c.close()
        threads = [threading.Thread(target=one, args=(i,)) for i in range(40)]
        for t in threads:
            t.start()
        wait_until(lambda: p.backend_status()["queued"] >= 30, 10, what="queued commands")
        for t in threads:
            t.join(60)
        self.assertEqual(sorted(results), list(range(11, 51)))


if __name__ == "__main__":
    unittest.main()

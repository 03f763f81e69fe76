"""Issue 6: metrics, readiness, hot reload, logs."""

import re
import signal
import time
import unittest

from harness import Error, TestCase, encode, wait_until

LOADING = "LOADING Redis is loading the dataset in memory"
FAST = "interval_ms = 200\nloading_interval_ms = 50"


def counter(m, backend, action):
    return m['respfence_commands_total{backend="%s",action="%s"}' % (backend, action)]


class Operations(TestCase):
    def loading_backend(self, policy="", keys=30000):
        r = self.redis()
        r.make_dataset(keys, {"k": "v"})
        p = self.proxy(r, policy=policy, health=FAST)
        return r, p

    def test_metrics_counters_move(self):
        r, p = self.loading_backend(policy='[policy.commands]\nDEL = "reject"\n'
                                           'EXISTS = { action = "queue", timeout_ms = 100 }\n')
        c = p.client()
        m0 = p.metrics()
        for _ in range(10):
            c.get("k")
        m1 = p.metrics()
        self.assertEqual(counter(m1, "b0", "forwarded") - counter(m0, "b0", "forwarded"), 10)
        self.assertEqual(m1["respfence_client_connections"], 1)
        self.assertEqual(m1['respfence_backend_state{backend="b0",state="ready"}'], 1)
        self.assertGreaterEqual(m1["respfence_request_duration_seconds_count"], 10)
        r.restart_loading()
        p.wait_state("loading")
        m2 = p.metrics()
        self.assertEqual(m2['respfence_backend_state{backend="b0",state="loading"}'], 1)
        conn = p.raw(timeout=60)
        self.assertEqual(conn.cmd("DEL", "k"), Error(LOADING))           # rejected
        self.assertEqual(conn.cmd("EXISTS", "k"), Error(LOADING))        # expired
        self.assertEqual(conn.cmd("PING"), "PONG")                       # rewritten
        waiting = p.raw(timeout=60)
        waiting.send(encode("GET", "k"))                                 # queued
        wait_until(lambda: p.metrics()['respfence_queued_commands{backend="b0"}'] == 1, 5,
                   what="the queued gauge")
        m3 = p.metrics()
        for action in ("rejected", "expired", "rewritten", "queued"):
            self.assertGreaterEqual(counter(m3, "b0", action) - counter(m2, "b0", action), 1, action)
        self.assertEqual(waiting.reply(), b"v")
        m4 = p.metrics()
        self.assertEqual(m4['respfence_queued_commands{backend="b0"}'], 0)
        self.assertGreater(m4['respfence_loading_seconds_total{backend="b0"}'], 0.5)
        self.assertEqual(m4['respfence_backend_state{backend="b0",state="ready"}'], 1)
        # Prometheus text: every sample line is NAME{labels} VALUE.
        code, body = p.http("/metrics")
        for line in body.splitlines():
            if line and not line.startswith("#"):
                self.assertRegex(line, r'^respfence_[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? [0-9.e+-]+$')

    def test_readyz_flips_during_loading(self):
        r, p = self.loading_backend()
        self.assertEqual(p.http("/readyz")[0], 200)
        r.restart_loading()
        code, body = wait_until(lambda: (lambda x: x if x[0] == 503 else None)(p.http("/readyz")),
                                10, what="/readyz 503")
        self.assertIn("b0", body)
        self.assertEqual(len(body.strip().splitlines()), 1)
        self.assertEqual(p.http("/healthz")[0], 200)
        r.wait_loaded()
        wait_until(lambda: p.http("/readyz")[0] == 200, 10, what="/readyz 200 again")

    def test_sighup_switches_reject_to_queue_on_an_open_connection(self):
        r, p = self.loading_backend(policy='on_loading = "reject"')
        conn = p.raw(timeout=60)
        self.assertEqual(conn.cmd("GET", "k"), b"v")
        r.restart_loading()
        p.wait_state("loading")
        self.assertEqual(conn.cmd("GET", "k"), Error(LOADING))
        with open(p.config) as f:
            text = f.read()
        p.write_config(text.replace('on_loading = "reject"', 'on_loading = "queue"'))
        p.signal(signal.SIGHUP)
        wait_until(lambda: "event=reloaded" in p.log(), 5, what="the reload")
        self.assertTrue(r.is_loading())
        self.assertEqual(conn.cmd("GET", "k"), b"v")  # same connection, now it waits
        self.assertFalse(r.is_loading())

    def test_broken_file_on_reload_leaves_the_proxy_serving(self):
        r = self.redis()
        p = self.proxy(r)
        conn = p.raw()
        self.assertEqual(conn.cmd("SET", "a", "1"), "OK")
        with open(p.config) as f:
            good = f.read()
        p.write_config(good + "\n[policy]\non_loading = 12\n")  # duplicate table, bad value
        p.signal(signal.SIGHUP)
        wait_until(lambda: "event=reload_failed" in p.log(), 5, what="the failed reload")
        self.assertRegex(p.log(), r"respfence\.toml:\d+:\d+:")
        code, body = p.http("/reload", method="POST")
        self.assertEqual(code, 400)
        self.assertRegex(body, r"respfence\.toml:\d+:\d+:")
        self.assertEqual(conn.cmd("GET", "a"), b"1")
        self.assertEqual(p.client().ping(), True)
        # A good file again: POST /reload applies it and says what it could not.
        p.write_config(good.replace('listen = "127.0.0.1:%d"' % p.port, 'listen = "127.0.0.1:1"'))
        code, body = p.http("/reload", method="POST")
        self.assertEqual(code, 200, body)
        self.assertIn("not applied until restart: server.listen", body)
        self.assertEqual(conn.cmd("GET", "a"), b"1")

    def test_logs_are_one_structured_line_per_event(self):
        r = self.redis()
        p = self.proxy(r, health=FAST)
        c = p.client()
        for _ in range(100):
            c.get("x")
        r.stop()
        p.wait_state("down")
        r.start()
        p.wait_state("ready")
        lines = [l for l in p.log().splitlines() if l]
        for line in lines:
            self.assertRegex(line, r"^ts=\S+ level=(debug|info|warn|error) event=[a-z_]+( [a-z_]+=(\"[^\"]*\"|\S+))*$")
        events = [re.search(r"event=(\S+)", l).group(1) for l in lines]
        self.assertIn("started", events)
        self.assertIn("backend_state", events)
        self.assertIn("backend_error", events)
        self.assertLess(len(lines), 60, "no per-command logging")


if __name__ == "__main__":
    unittest.main()

"""Issue 15: /metrics is valid Prometheus text.

`promtool check metrics` (Debian's prometheus package) reads real scrapes of a running
respfence in slots mode over two redis-servers: idle, after traffic (every counter and
the latency histogram move), and while one backend loads with a command queued. One
backend's name needs label escaping (a quote and a backslash)."""

import shutil
import subprocess
import urllib.request

from harness import Proxy, TestCase, encode, wait_until

PROMTOOL = shutil.which("promtool")
# A quote and a backslash: label values must escape both.
ODD_NAME = 'we"ird\\name'
ODD_LABEL = 'we\\"ird\\\\name'


def promtool(text):
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True,
                       timeout=60)
    return p.returncode, (p.stdout + p.stderr).decode(errors="replace").strip()


class Prometheus(TestCase):
    def setUp(self):
        super().setUp()
        if not PROMTOOL:
            self.fail("promtool is not installed (scripts/deps --with-checks installs Debian's "
                      "prometheus package, which carries it)")

    def scrape(self, p):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % p.admin_port, timeout=5) as r:
            self.assertEqual(r.status, 200)
            self.assertEqual(r.headers["Content-Type"], "text/plain; version=0.0.4; charset=utf-8")
            return r.read().decode()

    def assert_promtool_clean(self, text, when):
        rc, out = promtool(text)
        self.assertEqual((rc, out), (0, ""), "promtool on the scrape %s:\n%s\n--- scrape ---\n%s"
                         % (when, out, text))

    def start(self):
        self.r0 = self.redis()
        self.r1 = self.redis()
        p = Proxy(self, [self.r0, self.r1], mode="slots",
                  health="interval_ms = 200\nloading_interval_ms = 50")
        with open(p.config) as f:
            text = f.read()
        escaped = ODD_NAME.replace("\\", "\\\\").replace('"', '\\"')
        p.write_config(text.replace('name = "b1"', 'name = "%s"' % escaped))
        return p.start()

    def test_promtool_accepts_scrapes_idle_busy_and_loading(self):
        p = self.start()
        text = self.scrape(p)
        self.assertIn('respfence_flush_epoch{backend="%s"}' % ODD_LABEL, text)
        self.assert_promtool_clean(text, "when idle")

        c = p.client()
        for i in range(100):
            c.set("k%d" % i, i)
            self.assertEqual(c.get("k%d" % i), str(i).encode())
        c.mget(["k%d" % i for i in range(20)])
        c.flushall()
        text = self.scrape(p)
        self.assertRegex(text, r'respfence_request_duration_seconds_count [1-9]')
        self.assertRegex(text, r'respfence_commands_total\{backend="b0",action="forwarded"\} [1-9]')
        self.assert_promtool_clean(text, "after traffic and a flush")

        # "bar" hashes to slot 5061: backend b0, the one that loads.
        self.r0.make_dataset(20000)
        self.r0.restart_loading(100)
        p.wait_state("loading", 0)
        conn = p.raw(timeout=60)
        conn.send(encode("GET", "bar"))
        wait_until(lambda: p.metrics()['respfence_queued_commands{backend="b0"}'] == 1, 10,
                   what="a queued command")
        text = self.scrape(p)
        self.assertIn('respfence_backend_state{backend="b0",state="loading"} 1', text)
        self.assert_promtool_clean(text, "while b0 loads with a command queued")
        self.assertIsNone(conn.reply())
        self.assert_promtool_clean(self.scrape(p), "after loading")

    def test_promtool_refuses_a_broken_scrape(self):
        """The check above can fail: promtool is strict about what respfence could get wrong."""
        p = self.start()
        text = self.scrape(p)
        self.assert_promtool_clean(text, "as served")
        for broken, why in [
                (text.replace("respfence_commands_total", "respfence_commands"), "_total"),
                (text.replace("# HELP respfence_client_connections", "# respfence_client_connections"),
                 "no help text"),
                (text.replace('backend="%s"' % ODD_LABEL, 'backend="%s"' % ODD_NAME), "parsing error"),
                (text.replace("respfence_request_duration_seconds_count",
                              "respfence_request_duration_seconds_total"), "")]:
            rc, out = promtool(broken)
            self.assertNotEqual((rc, out), (0, ""), "promtool accepted:\n" + broken)
            self.assertIn(why, out)


if __name__ == "__main__":
    import unittest
    unittest.main()

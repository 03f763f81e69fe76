"""Issue 15: the status page at GET / on the admin endpoint, in a real headless browser.

Debian's chromium loads the page from a running respfence in slots mode over two
redis-servers, while one of them is held in LOADING (a saved dataset, restarted with
--key-load-delay), and again once it has loaded. The page keeps what it shows in the
DOM (data-state, data-perc, a <progress> per backend, data-fetches on <body>), which
`chromium --dump-dom` prints after a few seconds of the page's own time.

RESPFENCE_STATUS_SCREENSHOT=FILE also saves a screenshot taken during loading (that is how
docs/status-page.png is made)."""

import html.parser
import os
import shutil
import subprocess
import tempfile

from harness import Proxy, TestCase, wait_until

CHROMIUM = shutil.which("chromium")
KEYS = 30000     # with --key-load-delay 200: loading lasts several seconds
# A name that would be markup if the page used innerHTML: it must come out as text.
MARKUP_NAME = "<i>replica</i>"


def chromium(url, *args, timeout=120):
    """Runs headless chromium on url with a fresh profile; returns its stdout."""
    profile = tempfile.mkdtemp(prefix="rf-chromium-")
    try:
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--disable-dev-shm-usage", "--user-data-dir=" + profile,
               "--virtual-time-budget=3000"] + list(args) + [url]
        env = dict(os.environ, HOME=profile)
        p = subprocess.run(cmd, capture_output=True, timeout=timeout, env=env)
        if p.returncode != 0:
            raise AssertionError("chromium exited %d: %s" % (p.returncode, p.stderr[-2000:]))
        return p.stdout.decode(errors="replace")
    finally:
        shutil.rmtree(profile, ignore_errors=True)


class Page(html.parser.HTMLParser):
    """What the page shows: body attributes, each backend row's attributes, its <progress>,
    the text of each cell, and every element seen (to spot injected markup)."""

    def __init__(self, text):
        super().__init__()
        self.body = {}
        self.rows = {}
        self.ids = {}
        self.tags = []
        self._row = None
        self._cell = None
        self._id = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "body":
            self.body = a
        elif tag == "tr" and "data-backend" in a:
            self._row = dict(a, cells=[], progress=None)
            self.rows[a["data-backend"]] = self._row
        elif tag == "td" and self._row is not None:
            self._cell = []
            self._row["cells"].append(self._cell)
        elif tag == "progress" and self._row is not None:
            self._row["progress"] = a
        if "id" in a:
            self._id = a["id"]
            self.ids[self._id] = ""

    def handle_endtag(self, tag):
        if tag == "tr":
            self._row = None
        elif tag == "td":
            self._cell = None
        if self._id and tag in ("dd", "small", "span"):
            self._id = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._id:
            self.ids[self._id] += data

    def cell(self, name, i):
        return "".join(self.rows[name]["cells"][i]).strip()


class StatusPage(TestCase):
    def setUp(self):
        super().setUp()
        if not CHROMIUM:
            self.fail("chromium is not installed (scripts/deps --with-checks installs it)")

    def start(self, b1_name="b1"):
        self.r0 = self.redis()
        self.r1 = self.redis()
        p = Proxy(self, [self.r0, self.r1], mode="slots",
                  health="interval_ms = 200\nloading_interval_ms = 50")
        with open(p.config) as f:
            text = f.read()
        p.write_config(text.replace('name = "b1"', 'name = "%s"' % b1_name))
        return p.start()

    def load(self, p):
        return Page(chromium("http://127.0.0.1:%d/" % p.admin_port, "--dump-dom"))

    def test_the_page_is_one_self_contained_document(self):
        p = self.start(b1_name=MARKUP_NAME)
        code, body = p.http("/")
        self.assertEqual(code, 200)
        self.assertTrue(body.startswith("<!doctype html>"), body[:100])
        # Nothing from elsewhere: no URL with a scheme or host, no external script or style.
        self.assertNotRegex(body, r"(?i)(https?:)?//[a-z0-9]")
        self.assertNotRegex(body, r"(?i)<(link|img|iframe|object|embed)\b|\bsrc\s*=|@import|url\(")
        self.assertIn('fetch("/status"', body)
        self.assertEqual(p.http("/", method="POST")[0], 405)
        # Names go in as text: the browser shows the markup, it does not parse it.
        page = self.load(p)
        self.assertEqual(page.rows[MARKUP_NAME]["data-state"], "ready")
        self.assertEqual(page.cell(MARKUP_NAME, 0), MARKUP_NAME + "127.0.0.1:%d" % self.r1.port)
        self.assertNotIn("i", page.tags, "a backend name was rendered as markup")

    def test_loading_bar_then_ready_in_a_headless_browser(self):
        p = self.start()
        page = self.load(p)
        self.assertGreaterEqual(int(page.body["data-fetches"]), 2,
                                "the page must refresh itself from /status")
        self.assertEqual(set(page.rows), {"b0", "b1"})
        self.assertEqual(page.rows["b0"]["data-state"], "ready")
        self.assertEqual(page.ids["version"], p.status()["version"])
        self.assertEqual(page.ids["mode"], "slots")

        # state_since_s: the ready backends have been ready for a while ...
        wait_until(lambda: p.backend_status(0)["state_since_s"] >= 2, 10, what="2 s of ready")
        # ... then b0 restarts into a long LOADING window; "bar" hashes to b0 (slot 5061).
        self.r0.make_dataset(KEYS)
        conn = p.raw(timeout=120)
        self.r0.restart_loading(200)
        p.wait_state("loading", 0)
        get = b"*2\r\n$3\r\nGET\r\n$3\r\nbar\r\n"
        conn.send(get)
        wait_until(lambda: 0 < p.backend_status(0)["loading_perc"] < 100, 15,
                   what="a loading percentage from the prober")
        status = p.status()["backends"]
        self.assertGreaterEqual(status[1]["state_since_s"], 2, "b1's state did not change")
        self.assertLess(status[0]["state_since_s"], status[1]["state_since_s"],
                        "b0's state changed after b1's last change")

        page = self.load(p)
        still_loading = self.r0.is_loading()
        row = page.rows["b0"]
        self.assertTrue(still_loading, "the loading window closed before the browser looked; "
                                       "it must last longer than a page load")
        self.assertEqual(row["data-state"], "loading")
        perc = float(row["data-perc"])
        self.assertTrue(0 < perc < 100, "the bar during loading shows %r" % perc)
        self.assertEqual(float(row["progress"]["value"]), perc)
        self.assertEqual(row["progress"]["max"], "100")
        self.assertEqual(page.cell("b0", 1), "loading")
        self.assertRegex(page.cell("b0", 2), r"^\d+\.\d%\s*ETA \d+")
        self.assertEqual(page.cell("b0", 4), "1", "the GET waits in b0's queue")
        self.assertEqual(page.cell("b0", 5), "%d B" % len(get))
        self.assertEqual(page.rows["b1"]["data-state"], "ready", "b1 serves while b0 loads")
        self.assertEqual(float(page.rows["b1"]["data-perc"]), 100)
        self.assertGreaterEqual(int(page.ids["clients"]), 1)

        shot = os.environ.get("RESPFENCE_STATUS_SCREENSHOT")
        if shot:
            chromium("http://127.0.0.1:%d/" % p.admin_port, "--hide-scrollbars",
                     "--window-size=1000,500", "--screenshot=" + os.path.abspath(shot))
            with open(shot, "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

        self.r0.wait_loaded()
        p.wait_state("ready", 0)
        self.assertIsNone(conn.reply())
        page = self.load(p)
        row = page.rows["b0"]
        self.assertEqual(row["data-state"], "ready")
        self.assertEqual(page.cell("b0", 1), "ready")
        self.assertEqual(float(row["data-perc"]), 100)
        self.assertEqual(page.cell("b0", 3), str(p.backend_status(0)["flush_epoch"]))
        self.assertEqual(page.cell("b0", 4), "0")
        self.assertRegex(page.cell("b0", 8), r"^\d+s$")


if __name__ == "__main__":
    import unittest
    unittest.main()

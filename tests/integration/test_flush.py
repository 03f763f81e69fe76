"""Issue 5: flush epochs and the flush fence, against real redis-servers."""

import threading
import time
import unittest

from harness import RawConn, TestCase, encode, wait_until

from test_sharding import RANGES, owner

FAST = "interval_ms = 100\nloading_interval_ms = 50"


class Epochs(TestCase):
    def test_epoch_moves_once_per_flush_and_for_outside_events(self):
        r = self.redis()
        p = self.proxy(r, health=FAST)
        c = p.client()
        e0 = p.backend_status()["flush_epoch"]
        for i, cmd in enumerate([("FLUSHALL",), ("FLUSHDB",), ("FLUSHALL", "ASYNC"),
                                 ("FLUSHDB", "SYNC")]):
            c.set("x", 1)
            c.execute_command(*cmd)
            self.assertEqual(c.get("x"), None)
            self.assertEqual(p.backend_status()["flush_epoch"], e0 + i + 1)
        # The prober sees these flushes in the server's counters: no double count.
        time.sleep(0.5)
        self.assertEqual(p.backend_status()["flush_epoch"], e0 + 4)
        # A flush sent straight to the server.
        r.client().flushall()
        wait_until(lambda: p.backend_status()["flush_epoch"] == e0 + 5, 5,
                   what="epoch after an outside flush")
        time.sleep(0.5)
        self.assertEqual(p.backend_status()["flush_epoch"], e0 + 5)
        # A restart.
        r.stop()
        r.start()
        wait_until(lambda: p.backend_status()["flush_epoch"] > e0 + 5, 10,
                   what="epoch after a restart")
        m = p.metrics()
        self.assertEqual(m['respfence_flush_epoch{backend="b0"}'],
                         p.backend_status()["flush_epoch"])

    def test_loading_completion_moves_the_epoch(self):
        r = self.redis()
        r.make_dataset(20000)
        p = self.proxy(r, health=FAST)
        before = p.backend_status()["flush_epoch"]
        r.restart_loading()
        p.wait_state("loading")
        r.wait_loaded()
        p.wait_state("ready")
        self.assertGreaterEqual(p.backend_status()["flush_epoch"], before + 1)

    def test_debug_reload_through_the_proxy_moves_the_epoch(self):
        # A reload of a small dataset is over long before the prober (once a minute
        # here) could see it loading; the proxy knows because the command went through it.
        r = self.redis()
        p = self.proxy(r, health="interval_ms = 60000\nloading_interval_ms = 60000")
        p.wait_state("ready")
        c = p.client()
        c.set("k", "v")
        before = p.backend_status()["flush_epoch"]
        self.assertEqual(c.execute_command("DEBUG", "RELOAD"), b"OK")
        self.assertEqual(p.backend_status()["flush_epoch"], before + 1)
        self.assertEqual(c.get("k"), b"v")
        c.execute_command("DEBUG", "SLEEP", "0")
        self.assertEqual(p.backend_status()["flush_epoch"], before + 1)


class Fence(TestCase):
    def test_get_flushall_get_in_order_during_loading(self):
        r = self.redis()
        r.make_dataset(30000, {"k": "before-the-flush"})
        p = self.proxy(r, health=FAST)
        clients = [p.raw(timeout=60) for _ in range(3)]
        r.restart_loading()
        p.wait_state("loading")
        clients[0].send(encode("GET", "k"))
        time.sleep(0.1)
        clients[1].send(encode("FLUSHALL"))
        time.sleep(0.1)
        clients[2].send(encode("GET", "k"))
        self.assertEqual(clients[0].reply(), b"before-the-flush")
        self.assertEqual(clients[1].reply(), "OK")
        self.assertEqual(clients[2].reply(), None)
        self.assertEqual(r.client().dbsize(), 0)

    def test_commands_before_a_flush_are_answered_from_before(self):
        r = self.redis()
        p = self.proxy(r, threads=2)
        c = p.client()
        c.set("k", "v")
        slow = p.raw(timeout=30)
        # A command already in flight when FLUSHALL arrives runs before it.
        slow.send(encode("DEBUG", "SLEEP", "0.5") + encode("GET", "k"))
        time.sleep(0.1)
        flusher = p.raw(timeout=30)
        t0 = time.monotonic()
        self.assertEqual(flusher.cmd("FLUSHALL"), "OK")
        self.assertGreater(time.monotonic() - t0, 0.3, "the flush waited for the earlier commands")
        self.assertEqual(slow.reply(), "OK")
        self.assertEqual(slow.reply(), b"v")
        self.assertEqual(c.get("k"), None)

    def test_a_flusher_that_leaves_does_not_lift_the_fence_before_its_flush_ran(self):
        # The server holds writes (CLIENT PAUSE WRITE), so the FLUSHALL sits on the wire
        # when its client disconnects. The proxy already bumped the epoch: it must see the
        # flush through, and hold the next client's SET until the flush has run. Before the
        # fix it closed the backend connection at once (the paused server then dropped the
        # flush) and let the SET go: "old" survived a flush every cache was told about.
        r = self.redis()
        p = self.proxy(r)
        c = p.client()
        c.set("old", "1")
        epoch = p.backend_status()["flush_epoch"]
        r.client().execute_command("CLIENT", "PAUSE", "1500", "WRITE")
        flusher = p.raw(timeout=30)
        flusher.send(encode("FLUSHALL"))
        wait_until(lambda: p.backend_status()["flush_epoch"] == epoch + 1, 5,
                   what="the flush accepted")
        time.sleep(0.2)  # on the wire, paused in the server
        flusher.close()
        time.sleep(0.2)
        later = p.raw(timeout=30)
        self.assertEqual(later.cmd("SET", "new", "1"), "OK")
        self.assertEqual(c.get("old"), None)
        self.assertEqual(c.get("new"), b"1")
        # The lingering session closed once its flush was answered.
        wait_until(lambda: p.metrics()["respfence_client_connections"] == 2, 5,
                   what="the flusher's session closed")

    def torn_reads(self, fence):
        """Readers MGET one key per shard in a loop while FLUSHALL runs; returns how many
        answers had one key and not the other."""
        servers = [self.redis() for _ in range(2)]
        extra = ['slots = "%d-%d"' % rr for rr in RANGES[2]]
        p = self.proxy(servers, mode="slots", threads=2, backend_extra=extra,
                       policy="flush_fence = %s" % ("true" if fence else "false"))
        ka, kb = "bar", "foo"
        self.assertEqual((owner(ka, 2), owner(kb, 2)), (0, 1))
        torn = 0
        reads = 0
        for rnd in range(6):
            c = p.client()
            c.mset({ka: "a", kb: "b"})
            stop = threading.Event()
            results = []
            lock = threading.Lock()

            def reader():
                conn = p.raw(timeout=30)
                local = []
                while not stop.is_set():
                    local.append(tuple(conn.cmd("MGET", ka, kb)))
                with lock:
                    results.extend(local)
            readers = [threading.Thread(target=reader) for _ in range(8)]
            for t in readers:
                t.start()
            time.sleep(0.1)
            # The flushing client first blocks its own connection to shard 1 (BLPOP for
            # 0.3 s), then sends FLUSHALL: shard 0 is flushed at once, shard 1 0.3 s later.
            # Without the fence, readers in between see one key gone and the other there.
            flusher = p.raw(timeout=30)
            flusher.send(encode("BLPOP", "{foo}list", "0.3") + encode("FLUSHALL"))
            self.assertEqual(flusher.reply(), None)
            self.assertEqual(flusher.reply(), "OK")
            time.sleep(0.1)
            stop.set()
            for t in readers:
                t.join(30)
            reads += len(results)
            torn += sum(1 for a, b in results if (a is None) != (b is None))
            self.assertIn((None, None), results, "round %d: readers saw the flush" % rnd)
        self.assertGreater(reads, 100)
        print("\n  flush_fence=%s: %d torn of %d cross-shard reads" % (fence, torn, reads))
        return torn

    def test_no_torn_reads_across_shards(self):
        self.assertEqual(self.torn_reads(fence=True), 0)

    def test_the_same_test_catches_torn_reads_without_the_fence(self):
        self.assertGreater(self.torn_reads(fence=False), 0)


if __name__ == "__main__":
    unittest.main()

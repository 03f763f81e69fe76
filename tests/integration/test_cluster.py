"""Issue 9: respfence in front of a real Redis Cluster (three primaries on loopback), for
clients that know nothing about clusters."""

import subprocess
import threading
import time
import unittest

from harness import (Error, RawConn, RedisCluster, TestCase, cluster_proxy, encode, redis_cli,
                     wait_until)

FAST = "interval_ms = 200\nloading_interval_ms = 50\ntimeout_ms = 1000"


class Cluster(TestCase):
    def setUp(self):
        super().setUp()
        self.c = RedisCluster(self, primaries=3)
        # A restarted primary answers CLUSTERDOWN for a few seconds after it has loaded
        # (until the others clear its FAIL flag); its commands wait through both.
        self.p = cluster_proxy(self, self.c, health=FAST, policy="queue_timeout_ms = 20000")
        wait_until(lambda: sum(1 for b in self.p.status()["backends"] if b["state"] == "ready") >= 3,
                   15, what="three ready primaries")

    def test_plain_clients_use_every_slot(self):
        c = self.p.client()  # redis-py's non-cluster client
        keys = ["k:%d" % i for i in range(2000)]
        pipe = c.pipeline(transaction=False)
        for k in keys:
            pipe.set(k, k)
        self.assertEqual(pipe.execute(), [True] * len(keys))
        self.assertEqual(c.mget(keys[:500]), [k.encode() for k in keys[:500]])
        # Every key is on the primary that owns its slot, as the cluster itself says.
        for k in keys[::37]:
            owner = self.c.node_by_port(self.c.owner_port(k))
            self.assertEqual(owner.client().get(k), k.encode(), k)
        self.assertEqual(c.dbsize(), len(keys))
        self.assertEqual(len(set(c.scan_iter(count=200))), len(keys))
        self.assertEqual(c.delete(*keys[:100]), 100)
        # redis-cli without -c: no MOVED ever reaches it.
        for k in keys[100:130]:
            self.assertEqual(redis_cli(self.p.port, "GET", k).strip(), k)
            self.assertEqual(redis_cli(self.p.port, "SET", k, "cli").strip(), "OK")
        # Keys of different slots in one command, the way a cluster refuses them.
        conn = self.p.raw()
        self.assertEqual(conn.cmd("RENAME", "k:200", "k:201"),
                         Error("CROSSSLOT Keys in request don't hash to the same slot"))
        self.assertEqual(conn.cmd("MULTI"), "OK")
        self.assertEqual(conn.cmd("INCR", "{t}a"), "QUEUED")
        self.assertEqual(conn.cmd("INCR", "{t}b"), "QUEUED")
        self.assertEqual(conn.cmd("EXEC"), [1, 1])

    def test_live_reshard_is_invisible_to_clients(self):
        c = self.p.client()
        keys = ["r:%d" % i for i in range(3000)]
        pipe = c.pipeline(transaction=False)
        for k in keys:
            pipe.set(k, "0")
        pipe.execute()
        stop = threading.Event()
        errors = []
        written = {}
        lock = threading.Lock()

        def worker(wid):
            # Each worker owns its own keys: with shared keys, the order in which two threads
            # record their last write is not the order the server applied them.
            mine = keys[wid::4]
            conn = self.p.raw(timeout=30)
            n = 0
            while not stop.is_set():
                batch = mine[(n * 13) % len(mine):][:20]
                n += 1
                conn.send(b"".join(encode("SET", k, "w%d-%d" % (wid, n)) + encode("GET", k) for k in batch))
                for k in batch:
                    a, b = conn.reply(), conn.reply()
                    if isinstance(a, Error) or isinstance(b, Error) or a != "OK" or \
                       b != ("w%d-%d" % (wid, n)).encode():
                        errors.append((k, a, b))
                    else:
                        with lock:
                            written[k] = b
        workers = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for t in workers:
            t.start()
        time.sleep(0.5)
        prim = self.c.primaries()
        src, dst = self.c.node_id(prim[0]), self.c.node_id(prim[1])
        out = subprocess.run(["redis-cli", "--cluster", "reshard", "127.0.0.1:%d" % prim[0].port,
                              "--cluster-from", src, "--cluster-to", dst, "--cluster-slots", "600",
                              "--cluster-yes", "--cluster-pipeline", "50"],
                             capture_output=True, text=True, timeout=300)
        time.sleep(1.0)
        stop.set()
        for t in workers:
            t.join(30)
        self.assertEqual(out.returncode, 0, out.stderr[-2000:])
        self.assertEqual(errors[:5], [], "%d errors reached clients" % len(errors))
        self.assertGreater(len(written), 100)
        # No write was lost: the last value each key was given is what is stored.
        probe = RawConn(self.p.port, timeout=30)
        for k, v in list(written.items())[:500]:
            self.assertEqual(probe.cmd("GET", k), v)
        self.c.wait_ok()
        self.assertGreater(self.p.backend_status(0)["retried"] +
                           sum(b["retried"] for b in self.p.status()["backends"]), 0,
                           "the reshard should have redirected some commands")

    def test_restarted_primary_holds_only_its_slots(self):
        prim = self.c.primaries()
        victim = prim[1]
        victim_keys = []
        other_keys = []
        for i in range(400):
            k = "l:%d" % i
            (victim_keys if self.c.owner_port(k) == victim.port else other_keys).append(k)
        c = self.p.client()
        for k in victim_keys + other_keys:
            c.set(k, k)
        vc = victim.client()
        vc.execute_command("DEBUG", "POPULATE", 15000, "filler")
        vc.execute_command("SAVE")
        victim.restart_loading()
        idx = next(i for i, b in enumerate(self.p.status()["backends"])
                   if b["address"].endswith(":%d" % victim.port))
        self.p.wait_state("loading", i=idx)
        quick = self.p.raw()
        for k in other_keys[:20]:
            t0 = time.perf_counter()
            self.assertEqual(quick.cmd("GET", k), k.encode())
            self.assertLess(time.perf_counter() - t0, 0.2)
        self.assertTrue(victim.is_loading())
        # Meanwhile: what /status and /readyz say about the victim, every 50 ms.
        seen = []
        done = threading.Event()

        def watch():
            while not done.is_set():
                b = self.p.status()["backends"][idx]
                seen.append((b["state"], b["cluster_state"], self.p.http("/readyz")))
                time.sleep(0.05)
        watcher = threading.Thread(target=watch)
        watcher.start()
        slow = self.p.raw(timeout=60)
        t0 = time.monotonic()
        try:
            self.assertEqual(slow.cmd("GET", victim_keys[0]), victim_keys[0].encode())
        finally:
            done.set()
            watcher.join()
        waited = time.monotonic() - t0
        self.assertGreater(waited, 0.5)
        self.assertFalse(victim.is_loading())
        print("restarted primary: its command waited %.1f s" % waited, flush=True)
        # Loaded but not yet serving (its cluster_state is fail, a few seconds here):
        # /status shows both, and /readyz is 503 with that reason.
        self.assertIn(("ready", "fail"), [(st, cs) for st, cs, _ in seen])
        self.assertTrue(any(code == 503 and "cluster_state is fail" in body
                            for _, _, (code, body) in seen), seen[-5:])
        wait_until(lambda: self.p.http("/readyz")[0] == 200, 15, what="/readyz back to 200")
        self.assertEqual(self.p.status()["backends"][idx]["cluster_state"], "ok")

    def test_flushall_empties_every_primary_atomically(self):
        c = self.p.client()
        for i in range(300):
            c.set("f:%d" % i, i)
        ka, kb = "bar", "foo"  # different slots, different primaries
        self.assertNotEqual(self.c.owner_port(ka), self.c.owner_port(kb))
        c.mset({ka: "a", kb: "b"})
        stop = threading.Event()
        results = []

        def reader():
            conn = self.p.raw(timeout=30)
            while not stop.is_set():
                results.append(tuple(conn.cmd("MGET", ka, kb)))
        readers = [threading.Thread(target=reader) for _ in range(4)]
        for t in readers:
            t.start()
        time.sleep(0.2)
        # The flusher's own connection to foo's node is busy for 0.3 s first: without the
        # fence, bar's node would be empty while foo's is not.
        flusher = self.p.raw(timeout=30)
        flusher.send(encode("BLPOP", "{foo}list", "0.3") + encode("FLUSHALL"))
        self.assertIsNone(flusher.reply())
        self.assertEqual(flusher.reply(), "OK")
        time.sleep(0.1)
        stop.set()
        for t in readers:
            t.join(30)
        torn = [r for r in results if (r[0] is None) != (r[1] is None)]
        self.assertEqual(torn, [])
        self.assertIn((None, None), results)
        for n in self.c.primaries():
            self.assertEqual(n.client().dbsize(), 0)
        self.assertEqual(c.dbsize(), 0)


class ClusterReplicas(TestCase):
    """read_from = "replica-preferred": reads go to a shard's replica while it is ready,
    and to its primary while it loads."""

    def setUp(self):
        super().setUp()
        self.c = RedisCluster(self, primaries=3, replicas=1)
        self.p = cluster_proxy(self, self.c, read_from="replica-preferred", health=FAST)
        wait_until(lambda: sum(1 for b in self.p.status()["backends"] if b["state"] == "ready") >= 6,
                   20, what="three primaries and three replicas ready")

    def roles(self):
        primaries = self.c.primaries()
        replicas = [n for n in self.c.nodes if n not in primaries]
        return primaries, replicas

    def gets(self, nodes):
        return sum(n.commandstat_calls("get") for n in nodes)

    def test_reads_go_to_ready_replicas(self):
        c = self.p.client()
        keys = ["rr:%d" % i for i in range(300)]
        for k in keys:
            c.set(k, k)
        primaries, replicas = self.roles()
        for n in primaries:
            n.client().execute_command("WAIT", 1, 2000)
        for n in self.c.nodes:
            n.client().config_resetstat()
        for k in keys:
            self.assertEqual(c.get(k), k.encode())
        self.assertEqual(self.gets(primaries), 0)
        self.assertEqual(self.gets(replicas), len(keys))
        # Writes still go to primaries, and read-your-write holds for a client that waits
        # for replication as cluster clients must.
        self.assertTrue(c.set("rr:new", "x"))
        self.assertEqual(self.c.node_by_port(self.c.owner_port("rr:new")).client().get("rr:new"), b"x")

    def test_replica_reads_wait_for_the_flush_fence(self):
        # The flush waits in its primary (CLIENT PAUSE WRITE). A read of the same shard
        # that arrives after the flush must not be answered from the replica meanwhile.
        c = self.p.client()
        c.set("fence:k", "v")
        owner = self.c.node_by_port(self.c.owner_port("fence:k"))
        owner.client().execute_command("WAIT", 1, 2000)
        owner.client().execute_command("CLIENT", "PAUSE", "1500", "WRITE")
        flusher = self.p.raw(timeout=30)
        flusher.send(encode("FLUSHALL"))

        def flush_waiting():
            listing = owner.client().execute_command("CLIENT", "LIST")
            if isinstance(listing, bytes):
                listing = listing.decode()
            return "cmd=flushall" in listing
        wait_until(flush_waiting, 5, what="the flush held in its primary")
        reader = self.p.raw(timeout=30)
        t0 = time.monotonic()
        got = reader.cmd("GET", "fence:k")
        waited = time.monotonic() - t0
        self.assertEqual(flusher.reply(), "OK")
        self.assertGreater(waited, 0.5, "the read was answered (%r) before the flush ran" % (got,))

    def test_a_loading_replica_is_skipped(self):
        c = self.p.client()
        primaries, replicas = self.roles()
        victim = replicas[0]
        vc = victim.client()
        master_port = int(vc.info("replication")["master_port"])
        primary = self.c.node_by_port(master_port)
        # DEBUG POPULATE is not replicated: the replica gets its own, to load slowly later.
        vc.execute_command("DEBUG", "POPULATE", 15000, "filler")
        keys = [k for k in ("p:%d" % i for i in range(2000))
                if self.c.owner_port(k) == master_port][:50]
        for k in keys:
            c.set(k, k)
        primary.client().execute_command("WAIT", 1, 5000)
        vc.execute_command("SAVE")
        victim.restart_loading()
        idx = next(i for i, b in enumerate(self.p.status()["backends"])
                   if b["address"].endswith(":%d" % victim.port))
        self.p.wait_state("loading", i=idx)
        for n in self.c.nodes:
            if n is not victim:
                n.client().config_resetstat()
        for k in keys:
            t0 = time.perf_counter()
            self.assertEqual(c.get(k), k.encode())
            self.assertLess(time.perf_counter() - t0, 0.2, "the primary serves while its replica loads")
        self.assertTrue(victim.is_loading())
        self.assertEqual(primary.commandstat_calls("get"), len(keys))

    def test_a_node_that_leaves_is_retired(self):
        # A replica removed from the cluster and then stopped must not keep /readyz at 503
        # for ever, nor keep being probed; reads of its shard go to the primary.
        c = self.p.client()
        primaries, replicas = self.roles()
        victim = replicas[0]
        master_port = int(victim.client().info("replication")["master_port"])
        keys = [k for k in ("d:%d" % i for i in range(2000))
                if self.c.owner_port(k) == master_port][:20]
        for k in keys:
            c.set(k, k)
        out = subprocess.run(["redis-cli", "--cluster", "del-node", "127.0.0.1:%d" % master_port,
                              self.c.node_id(victim)], capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)

        def victim_status():
            return next(b for b in self.p.status()["backends"]
                        if b["address"].endswith(":%d" % victim.port))
        wait_until(lambda: victim_status()["retired"], 15, what="the removed node retired")
        self.assertIn('respfence_backend_retired{backend="127.0.0.1:%d"} 1' % victim.port,
                      self.p.http("/metrics")[1])
        victim.stop()
        time.sleep(1.5)  # several probe intervals: a probed node would be down by now
        self.assertEqual(self.p.http("/readyz"), (200, "ready\n"))
        self.assertTrue(victim_status()["retired"])
        for k in keys:
            self.assertEqual(c.get(k), k.encode())


if __name__ == "__main__":
    unittest.main()

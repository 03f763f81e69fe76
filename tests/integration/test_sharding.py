"""Issue 4: several plain redis-servers used as one keyspace through respfence, with
Redis Cluster's hashing done in the proxy. Expected slots are computed here, by an
independent CRC16, and checked against a real server's CLUSTER KEYSLOT."""

import random
import threading
import time
import unittest

from harness import Error, RawConn, RedisServer, TestCase, encode, wait_until


def crc16(data):
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def keyslot(key):
    if isinstance(key, str):
        key = key.encode()
    s = key.find(b"{")
    if s != -1:
        e = key.find(b"}", s + 1)
        if e != -1 and e != s + 1:
            key = key[s + 1:e]
    return crc16(key) % 16384


RANGES = {2: [(0, 8191), (8192, 16383)],
          3: [(0, 5460), (5461, 10922), (10923, 16383)]}


def owner(key, n):
    s = keyslot(key)
    for i, (a, b) in enumerate(RANGES[n]):
        if a <= s <= b:
            return i
    raise AssertionError(s)


class Sharding(TestCase):
    def cluster(self, n, explicit=True, **kw):
        servers = [self.redis() for _ in range(n)]
        extra = None
        if explicit:
            extra = ['slots = "%d-%d"' % r for r in RANGES[n]]
        p = self.proxy(servers, mode="slots", backend_extra=extra, **kw)
        return servers, p

    def test_keyslot_matches_the_server(self):
        c = RedisServer(self, args=["--cluster-enabled", "yes",
                                    "--cluster-config-file", "nodes.conf"]).start()
        conn = c.raw()
        for key in ["foo", "bar", "{user}x", "{}", "foo{}{bar}", "a{b}c{d}", "", "x" * 100] + \
                   ["k%d" % i for i in range(200)]:
            self.assertEqual(conn.cmd("CLUSTER", "KEYSLOT", key), keyslot(key), key)

    def check_placement(self, n, explicit):
        servers, p = self.cluster(n, explicit)
        c = p.client()
        keys = ["key:%d" % i for i in range(1500)] + ["{tag}%d" % i for i in range(50)]
        pipe = c.pipeline(transaction=False)
        for k in keys:
            pipe.set(k, k)
        pipe.execute()
        direct = [s.client() for s in servers]
        for k in keys:
            o = owner(k, n)
            for i, d in enumerate(direct):
                self.assertEqual(d.exists(k), 1 if i == o else 0, (k, i, o))
        self.assertEqual(sum(d.dbsize() for d in direct), len(keys))
        self.assertTrue(all(d.dbsize() > 0 for d in direct))

    def test_every_key_lands_on_its_slot_owner_2(self):
        self.check_placement(2, explicit=True)

    def test_every_key_lands_on_its_slot_owner_3_even_split(self):
        # No `slots` in the config: split as redis-cli --cluster create would.
        self.check_placement(3, explicit=False)

    def test_split_and_merge_equal_one_server(self):
        servers, p = self.cluster(3)
        ref = self.redis().client()
        c = p.client()
        rnd = random.Random(7)
        keys = ["m:%d" % i for i in range(300)]
        mapping = {k: "v%d" % rnd.randrange(1000) for k in keys}
        self.assertTrue(c.mset(mapping))
        ref.mset(mapping)
        probe = [rnd.choice(keys + ["missing:%d" % i for i in range(50)]) for _ in range(200)]
        self.assertEqual(c.mget(probe), ref.mget(probe))
        self.assertEqual(c.exists(*probe), ref.exists(*probe))
        self.assertEqual(c.touch(*probe[:50]), ref.touch(*probe[:50]))
        self.assertEqual(c.dbsize(), ref.dbsize())
        self.assertEqual(sorted(c.keys("m:1*")), sorted(ref.keys("m:1*")))
        self.assertIn(c.randomkey(), [k.encode() for k in keys])
        self.assertEqual(c.delete(*probe[:100]), ref.delete(*probe[:100]))
        self.assertEqual(c.unlink(*probe[100:]), ref.unlink(*probe[100:]))
        self.assertEqual(c.dbsize(), ref.dbsize())
        self.assertEqual(sorted(c.keys("*")), sorted(ref.keys("*")))

    def test_scan_visits_each_key_exactly_once(self):
        servers, p = self.cluster(3)
        c = p.client()
        keys = {("s:%d" % i).encode() for i in range(3000)}
        pipe = c.pipeline(transaction=False)
        for k in keys:
            pipe.set(k, 1)
        pipe.execute()
        seen = list(c.scan_iter(count=100))
        self.assertEqual(len(seen), len(set(seen)), "a key was visited twice")
        self.assertEqual(set(seen), keys)
        matched = list(c.scan_iter(match="s:1*", count=50))
        self.assertEqual(set(matched), {k for k in keys if k.startswith(b"s:1")})
        self.assertEqual(len(matched), len(set(matched)))
        # A cursor the proxy did not make is the server's to refuse.
        self.assertIsInstance(p.raw().cmd("SCAN", "notanumber"), Error)

    def test_crossslot_where_keys_span_backends(self):
        servers, p = self.cluster(2)
        a, b = "foo", "bar"  # slots 12182 and 5061: different backends
        self.assertNotEqual(owner(a, 2), owner(b, 2))
        conn = p.raw()
        crossslot = Error("CROSSSLOT Keys in request don't hash to the same slot")
        self.assertEqual(conn.cmd("RENAME", a, b), crossslot)
        self.assertEqual(conn.cmd("BLPOP", a, b, "1"), crossslot)
        self.assertEqual(conn.cmd("EVAL", "return 1", "2", a, b), crossslot)
        self.assertEqual(conn.cmd("MSETNX", a, "1", b, "2"), crossslot)
        self.assertEqual(conn.cmd("SUNIONSTORE", a, a, b), crossslot)
        self.assertEqual(conn.cmd("WATCH", a, b), crossslot)
        self.assertEqual(conn.cmd("MULTI"), "OK")
        self.assertEqual(conn.cmd("SET", a, "1"), "QUEUED")
        self.assertEqual(conn.cmd("SET", b, "1"), "QUEUED")
        self.assertEqual(conn.cmd("EXEC"), crossslot)
        # Same hashtag: one backend, allowed.
        self.assertEqual(conn.cmd("EVAL", "return #KEYS", "2", "{t}a", "{t}b"), 2)
        self.assertEqual(conn.cmd("MULTI"), "OK")
        self.assertEqual(conn.cmd("SET", "{t}a", "1"), "QUEUED")
        self.assertEqual(conn.cmd("INCR", "{t}b"), "QUEUED")
        self.assertEqual(conn.cmd("EXEC"), ["OK", 1])
        self.assertEqual(conn.cmd("RPUSH", "{q}1", "x"), 1)
        self.assertEqual(conn.cmd("BLMOVE", "{q}1", "{q}2", "LEFT", "LEFT", "1"), b"x")
        # Keyless commands go to the first backend.
        self.assertIsInstance(conn.cmd("TIME"), list)

    def test_watch_and_transaction_on_one_shard(self):
        servers, p = self.cluster(2)
        c = p.client()
        c.set("{acct}balance", 10)
        with c.pipeline(transaction=True) as pipe:
            pipe.watch("{acct}balance")
            bal = int(pipe.get("{acct}balance"))
            pipe.multi()
            pipe.set("{acct}balance", bal - 3)
            pipe.incr("{acct}ops")
            self.assertEqual(pipe.execute(), [True, 1])
        self.assertEqual(c.get("{acct}balance"), b"7")

    def test_select_and_reply_order_across_shards(self):
        servers, p = self.cluster(2)
        conn = p.raw()
        self.assertEqual(conn.cmd("SELECT", "3"), "OK")
        keys = ["o:%d" % i for i in range(200)]
        conn.send(b"".join(encode("SET", k, k) for k in keys))
        self.assertEqual([conn.reply() for _ in keys], ["OK"] * len(keys))
        conn.send(b"".join(encode("GET", k) for k in keys))
        self.assertEqual([conn.reply() for _ in keys], [k.encode() for k in keys])
        for s in servers:
            self.assertGreater(s.client(db=3).dbsize(), 0)
            self.assertEqual(s.client(db=0).dbsize(), 0)
        self.assertEqual(conn.cmd("DBSIZE"), 200)

    def test_ping_info_fan_out(self):
        servers, p = self.cluster(3)
        conn = p.raw()
        self.assertEqual(conn.cmd("PING"), "PONG")
        self.assertEqual(conn.cmd("PING", "hi"), b"hi")
        info = conn.cmd("INFO", "server").decode()
        # One server's INFO, merged field by field.
        self.assertEqual(info.count("# Server"), 1)
        self.assertEqual(info.count("redis_version:"), 1)

    def test_one_loading_shard_holds_only_its_commands(self):
        servers, p = self.cluster(2, health="interval_ms = 200\nloading_interval_ms = 50")
        s1 = servers[1]
        s1.make_dataset(30000, {"foo": "on-1"})
        servers[0].client().set("bar", "on-0")
        self.assertEqual(owner("foo", 2), 1)
        self.assertEqual(owner("bar", 2), 0)
        s1.restart_loading()
        p.wait_state("loading", i=1)
        c0 = p.raw()
        for _ in range(10):
            t0 = time.perf_counter()
            self.assertEqual(c0.cmd("GET", "bar"), b"on-0")
            self.assertLess(time.perf_counter() - t0, 0.1, "shard 0 must keep serving")
            self.assertTrue(s1.is_loading())
        got = {}

        def slow():
            c1 = p.raw(timeout=60)
            got["get"] = c1.cmd("GET", "foo")
            got["mget"] = c1.cmd("MGET", "bar", "foo")
            got["dbsize"] = c1.cmd("DBSIZE")
            got["end"] = time.monotonic()
        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.5)
        self.assertTrue(t.is_alive(), "commands for the loading shard must wait")
        self.assertGreater(p.backend_status(1)["queued"], 0)
        self.assertEqual(p.backend_status(0)["queued"], 0)
        t.join(60)
        self.assertEqual(got["get"], b"on-1")
        self.assertEqual(got["mget"], [b"on-0", b"on-1"])
        self.assertEqual(got["dbsize"], 30002)
        self.assertFalse(s1.is_loading())

    def test_pubsub_and_scripts_in_slots_mode(self):
        servers, p = self.cluster(2)
        c = p.client()
        sub = c.pubsub()
        sub.subscribe("ch")
        self.assertEqual(sub.get_message(timeout=2)["type"], "subscribe")
        self.assertEqual(c.publish("ch", "x"), 1)
        self.assertEqual(sub.get_message(timeout=2)["data"], b"x")
        sha = c.script_load("return KEYS[1]")
        # The script exists on every shard, wherever its key routes it.
        self.assertEqual(c.evalsha(sha, 1, "foo"), b"foo")
        self.assertEqual(c.evalsha(sha, 1, "bar"), b"bar")


class SlotsCommandClasses(TestCase):
    """Issue 13: every command has a class in slots mode, so that the shards behave as one
    server. Each of these fails on b9669e1, where the commands below reached only the
    first shard (or the wrong one)."""

    def cluster(self, n=3, **kw):
        servers = [self.redis() for _ in range(n)]
        extra = ['slots = "%d-%d"' % r for r in RANGES[n]]
        return servers, self.proxy(servers, mode="slots", backend_extra=extra, **kw)

    @staticmethod
    def keys_on_every_shard(prefix, n=3, per_shard=5):
        keys, count = [], [0] * n
        i = 0
        while min(count) < per_shard:
            k = "%s%d" % (prefix, i)
            i += 1
            o = owner(k, n)
            if count[o] < per_shard:
                count[o] += 1
                keys.append(k)
        return keys

    def test_function_load_then_fcall_on_every_shard(self):
        servers, p = self.cluster()
        conn = p.raw()
        lib = "#!lua name=rflib\nredis.register_function('rfget', function(keys, args) " \
              "return redis.call('GET', keys[1]) end)"
        self.assertEqual(conn.cmd("FUNCTION", "LOAD", lib), b"rflib")
        for s in servers:
            self.assertEqual(s.raw().cmd("FUNCTION", "LIST")[0][1], b"rflib")
        keys = self.keys_on_every_shard("f:")
        for k in keys:
            self.assertEqual(conn.cmd("SET", k, k), "OK")
        for k in keys:
            self.assertEqual(conn.cmd("FCALL", "rfget", "1", k), k.encode(), k)
        # Loaded everywhere already: every shard refuses it, with the server's own error.
        err = conn.cmd("FUNCTION", "LOAD", lib)
        self.assertIsInstance(err, Error)
        self.assertIn("already exists", err)
        self.assertEqual(conn.cmd("FUNCTION", "DELETE", "rflib"), "OK")
        for s in servers:
            self.assertEqual(s.raw().cmd("FUNCTION", "LIST"), [])
        self.assertEqual(conn.cmd("FUNCTION", "LOAD", lib), b"rflib")
        dump = conn.cmd("FUNCTION", "DUMP")
        self.assertEqual(conn.cmd("FUNCTION", "FLUSH"), "OK")
        for k in keys:
            self.assertIsInstance(conn.cmd("FCALL", "rfget", "1", k), Error)
        self.assertEqual(conn.cmd("FUNCTION", "RESTORE", dump), "OK")
        for k in keys:
            self.assertEqual(conn.cmd("FCALL", "rfget", "1", k), k.encode(), k)

    def test_swapdb_swaps_every_shard_under_the_flush_fence(self):
        servers, p = self.cluster()
        conn = p.raw()
        keys = self.keys_on_every_shard("w:", per_shard=7)
        for k in keys:
            self.assertEqual(conn.cmd("SET", k, k), "OK")
        before = [p.backend_status(i)["flush_epoch"] for i in range(3)]
        self.assertEqual(conn.cmd("SWAPDB", "0", "1"), "OK")
        # The epoch of every backend moved: SWAPDB is a flush for the fence.
        self.assertEqual([p.backend_status(i)["flush_epoch"] for i in range(3)],
                         [e + 1 for e in before])
        self.assertEqual(conn.cmd("DBSIZE"), 0)
        self.assertEqual(conn.cmd("SELECT", "1"), "OK")
        self.assertEqual(conn.cmd("DBSIZE"), len(keys))
        for k in keys:
            self.assertEqual(conn.cmd("GET", k), k.encode(), k)
        for s in servers:
            self.assertEqual(s.client(db=0).dbsize(), 0)
            self.assertGreater(s.client(db=1).dbsize(), 0)

    def test_config_set_and_resetstat_reach_every_shard(self):
        servers, p = self.cluster()
        conn = p.raw()
        self.assertEqual(conn.cmd("CONFIG", "SET", "hash-max-listpack-entries", "7",
                                  "maxmemory-policy", "allkeys-lru"), "OK")
        for s in servers:
            c = s.raw()
            self.assertEqual(c.cmd("CONFIG", "GET", "hash-max-listpack-entries"),
                             [b"hash-max-listpack-entries", b"7"])
            self.assertEqual(c.cmd("CONFIG", "GET", "maxmemory-policy"),
                             [b"maxmemory-policy", b"allkeys-lru"])
        # A bad value: the server's own error, and no shard changed.
        self.assertIsInstance(conn.cmd("CONFIG", "SET", "maxmemory", "bla"), Error)
        keys = self.keys_on_every_shard("c:")
        for k in keys:
            conn.cmd("GET", k)
        for s in servers:
            self.assertGreater(s.client().info("stats")["keyspace_misses"], 0)
        self.assertEqual(conn.cmd("CONFIG", "RESETSTAT"), "OK")
        for s in servers:
            self.assertEqual(s.client().info("stats")["keyspace_misses"], 0)
        # INFO merged field by field: the misses of every shard added.
        for k in keys:
            conn.cmd("GET", k)
        info = conn.cmd("INFO", "stats").decode()
        self.assertIn("\r\nkeyspace_misses:%d\r\n" % len(keys), info)

    def test_refused_commands_name_themselves_and_the_mode(self):
        servers, p = self.cluster()
        conn = p.raw()
        self.assertEqual(
            conn.cmd("DEBUG", "POPULATE", "10"),
            Error("ERR respfence: 'DEBUG POPULATE' is not supported with routing.mode = \"slots\" "
                  "(it creates keys on one server whatever their slots)"))
        self.assertEqual(
            conn.cmd("REPLICAOF", "127.0.0.1", "1"),
            Error("ERR respfence: 'REPLICAOF' is not supported with routing.mode = \"slots\" "
                  "(each backend would copy the whole source: set up replicas on the backends)"))
        for s in servers:
            self.assertEqual(s.client().dbsize(), 0)
            self.assertEqual(s.client().info("replication")["role"], "master")
        # Inside MULTI, a command that changes every backend's state is refused, and EXEC
        # aborts, as the server does with a command it refuses while queueing.
        self.assertEqual(conn.cmd("MULTI"), "OK")
        self.assertEqual(conn.cmd("SET", "foo", "1"), "QUEUED")
        self.assertEqual(
            conn.cmd("CONFIG", "SET", "maxmemory", "0"),
            Error("ERR respfence: 'CONFIG SET' inside MULTI would reach one shard; send it "
                  "outside MULTI with routing.mode = \"slots\""))
        self.assertTrue(conn.cmd("EXEC").startswith("EXECABORT"))
        self.assertIsNone(conn.cmd("GET", "foo"))
        # CLIENT TRACKING with REDIRECT names a client of one backend.
        self.assertIn("'CLIENT TRACKING REDIRECT' is not supported",
                      conn.cmd("CLIENT", "TRACKING", "on", "REDIRECT", "1"))

    def test_sort_by_pattern_refused_unless_on_the_keys_backend(self):
        servers, p = self.cluster()
        conn = p.raw()
        ref = self.redis().raw()
        for c in (conn, ref):
            c.cmd("RPUSH", "{t}l", "1", "2", "3")
            c.cmd("MSET", "{t}w_1", "3", "{t}w_2", "2", "{t}w_3", "1",
                  "{t}o_1", "a", "{t}o_2", "b", "{t}o_3", "c")
            c.cmd("RPUSH", "l", "1", "2", "3")
        err = conn.cmd("SORT", "l", "BY", "w_*")
        self.assertEqual(
            err, Error("ERR respfence: 'SORT BY/GET' is not supported with routing.mode = "
                       "\"slots\" (a pattern may name keys on other backends: give it the "
                       "sorted key's {hashtag})"))
        self.assertIsInstance(conn.cmd("SORT_RO", "l", "GET", "o_*"), Error)
        self.assertEqual(conn.cmd("SORT", "l", "BY", "nosort", "GET", "#"),
                         ref.cmd("SORT", "l", "BY", "nosort", "GET", "#"))
        # With the sorted key's hashtag the pattern's keys are on its backend: allowed.
        q = ("SORT", "{t}l", "BY", "{t}w_*", "GET", "#", "GET", "{t}o_*")
        self.assertEqual(conn.cmd(*q), [b"3", b"c", b"2", b"b", b"1", b"a"])
        self.assertEqual(conn.cmd(*q), ref.cmd(*q))

    def test_debug_object_routed_by_key_and_digest_merged(self):
        servers, p = self.cluster()
        conn = p.raw()
        self.assertEqual(conn.cmd("DEBUG", "DIGEST"), "0" * 40)
        keys = self.keys_on_every_shard("d:")
        for k in keys:
            conn.cmd("RPUSH", k, "a", "b")
        for k in keys:
            r = conn.cmd("DEBUG", "OBJECT", k)
            self.assertNotIsInstance(r, Error, k)
            self.assertIn("encoding:quicklist", r)
        digest = conn.cmd("DEBUG", "DIGEST")
        self.assertNotEqual(digest, "0" * 40)
        # DEBUG RELOAD reaches every shard (and moves each one's epoch); the data survives.
        before = [p.backend_status(i)["flush_epoch"] for i in range(3)]
        self.assertEqual(conn.cmd("DEBUG", "RELOAD"), "OK")
        self.assertEqual([p.backend_status(i)["flush_epoch"] for i in range(3)],
                         [e + 1 for e in before])
        self.assertEqual(conn.cmd("DEBUG", "DIGEST"), digest)
        self.assertEqual(conn.cmd("DEBUG", "SET-ACTIVE-EXPIRE", "0"), "OK")
        self.assertEqual(conn.cmd("DEBUG", "SET-ACTIVE-EXPIRE", "1"), "OK")

    def test_script_kill_reaches_the_busy_shard(self):
        servers, p = self.cluster()
        for s in servers:
            s.client().config_set("busy-reply-threshold", 100)
        k = next(k for k in self.keys_on_every_shard("b:", per_shard=1) if owner(k, 3) == 2)
        busy = p.raw(timeout=30)
        busy.send(encode("EVAL", "while true do end", "1", k))
        time.sleep(0.5)
        conn = p.raw()
        self.assertEqual(conn.cmd("SCRIPT", "KILL"), "OK")
        self.assertIsInstance(busy.reply(), Error)
        self.assertEqual(conn.cmd("SCRIPT", "KILL"),
                         Error("NOTBUSY No scripts in execution right now."))


if __name__ == "__main__":
    unittest.main()

"""Issue 13: replication through respfence. SYNC and PSYNC turn the client's connection
into a byte tunnel to its backend connection (single mode), so `redis-cli --rdb`,
`redis-cli --replica` and a redis-server replica work through the proxy as they do
direct. In slots mode they get an error that names the mode."""

import os
import subprocess
import tempfile
import time
import unittest

from harness import Error, RawConn, RedisServer, TestCase, wait_until


def digest(port):
    c = RawConn(port)
    try:
        return c.cmd("DEBUG", "DIGEST")
    finally:
        c.close()


class Replication(TestCase):
    def test_redis_cli_rdb_writes_the_same_dataset_as_direct(self):
        r = self.redis()
        r.make_dataset(5000, {"k": "v" * 10000})
        c = r.raw()
        c.cmd("FUNCTION", "LOAD", "#!lua name=lib\nredis.register_function('f', function() return 1 end)")
        p = self.proxy(r)
        d = tempfile.mkdtemp(prefix="rf-rdb-")
        files = {}
        for name, port in (("direct", r.port), ("through", p.port)):
            path = os.path.join(d, name + ".rdb")
            out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), "--rdb", path],
                                 capture_output=True, text=True, timeout=60)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            files[name] = path
        self.assertEqual(os.path.getsize(files["direct"]), os.path.getsize(files["through"]))
        # The files differ only in their creation time: loaded, they are the same dataset.
        digests = {}
        for name, path in files.items():
            s = RedisServer(self)
            os.replace(path, os.path.join(s.dir, "dump.rdb"))
            s.start()
            digests[name] = digest(s.port)
            self.assertEqual(RawConn(s.port).cmd("DBSIZE"), 5001)
        self.assertEqual(digests["direct"], digests["through"])
        self.assertEqual(digests["direct"], digest(r.port))
        # The proxy still serves others, and the connection that tunnelled is gone.
        self.assertEqual(p.raw().cmd("GET", "k"), b"v" * 10000)

    def test_a_replica_replicates_through_the_proxy_including_later_writes(self):
        primary = self.redis()
        primary.make_dataset(2000)
        p = self.proxy(primary)
        replica = RedisServer(self).start("--replicaof", "127.0.0.1", str(p.port))

        def linked():
            info = RawConn(replica.port).cmd("INFO", "replication").decode()
            return "master_link_status:up" in info
        wait_until(linked, 30, what="the replica linked through respfence")
        wait_until(lambda: RawConn(replica.port).cmd("DBSIZE") == 2000, 10, what="the full sync")
        # Writes after it attached arrive through the same tunnel.
        w = p.raw()
        for i in range(100):
            w.cmd("SET", "after:%d" % i, i)
        primary.raw().cmd("SET", "direct-write", "x")
        wait_until(lambda: RawConn(replica.port).cmd("GET", "after:99") == b"99", 10,
                   what="writes made after the replica attached")
        wait_until(lambda: RawConn(replica.port).cmd("GET", "direct-write") == b"x", 10,
                   what="writes made around the proxy")
        self.assertEqual(digest(replica.port), digest(primary.port))
        # The primary sees its replica's acknowledgements (REPLCONF ACK goes back too).
        info = RawConn(primary.port).cmd("INFO", "replication").decode()
        self.assertIn("connected_slaves:1", info)
        wait_until(lambda: "lag=0" in RawConn(primary.port).cmd("INFO", "replication").decode() or
                   "lag=1" in RawConn(primary.port).cmd("INFO", "replication").decode(), 10,
                   what="the replica's REPLCONF ACK")

    def test_redis_cli_replica_prints_the_command_stream(self):
        r = self.redis()
        p = self.proxy(r)
        proc = subprocess.Popen(["stdbuf", "-oL", "redis-cli", "-h", "127.0.0.1", "-p", str(p.port),
                                 "--replica"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.addCleanup(proc.kill)
        os.set_blocking(proc.stdout.fileno(), False)
        seen = b""

        def read_until(marker, timeout):
            nonlocal seen
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and marker not in seen:
                chunk = proc.stdout.read()
                if chunk:
                    seen += chunk
                time.sleep(0.05)
            return marker in seen
        # The server waits repl-diskless-sync-delay (5 s) before it sends the RDB.
        self.assertTrue(read_until(b"Logging commands from master", 30), seen)
        RawConn(r.port).cmd("SET", "streamed", "yes")
        self.assertTrue(read_until(b"streamed", 10), seen)
        self.assertIn(b"SYNC with master", seen)
        self.assertIn(b'"SET","streamed","yes"', seen)

    def test_sync_in_slots_mode_is_an_error_that_names_the_mode(self):
        servers = [self.redis() for _ in range(2)]
        p = self.proxy(servers, mode="slots")
        c = p.raw()
        reply = c.cmd("SYNC")
        self.assertIsInstance(reply, Error)
        self.assertIn('routing.mode = "slots"', reply)
        self.assertEqual(c.cmd("PSYNC", "?", "-1"), reply)
        self.assertEqual(c.cmd("PING"), "PONG")


if __name__ == "__main__":
    unittest.main()

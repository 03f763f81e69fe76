"""Issue 14: shared backend connections. Clients that hold no connection state share a
few backend connections per worker; a client is pinned to a connection of its own once
it needs one. Each test checks that sharing is invisible: what a client sees is what it
would see on its own connection to redis-server (the control, where one makes sense)."""

import socket
import threading
import time
import unittest

from harness import SANITIZED, Error, RawConn, TestCase, encode, wait_until

SHARED = 'connections = "shared"'


def proxy_clients(server, proxy_pid=None):
    """The server's client connections, without the one asking."""
    c = RawConn(server.port)
    try:
        me = c.cmd("CLIENT", "ID")
        text = c.cmd("CLIENT", "LIST").decode()
    finally:
        c.close()
    out = []
    for line in text.splitlines():
        d = dict(kv.split("=", 1) for kv in line.split(" ") if "=" in kv)
        if int(d["id"]) != me:
            out.append(d)
    return out


class Isolation(TestCase):
    def test_identities_protocols_and_dbs_never_mix(self):
        # Six kinds of unpinned client, pipelining at once on one worker: each reads only
        # its own replies, in its own protocol, from its own db, as its own user.
        r = self.redis()
        ctl = r.raw()
        self.assertEqual(ctl.cmd("ACL", "SETUSER", "alice", "on", ">apw", "~a:*", "+@all"), "OK")
        self.assertEqual(ctl.cmd("ACL", "SETUSER", "bob", "on", ">bpw", "~b:*", "+@all"), "OK")
        for db in (0, 1, 2):
            ctl.cmd("SELECT", str(db))
            ctl.cmd("SET", "where", "db%d" % db)
        ctl.cmd("SELECT", "0")
        ctl.cmd("SET", "a:k", "alice's")
        ctl.cmd("SET", "b:k", "bob's")
        p = self.proxy(r, threads=1, extra=SHARED)

        kinds = {
            "db0": ([], [("GET", "where")], [b"db0"]),
            "db1": ([("SELECT", "1")], [("GET", "where")], [b"db1"]),
            "db2": ([("SELECT", "2")], [("GET", "where")], [b"db2"]),
            "alice": ([("AUTH", "alice", "apw")], [("GET", "a:k"), ("GET", "b:k")],
                      [b"alice's", "NOPERM"]),
            "bob": ([("AUTH", "bob", "bpw")], [("GET", "b:k"), ("GET", "a:k")],
                    [b"bob's", "NOPERM"]),
            "resp3": ([("HELLO", "3")], [("HGETALL", "nohash"), ("GET", "where")],
                      [{}, b"db0"]),
        }
        errors = []

        def run(name):
            pre, cmds, want = kinds[name]
            c = RawConn(p.port, timeout=20)
            for x in pre:
                got = c.cmd(*x)
                if isinstance(got, Error):
                    errors.append((name, x, got))
                    return
            batch = b"".join(encode(*x) for x in cmds) * 200
            for _ in range(5):
                c.send(batch)
                for i in range(200 * len(cmds)):
                    got = c.reply()
                    w = want[i % len(cmds)]
                    ok = got.startswith(w) if isinstance(w, str) and isinstance(got, Error) else got == w
                    if not ok:
                        errors.append((name, cmds[i % len(cmds)], got))
                        return
        threads = [threading.Thread(target=run, args=(k,)) for k in kinds for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        # None of them pinned: six keys, one connection each, on the one worker.
        st = p.status()
        self.assertEqual(st["connections"], "shared")
        self.assertEqual(st["pinned_clients"], 0)
        self.assertLessEqual(st["backends"][0]["connections"]["shared"], 6)

    def test_a_failed_auth_changes_nothing(self):
        # Direct: a wrong password answers WRONGPASS and the connection stays who it was.
        r = self.redis()
        ctl = r.raw()
        ctl.cmd("ACL", "SETUSER", "alice", "on", ">apw", "~a:*", "+@all")
        ctl.cmd("ACL", "SETUSER", "carol", "on", ">cpw", "~*", "+@all")
        ctl.cmd("SET", "secret", "s")
        p = self.proxy(r, threads=1, extra=SHARED)
        for port in (r.port, p.port):
            c = RawConn(port)
            self.assertEqual(c.cmd("AUTH", "alice", "apw"), "OK")
            got = c.cmd("AUTH", "carol", "wrong")
            self.assertIsInstance(got, Error)
            self.assertTrue(got.startswith("WRONGPASS"), got)
            # Still alice: the default user's key stays out of reach.
            self.assertTrue(c.cmd("GET", "secret").startswith("NOPERM"), port)
            self.assertEqual(c.cmd("ACL", "WHOAMI"), b"alice")

    def test_select_out_of_range_and_client_name_are_per_client(self):
        r = self.redis()
        p = self.proxy(r, threads=1, extra=SHARED)
        for port in (r.port, p.port):
            a, b = RawConn(port), RawConn(port)
            self.assertEqual(a.cmd("SELECT", "99"), Error("ERR DB index is out of range"))
            self.assertEqual(a.cmd("CLIENT", "SETNAME", "first"), "OK")
            self.assertIsNone(b.cmd("CLIENT", "GETNAME"))
            self.assertEqual(a.cmd("CLIENT", "GETNAME"), b"first")
            self.assertEqual(a.cmd("CLIENT", "SETNAME", "has space"),
                             Error("ERR Client names cannot contain spaces, newlines or special characters."))
            a.cmd("SET", "x", "a's")
            self.assertEqual(b.cmd("GET", "x"), b"a's")  # both in db 0


class Pinning(TestCase):
    def test_pin_in_the_middle_of_a_pipeline_keeps_order(self):
        # One write: plain commands, then commands that pin (WATCH, a blocking pop, CLIENT
        # ID), then more. Direct and through the proxy the replies and the data agree.
        seq = [("SET", "k", "1"), ("INCR", "k"), ("SELECT", "1"), ("SET", "k", "db1"),
               ("WATCH", "k"), ("INCR", "n"), ("MULTI",), ("INCR", "k2"), ("EXEC",),
               ("RPUSH", "q", "x"), ("BLPOP", "q", "1"), ("SELECT", "0"), ("INCR", "k"),
               ("GET", "k")]

        def run(port, server):
            c = RawConn(port, timeout=10)
            c.send(b"".join(encode(*x) for x in seq))
            got = [c.reply() for _ in seq]
            ctl = server.raw()
            data = [ctl.cmd("GET", "k"), ctl.cmd("SELECT", "1"), ctl.cmd("GET", "k"),
                    ctl.cmd("GET", "n"), ctl.cmd("GET", "k2")]
            return got, data
        direct = run(*(lambda s: (s.port, s))(self.redis()))
        r = self.redis()
        p = self.proxy(r, threads=1, extra=SHARED)
        self.assertEqual(run(p.port, r), direct)
        m = p.metrics()
        self.assertGreaterEqual(m['respfence_pins_total{reason="transaction"}'], 1)

    def test_a_pinned_client_keeps_its_state(self):
        # CLIENT SETNAME answered by the proxy, then SELECT, then a pin: the server's own
        # connection for the client has both (CLIENT INFO is answered by the server).
        r = self.redis()
        p = self.proxy(r, threads=1, extra=SHARED)
        c = p.raw()
        self.assertEqual(c.cmd("CLIENT", "SETNAME", "worker-7"), "OK")
        self.assertEqual(c.cmd("SELECT", "3"), "OK")
        info = c.cmd("CLIENT", "INFO").decode()
        self.assertIn("name=worker-7 ", info)
        self.assertIn(" db=3 ", info)
        self.assertEqual(c.cmd("SET", "z", "1"), "OK")
        ctl = r.raw()
        ctl.cmd("SELECT", "3")
        self.assertEqual(ctl.cmd("GET", "z"), b"1")


    def test_select_inside_multi_survives_the_unpin(self):
        # MULTI pins; the block's SELECT takes effect with EXEC. When the quiet client is
        # unpinned (about a second later) it must share the connections of db 1, not 0.
        r = self.redis()
        p = self.proxy(r, threads=1, extra=SHARED)
        c = p.raw()
        self.assertEqual([c.cmd("MULTI"), c.cmd("SELECT", "1"), c.cmd("EXEC")], ["OK", "QUEUED", ["OK"]])
        wait_until(lambda: p.status()["pinned_clients"] == 0, 10, what="the client unpinned")
        self.assertEqual(c.cmd("SET", "where", "x"), "OK")
        ctl = r.raw()
        self.assertEqual(ctl.cmd("EXISTS", "where"), 0)
        ctl.cmd("SELECT", "1")
        self.assertEqual(ctl.cmd("EXISTS", "where"), 1)


class Connections(TestCase):
    def test_idle_clients_share_a_few_connections(self):
        r = self.redis()
        threads = 2
        p = self.proxy(r, threads=threads, extra=SHARED)
        conns = []
        for i in range(1000):
            c = RawConn(p.port, timeout=20)
            conns.append(c)
        # Each sends one command, so that it has used a backend connection.
        for c in conns:
            c.send(encode("PING") if len(conns) % 2 else encode("GET", "k"))
        for c in conns:
            c.reply()
        wait_until(lambda: p.status()["clients"] == 1000, 10, what="1000 clients")
        mine = [c for c in proxy_clients(r) if c.get("name", "") != "respfence-probe"]
        n = p.status()["backends"][0]["connections"]
        self.assertLessEqual(n["shared"], 2 * threads, n)
        self.assertEqual(n["pinned"], 0)
        # The server agrees (the prober has one more of its own).
        self.assertLessEqual(len(mine), 2 * threads + 1, len(mine))
        m = p.metrics()
        self.assertEqual(m['respfence_backend_connections{backend="b0",kind="shared"}'], n["shared"])
        for c in conns:
            c.close()

    def test_a_killed_shared_connection_under_50_clients(self):
        # 50 clients INCR their own key in a loop; the server kills every normal
        # connection twice. Every reply is the right count or "may or may not have run";
        # every client stays connected; the key ends between the two.
        r = self.redis()
        p = self.proxy(r, threads=2, extra=SHARED)
        stop = threading.Event()
        results = {}

        def run(i):
            c = RawConn(p.port, timeout=30)
            ok = maybe = 0
            last = 0
            bad = []
            while not stop.is_set():
                got = c.cmd("INCR", "c%d" % i)
                if isinstance(got, Error):
                    if "may or may not have run" not in got:
                        bad.append(got)
                    maybe += 1
                    continue
                if got <= last:
                    bad.append(("went back", last, got))
                last = got
                ok += 1
            results[i] = (ok, maybe, bad, c.cmd("PING"))
        ts = [threading.Thread(target=run, args=(i,)) for i in range(50)]
        for t in ts:
            t.start()
        ctl = r.raw()
        for _ in range(2):
            time.sleep(0.7)
            self.assertGreaterEqual(ctl.cmd("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"), 1)
        time.sleep(0.7)
        stop.set()
        for t in ts:
            t.join(30)
        self.assertEqual(len(results), 50)
        total_maybe = 0
        for i, (ok, maybe, bad, pong) in results.items():
            self.assertEqual(bad, [], i)
            self.assertEqual(pong, "PONG", i)
            value = int(ctl.cmd("GET", "c%d" % i) or 0)
            self.assertGreaterEqual(value, ok, i)
            self.assertLessEqual(value, ok + maybe, i)
            total_maybe += maybe
        self.assertGreater(total_maybe, 0, "the kills hit no command in flight")

    def test_a_client_reading_nothing_does_not_slow_the_others(self):
        r = self.redis()
        big = "v" * 100000
        r.raw().cmd("SET", "big", big)
        p = self.proxy(r, threads=1, extra=SHARED + "\nclient_output_limit = 1048576")
        stuck = RawConn(p.port, timeout=30)
        # 20 MB of replies it never reads, sent in pieces so that the proxy reads them all.
        for _ in range(20):
            stuck.send(encode("GET", "big") * 10)
        worst = [0.0]
        counts = []

        def fast(i):
            c = RawConn(p.port, timeout=10)
            n = 0
            t_end = time.monotonic() + 2
            while time.monotonic() < t_end:
                t0 = time.monotonic()
                self.assertEqual(c.cmd("SET", "f%d" % i, str(n)), "OK")
                self.assertEqual(c.cmd("GET", "f%d" % i), str(n).encode())
                worst[0] = max(worst[0], time.monotonic() - t0)
                n += 1
            counts.append(n)
        ts = [threading.Thread(target=fast, args=(i,)) for i in range(49)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        self.assertEqual(len(counts), 49)
        self.assertGreater(min(counts), 10, counts)
        self.assertLess(worst[0], 1.0 if not SANITIZED else 3.0)
        # The stuck client still gets every reply, in order, once it reads.
        for _ in range(200):
            self.assertEqual(stuck.reply(), big.encode())


class HeadOfLine(TestCase):
    """What can hold a server's answer back for long (a busy script, a CLIENT PAUSE, a
    slow command) must not hold other clients queued behind it on a shared connection:
    each client sees what it sees on its own connection to redis-server (the control)."""

    def targets(self):
        r = self.redis()
        yield "direct", r, r.port
        r2 = self.redis()
        p = self.proxy(r2, threads=1, extra=SHARED)
        yield "proxy", r2, p.port

    def test_a_busy_script_answers_others_busy_and_script_kill_ends_it(self):
        for where, server, port in self.targets():
            with self.subTest(where=where):
                server.raw().cmd("CONFIG", "SET", "lua-time-limit", "50")
                looper = RawConn(port, timeout=10)
                looper.send(encode("EVAL", "while true do end", "0"))
                time.sleep(0.3)
                other = RawConn(port, timeout=3)
                got = other.cmd("PING")
                self.assertIsInstance(got, Error, where)
                self.assertTrue(got.startswith("BUSY"), got)
                self.assertEqual(RawConn(port, timeout=3).cmd("SCRIPT", "KILL"), "OK")
                got = looper.reply()
                self.assertTrue(got.startswith("ERR Script killed by user"), (where, got))
                self.assertEqual(other.cmd("PING"), "PONG")

    def test_two_scripts_paused_at_once_are_two_blocked_clients(self):
        # Redis's unit/pause: under CLIENT PAUSE WRITE, scripts of two clients are two
        # blocked clients; the second must not sit behind the first on one connection.
        for where, server, port in self.targets():
            with self.subTest(where=where):
                admin = RawConn(port)
                self.assertEqual(admin.cmd("CLIENT", "PAUSE", "60000", "WRITE"), "OK")
                a, b = RawConn(port, timeout=10), RawConn(port, timeout=10)
                a.send(encode("EVAL", "return 1", "0"))
                b.send(encode("EVAL", "#!lua\nreturn 2", "0"))
                ctl = server.raw()
                wait_until(lambda: b"blocked_clients:2" in ctl.cmd("INFO", "clients"), 5,
                           what="%s: two blocked clients" % where)
                # Reads of a third client go on while writes are paused.
                self.assertIsNone(RawConn(port, timeout=3).cmd("GET", "nothing"))
                self.assertEqual(admin.cmd("CLIENT", "UNPAUSE"), "OK")
                self.assertEqual([a.reply(), b.reply()], [1, 2])

    def test_a_pause_the_proxy_did_not_see_holds_only_the_writes(self):
        # CLIENT PAUSE sent straight to the server: a write through the proxy waits; a
        # read sent 200 ms later, by another client, is answered at once.
        for where, server, port in self.targets():
            with self.subTest(where=where):
                ctl = server.raw()
                self.assertEqual(ctl.cmd("CLIENT", "PAUSE", "5000", "WRITE"), "OK")
                w = RawConn(port, timeout=10)
                w.send(encode("SET", "paused", "1"))
                time.sleep(0.2)
                t0 = time.monotonic()
                self.assertIsNone(RawConn(port, timeout=4).cmd("GET", "elsewhere"))
                self.assertLess(time.monotonic() - t0, 1.0, where)
                self.assertEqual(ctl.cmd("CLIENT", "UNPAUSE"), "OK")
                self.assertEqual(w.reply(), "OK")

    def test_a_blocking_command_sent_first_blocks_first(self):
        # XREAD BLOCK on "$" waits for entries added after it runs. Sent, then an XADD
        # from another client: the XREAD must get it (Redis's stream-cgroups does this).
        # Its pin takes an idle shared connection, with no connect to wait for.
        for where, server, port in self.targets():
            with self.subTest(where=where):
                rd, r = RawConn(port, timeout=10), RawConn(port, timeout=10)
                self.assertEqual(r.cmd("PING"), "PONG")
                self.assertEqual(rd.cmd("PING"), "PONG")
                rd.send(encode("XREAD", "BLOCK", "3000", "STREAMS", "s", "$"))
                r.cmd("XADD", "s", "1-1", "f", "v")
                got = rd.reply()
                self.assertIsNotNone(got, where)
                self.assertEqual(got[0][1][0][0], b"1-1")

    def test_a_client_name_leaves_with_its_client(self):
        # CLIENT SETNAME names the shared connection it goes on (the last client's name
        # wins there); once that client is gone, no connection bears its name.
        for where, server, port in self.targets():
            with self.subTest(where=where):
                a = RawConn(port)
                self.assertEqual(a.cmd("CLIENT", "SETNAME", "gone-soon"), "OK")
                self.assertEqual(a.cmd("CLIENT", "GETNAME"), b"gone-soon")
                self.assertIsNone(RawConn(port).cmd("CLIENT", "GETNAME"))
                a.close()
                wait_until(lambda: all(c.get("name") != "gone-soon" for c in proxy_clients(server)),
                           5, what="%s: no connection named gone-soon" % where)


if __name__ == "__main__":
    unittest.main()

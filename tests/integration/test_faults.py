"""Issue 8: faults against real servers. In every case a witness client keeps checking
that the replies it gets are its own, in order; and the proxy's memory returns to where
it was."""

import signal
import socket
import threading
import time
import unittest

from harness import Error, RawConn, TestCase, encode, rss_kb, wait_until
from test_review19 import clients_of

LOADING = "LOADING Redis is loading the dataset in memory"


class Witness:
    """A client that pipelines SET/GET of its own keys and checks every answer: a wrong
    value or an answer out of order is a failure; an error is allowed only while
    `errors_allowed` is set."""

    def __init__(self, port):
        self.port = port
        self.stop = threading.Event()
        self.errors_allowed = threading.Event()
        self.bad = []
        self.rounds = 0
        self.errors = 0
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        n = 0
        conn = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = RawConn(self.port, timeout=30)
                batch = list(range(n, n + 20))
                conn.send(b"".join(encode("SET", "w:%d" % i, "v%d" % i) + encode("GET", "w:%d" % i)
                                   for i in batch))
                for i in batch:
                    a, b = conn.reply(), conn.reply()
                    if isinstance(a, Error) or isinstance(b, Error):
                        self.errors += 1
                        if not self.errors_allowed.is_set():
                            self.bad.append((i, a, b))
                        continue
                    if a != "OK" or b != b"v%d" % i:
                        self.bad.append((i, a, b))
                n += 20
                self.rounds += 1
            except (ConnectionError, OSError) as e:
                if not self.errors_allowed.is_set():
                    self.bad.append(("connection", repr(e)))
                conn = None
                time.sleep(0.05)

    def finish(self, case):
        self.stop.set()
        self.t.join(30)
        case.assertEqual(self.bad, [], "the witness saw wrong or misordered replies")
        case.assertGreater(self.rounds, 5)


class Faults(TestCase):
    FAST = "interval_ms = 100\nloading_interval_ms = 50\ntimeout_ms = 300"

    def test_backend_killed_mid_multi_and_mid_blpop(self):
        r = self.redis()
        p = self.proxy(r, health=self.FAST)
        w = Witness(p.port)
        w.errors_allowed.set()  # the witness shares the dying backend
        tx = p.raw(timeout=30)
        self.assertEqual(tx.cmd("MULTI"), "OK")
        self.assertEqual(tx.cmd("SET", "a", "1"), "QUEUED")
        blocked = p.raw(timeout=30)
        blocked.send(encode("BLPOP", "nothing", "0"))
        time.sleep(0.3)
        r.kill9()
        reply = blocked.reply()
        self.assertIsInstance(reply, Error)
        self.assertIn("connection to the backend was lost", reply)
        r.start()
        p.wait_state("ready")
        # The transaction died with the server: the rest of it must not run on its own.
        self.assertIsInstance(tx.cmd("INCR", "b"), Error)
        self.assertTrue(tx.cmd("EXEC").startswith("EXECABORT"))
        self.assertIsNone(r.client().get("b"))
        self.assertEqual(tx.cmd("PING"), "PONG")
        self.assertEqual(blocked.cmd("PING"), "PONG")
        w.errors_allowed.clear()
        time.sleep(0.5)
        w.finish(self)

    def test_restart_into_loading_with_full_queues(self):
        r = self.redis()
        r.make_dataset(30000, {"n": "0"})
        p = self.proxy(r, health=self.FAST, policy="queue_max = 40")
        r.restart_loading()
        p.wait_state("loading")
        results = []
        lock = threading.Lock()

        def one():
            c = p.raw(timeout=60)
            got = c.cmd("INCR", "n")
            with lock:
                results.append(got)
        threads = [threading.Thread(target=one) for _ in range(100)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        ok = sorted(x for x in results if isinstance(x, int))
        refused = [x for x in results if isinstance(x, Error)]
        self.assertEqual(len(ok) + len(refused), 100)
        self.assertLessEqual(len(ok), 40)
        self.assertGreater(len(ok), 0)
        self.assertTrue(all(x == Error(LOADING) for x in refused))
        self.assertEqual(ok, list(range(1, len(ok) + 1)))  # each ran once
        self.assertEqual(p.backend_status()["queued"], 0)
        w = Witness(p.port)
        time.sleep(0.5)
        w.finish(self)

    def test_backend_stops_answering(self):
        r = self.redis()
        p = self.proxy(r, health=self.FAST)
        conn = p.raw(timeout=30)
        self.assertEqual(conn.cmd("SET", "k", "v"), "OK")
        r.stop_sig = None
        r.proc.send_signal(signal.SIGSTOP)
        try:
            # The probe timed out on a connection that is up: busy (a stopped or slow
            # server), not down; the GET waits for the server, as direct.
            p.wait_state("busy", timeout=5)
            self.assertEqual(p.http("/readyz")[0], 503)
            t0 = time.monotonic()
            conn.send(encode("GET", "k"))
            time.sleep(1.0)
        finally:
            r.proc.send_signal(signal.SIGCONT)
        self.assertEqual(conn.reply(), b"v")
        self.assertGreater(time.monotonic() - t0, 0.9)
        p.wait_state("ready")
        w = Witness(p.port)
        time.sleep(0.5)
        w.finish(self)

    def test_client_gone_with_queued_commands_never_reaches_the_backend(self):
        r = self.redis()
        r.make_dataset(30000)
        p = self.proxy(r, health=self.FAST)
        r.restart_loading()
        p.wait_state("loading")
        conns = [p.raw() for _ in range(10)]
        for c in conns:
            c.send(b"".join(encode("INCR", "gone") for _ in range(50)))
        # Each INCR counts against the queue, those waiting in order behind a client's
        # first one too (test_review32).
        wait_until(lambda: p.backend_status()["queued"] == 500, 5, what="500 queued")
        for c in conns:
            c.close()
        wait_until(lambda: p.backend_status()["queued"] == 0, 5, what="queue freed")
        r.wait_loaded()
        p.wait_state("ready")
        time.sleep(0.3)
        self.assertIsNone(r.client().get("gone"))
        self.assertEqual(r.commandstat_calls("incr"), 0)

    def test_many_clients_connect_and_disconnect(self):
        r = self.redis()
        p = self.proxy(r)
        w = Witness(p.port)
        time.sleep(0.3)
        base = rss_kb(p.pid)
        for rnd in range(5):
            socks = []
            for i in range(200):
                s = socket.create_connection(("127.0.0.1", p.port))
                if i % 2:
                    s.sendall(encode("SET", "c:%d" % i, "x") + encode("GET", "c:%d" % i))
                socks.append(s)
            for s in socks:
                s.close()
        wait_until(lambda: p.status()["clients"] <= 2, 10, what="connections to close")
        time.sleep(2.5)  # idle buffers go back at the next sweeps
        self.assert_rss_returned(rss_kb(p.pid) - base, 20 * 1024, "1000 clients came and went")
        w.finish(self)

    def test_500mb_bulk_string(self):
        r = self.redis(args=["--client-query-buffer-limit", "1gb"])
        p = self.proxy(r)
        w = Witness(p.port)
        time.sleep(0.3)
        base = rss_kb(p.pid)
        size = 500 * 1024 * 1024
        big = RawConn(p.port, timeout=120)
        header = b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$%d\r\n" % size
        big.send(header)
        chunk = b"z" * (4 << 20)
        sent = 0
        while sent < size:
            n = min(len(chunk), size - sent)
            big.send(chunk[:n])
            sent += n
        big.send(b"\r\n")
        self.assertEqual(big.reply(), "OK")
        self.assertEqual(r.client().strlen("big"), size)
        big.close()
        r.client().delete("big")
        time.sleep(2.5)
        self.assert_rss_returned(rss_kb(p.pid) - base, 64 * 1024, "after a 500 MB request")
        w.finish(self)



def others_in_db(ctl, db):
    """The server's clients in database `db`, other than ctl."""
    me = ctl.cmd("CLIENT", "ID")
    return [f for f in clients_of(ctl) if f.get("db") == str(db) and int(f["id"]) != me]


class KilledDedicatedConnection(TestCase):
    """A client's own backend connection (connections = "dedicated") closed by the server
    while idle: respfence opens it again at once with the client's state (its database),
    so that a MONITOR started afterwards sees the client's next command, not a SELECT it
    did not send then (Redis's unit/introspection 'MONITOR can log executed commands',
    run after 'CLIENT KILL SKIPME YES/NO', failed through respfence when the replay went
    out with the next command)."""

    DEDICATED = 'connections = "dedicated"'

    def _kill_db9(self, ctl):
        (conn,) = others_in_db(ctl, 9)
        self.assertEqual(ctl.cmd("CLIENT", "KILL", "ID", conn["id"]), 1)
        return conn["id"]

    def _killed_and_reopened(self):
        """A client in db 9 (k = v9) whose connection the server kills while idle; returns
        (r, c, ctl) once respfence has opened it again in db 9."""
        r = self.redis()
        p = self.proxy(r, extra=self.DEDICATED)
        c = p.raw()
        self.assertEqual(c.cmd("SELECT", "9"), "OK")
        self.assertEqual(c.cmd("SET", "k", "v9"), "OK")
        ctl = r.raw()
        old = self._kill_db9(ctl)
        wait_until(lambda: [f for f in others_in_db(ctl, 9) if f["id"] != old], 5,
                   what="the client's connection opened again, in db 9")
        return r, c, ctl

    def test_state_is_restored_when_the_connection_is_lost_not_with_the_next_command(self):
        r, c, ctl = self._killed_and_reopened()
        mon = r.raw()
        self.assertEqual(mon.cmd("MONITOR"), "OK")
        # Nothing was in flight: the client sees no error, and its database is kept.
        self.assertEqual(c.cmd("GET", "k"), b"v9")
        self.assertEqual(c.cmd("SET", "k2", "x"), "OK")
        logged = [mon.reply(), mon.reply()]
        self.assertIn('"get" "k"', logged[0].lower())
        self.assertIn('"set" "k2" "x"', logged[1].lower())
        self.assertEqual(ctl.cmd("SELECT", "9"), "OK")
        self.assertEqual(ctl.cmd("GET", "k2"), b"x")

    def test_a_connection_killed_again_before_any_command_is_not_reopened(self):
        # The server may close every new connection (maxclients, a kill loop): respfence
        # dials once per connection that answered the client, never in a loop. The next
        # command opens a connection as usual, in the client's database.
        _, c, ctl = self._killed_and_reopened()
        self._kill_db9(ctl)
        time.sleep(0.5)
        self.assertEqual(others_in_db(ctl, 9), [])
        self.assertEqual(c.cmd("GET", "k"), b"v9")

    def test_a_client_in_db_0_without_a_name_is_not_reconnected(self):
        # Nothing to restore: its next command opens a connection, as before.
        r = self.redis()
        p = self.proxy(r, extra=self.DEDICATED)
        c = p.raw()
        self.assertEqual(c.cmd("CLIENT", "SETNAME", "idle-one"), "OK")
        self.assertEqual(c.cmd("CLIENT", "SETNAME", ""), "OK")
        ctl = r.raw()
        me = ctl.cmd("CLIENT", "ID")
        (conn,) = [f for f in clients_of(ctl) if int(f["id"]) != me and f.get("cmd") == "client|setname"]
        ctl.cmd("CLIENT", "KILL", "ID", conn["id"])
        time.sleep(0.5)
        # (The prober's connection, whose last command is INFO, stays.)
        self.assertEqual([f for f in clients_of(ctl)
                          if int(f["id"]) != me and f.get("cmd") != "info"], [])
        self.assertEqual(c.cmd("PING"), "PONG")


if __name__ == "__main__":
    unittest.main()

"""Review of 4147e48 (shared connections: steering away from busy connections, adoption of
an idle shared connection by a pinned link, a client's name leaving with it).

Each test runs the same client code against redis-server directly (the control) and
through respfence with connections = "shared" (threads = 1, so one usual shared
connection per key), and asserts that both agree."""

import time
import unittest

from harness import Error, RawConn, TestCase, encode, wait_until
from test_shared import proxy_clients

SHARED = 'connections = "shared"'


def server_names(server):
    """Names of the server's client connections, without the one asking."""
    return sorted(c["name"] for c in proxy_clients(server) if c.get("name"))


def info_field(info, field):
    d = dict(kv.split("=", 1) for kv in info.decode().strip().split(" ") if "=" in kv)
    return d.get(field)


class Review15(TestCase):
    def targets(self, threads=1):
        r = self.redis()
        yield "direct", r, r.port
        r2 = self.redis()
        p = self.proxy(r2, threads=threads, extra=SHARED)
        yield "proxy", r2, p.port

    # ------------------------------------------------------------------ pause deadline

    def read_behind_paused_write(self, where, port):
        """A write held by the pause, then (at once) another client's read: the read is
        answered at once, as on its own connection to the server."""
        w, r = RawConn(port, timeout=10), RawConn(port, timeout=10)
        self.assertEqual(w.cmd("PING"), "PONG")
        self.assertEqual(r.cmd("PING"), "PONG")
        w.send(encode("SET", "paused-key", "1"))
        time.sleep(0.01)  # well inside the 50 ms stall window
        t0 = time.monotonic()
        self.assertIsNone(r.cmd("GET", "other-key"))
        took = time.monotonic() - t0
        return w, took

    def test_pause_shortened_by_a_second_pause_holds_reads(self):
        # DEFECT. Redis keeps the later of two CLIENT PAUSE deadlines (pauseClients keeps
        # the max end time); the proxy stores the last one sent (runtime::note_pause), so
        # "PAUSE 3000 WRITE" then "PAUSE 1 WRITE" leaves the server paused for 3 s while
        # the proxy thinks the pause is over: a read joins the shared connection behind a
        # paused write and waits for the whole pause.
        for where, server, port in self.targets():
            with self.subTest(where=where):
                admin = RawConn(port)
                self.assertEqual(admin.cmd("CLIENT", "PAUSE", "3000", "WRITE"), "OK")
                self.assertEqual(admin.cmd("CLIENT", "PAUSE", "1", "WRITE"), "OK")
                time.sleep(0.05)
                w, took = self.read_behind_paused_write(where, port)
                self.assertLess(took, 1.0, "%s: a read waited %.2fs behind a paused write" % (where, took))
                self.assertEqual(server.raw().cmd("CLIENT", "UNPAUSE"), "OK")
                self.assertEqual(w.reply(), "OK")

    def test_unpause_in_a_discarded_multi_leaves_the_pause_in_force(self):
        # DEFECT. CLIENT UNPAUSE queued in a MULTI that is then DISCARDed unpauses nothing,
        # but note_shared_effects clears the proxy's pause deadline when it is sent
        # (queued), not when it runs: a read then waits behind a paused write.
        for where, server, port in self.targets():
            with self.subTest(where=where):
                admin = RawConn(port)
                self.assertEqual(admin.cmd("CLIENT", "PAUSE", "3000", "WRITE"), "OK")
                q = RawConn(port)
                self.assertEqual(q.cmd("MULTI"), "OK")
                self.assertEqual(q.cmd("CLIENT", "UNPAUSE"), "QUEUED")
                self.assertEqual(q.cmd("DISCARD"), "OK")
                w, took = self.read_behind_paused_write(where, port)
                self.assertLess(took, 1.0, "%s: a read waited %.2fs behind a paused write" % (where, took))
                self.assertEqual(server.raw().cmd("CLIENT", "UNPAUSE"), "OK")
                self.assertEqual(w.reply(), "OK")

    def test_pause_queued_in_multi_runs_at_exec(self):
        # DEFECT (same cause). A CLIENT PAUSE queued in MULTI takes effect at EXEC; the
        # proxy computes its deadline when it is queued, so an EXEC sent later leaves a
        # pause in force that the proxy thinks is over.
        for where, server, port in self.targets():
            with self.subTest(where=where):
                admin = RawConn(port)
                self.assertEqual(admin.cmd("MULTI"), "OK")
                self.assertEqual(admin.cmd("CLIENT", "PAUSE", "2000", "WRITE"), "QUEUED")
                time.sleep(2.2)  # past the deadline the proxy computed when it was queued
                self.assertEqual(admin.cmd("EXEC"), ["OK"])
                w, took = self.read_behind_paused_write(where, port)
                self.assertLess(took, 0.8, "%s: a read waited %.2fs behind a paused write" % (where, took))
                self.assertEqual(server.raw().cmd("CLIENT", "UNPAUSE"), "OK")
                self.assertEqual(w.reply(), "OK")

    def test_pause_seen_by_the_proxy_a_read_is_not_held(self):
        # PASSES (kept: the intended path; a pause the proxy saw keeps reads off a
        # connection held by a paused write, with no 50 ms window).
        for where, server, port in self.targets():
            with self.subTest(where=where):
                admin = RawConn(port)
                self.assertEqual(admin.cmd("CLIENT", "PAUSE", "3000", "WRITE"), "OK")
                w, took = self.read_behind_paused_write(where, port)
                self.assertLess(took, 1.0, where)
                self.assertEqual(admin.cmd("CLIENT", "UNPAUSE"), "OK")
                self.assertEqual(w.reply(), "OK")

    def test_pause_seen_on_another_worker_and_sweep_of_extras(self):
        # PASSES (kept: threads = 2, the pause noted runtime-wide; the extra connections
        # opened meanwhile are swept once idle for 2 s, and their clients go on).
        for where, server, port in self.targets(threads=2):
            with self.subTest(where=where):
                admin = RawConn(port)
                self.assertEqual(admin.cmd("CLIENT", "PAUSE", "3000", "WRITE"), "OK")
                readers = [RawConn(port, timeout=10) for _ in range(4)]
                writers = [RawConn(port, timeout=10) for _ in range(4)]
                for c in readers + writers:
                    self.assertEqual(c.cmd("PING"), "PONG")
                for i, w in enumerate(writers):
                    w.send(encode("SET", "w%d" % i, "1"))
                time.sleep(0.01)
                t0 = time.monotonic()
                for r in readers:
                    self.assertIsNone(r.cmd("GET", "nothing"))
                self.assertLess(time.monotonic() - t0, 1.0, where)
                self.assertEqual(admin.cmd("CLIENT", "UNPAUSE"), "OK")
                self.assertEqual([w.reply() for w in writers], ["OK"] * 4)
                time.sleep(3.5)  # the extras are idle: swept
                for i, c in enumerate(readers + writers):
                    self.assertEqual(c.cmd("INCR", "after"), i + 1, where)

    # ------------------------------------------------------------------ names

    def test_reset_then_adoption_keeps_no_old_name(self):
        # DEFECT. CLIENT SETNAME in db 1 names the db-1 shared connection (named_by = the
        # session). RESET goes to the db-0 connection (a key change), so the db-1 one keeps
        # the name and named_by still points at the session. SELECT 1 then a pin (CLIENT
        # INFO) adopts that idle connection (upstream::adopt lets a session take one it
        # named) and replays only replay_setname_, which RESET emptied: CLIENT INFO shows
        # name=alpha where redis-server shows no name.
        for where, server, port in self.targets():
            with self.subTest(where=where):
                c = RawConn(port)
                self.assertEqual(c.cmd("SELECT", "1"), "OK")
                self.assertEqual(c.cmd("CLIENT", "SETNAME", "alpha"), "OK")
                self.assertEqual(c.cmd("RESET"), "RESET")
                self.assertIsNone(c.cmd("CLIENT", "GETNAME"))
                self.assertEqual(c.cmd("SELECT", "1"), "OK")
                info = c.cmd("CLIENT", "INFO")
                self.assertEqual((info_field(info, "name"), info_field(info, "db")), ("", "1"),
                                 "%s: %s" % (where, info))

    def test_hello_setname_empty_then_adoption_keeps_no_old_name(self):
        # DEFECT (same cause as the RESET case, no key change needed): HELLO 2 SETNAME ""
        # goes to the shared connection without its SETNAME (the proxy keeps the name),
        # and empties replay_setname_; the connection still bears the name the client gave
        # it with CLIENT SETNAME, and named_by is still the client. A pin (CLIENT INFO)
        # adopts it and replays no name: name=alpha, where redis-server has none.
        for where, server, port in self.targets():
            with self.subTest(where=where):
                c = RawConn(port)
                self.assertEqual(c.cmd("CLIENT", "SETNAME", "alpha"), "OK")
                got = c.cmd("HELLO", "2", "SETNAME", "")
                self.assertNotIsInstance(got, Error, where)
                self.assertIsNone(c.cmd("CLIENT", "GETNAME"), where)
                info = c.cmd("CLIENT", "INFO")
                self.assertEqual(info_field(info, "name"), "", "%s: %s" % (where, info))

    def test_failed_setname_does_not_keep_another_clients_name(self):
        # DEFECT. shared_link::add sets named_by_ for any CLIENT SETNAME sent, even one the
        # server refuses: B's bad name takes the "ownership" of the connection A named, so
        # when A goes the proxy clears nothing and A's name stays on the server for as long
        # as B lives.
        for where, server, port in self.targets():
            with self.subTest(where=where):
                a, b = RawConn(port), RawConn(port)
                self.assertEqual(a.cmd("CLIENT", "SETNAME", "alpha"), "OK")
                got = b.cmd("CLIENT", "SETNAME", "bad name")
                self.assertIsInstance(got, Error)
                a.close()
                self.assertEqual(b.cmd("PING"), "PONG")
                try:
                    wait_until(lambda: "alpha" not in server_names(server), 3,
                               what="%s: no connection named alpha" % where)
                except AssertionError:
                    self.fail("%s: names on the server after alpha's client left: %s"
                              % (where, server_names(server)))

    def test_failed_setname_then_pin_takes_another_clients_name(self):
        # DEFECT (same cause): B's refused CLIENT SETNAME makes B the "namer" of the
        # connection A named; B's pin (CLIENT INFO) may then adopt it (upstream::adopt
        # accepts a connection named_by the pinning session) and B replays no name: B's
        # own connection is named after A.
        for where, server, port in self.targets():
            with self.subTest(where=where):
                a, b = RawConn(port), RawConn(port)
                self.assertEqual(a.cmd("CLIENT", "SETNAME", "alpha"), "OK")
                self.assertIsInstance(b.cmd("CLIENT", "SETNAME", "bad name"), Error)
                info = b.cmd("CLIENT", "INFO")
                self.assertEqual(info_field(info, "name"), "", "%s: %s" % (where, info))
                self.assertEqual(a.cmd("CLIENT", "GETNAME"), b"alpha")

    def test_a_renamed_client_has_one_name(self):
        # Was a DEFECT (fixed). A client's second CLIENT SETNAME goes to another connection when its
        # usual one is stalled (a write held by a pause the proxy did not see): both
        # connections bear one of its names; redis-server knows only the last one.
        for where, server, port in self.targets():
            with self.subTest(where=where):
                a = RawConn(port)
                self.assertEqual(a.cmd("CLIENT", "SETNAME", "first"), "OK")
                ctl = server.raw()
                self.assertEqual(ctl.cmd("CLIENT", "PAUSE", "3000", "WRITE"), "OK")
                w = RawConn(port, timeout=10)
                w.send(encode("SET", "k", "v"))
                time.sleep(0.2)
                self.assertEqual(a.cmd("CLIENT", "SETNAME", "second"), "OK")
                self.assertIn("second", server_names(server))
                self.assertEqual(ctl.cmd("CLIENT", "UNPAUSE"), "OK")
                self.assertEqual(w.reply(), "OK")
                # Fixed: the old connection's name is cleared once the commands ahead of
                # the clearing (the paused SET) are answered; README: Backend connections.
                wait_until(lambda: server_names(server) == ["second"], 5,
                           what="%s: one name" % where)

    def test_pinned_client_adopts_with_its_own_name_only(self):
        # PASSES (kept: adoption of a connection named by the same client, then a
        # different name replayed).
        for where, server, port in self.targets():
            with self.subTest(where=where):
                a, b = RawConn(port), RawConn(port)
                self.assertEqual(a.cmd("CLIENT", "SETNAME", "aname"), "OK")
                self.assertEqual(b.cmd("CLIENT", "SETNAME", "bname"), "OK")
                self.assertEqual(a.cmd("CLIENT", "SETNAME", "aname2"), "OK")
                info = b.cmd("CLIENT", "INFO")
                self.assertEqual(info_field(info, "name"), "bname", where)
                info = a.cmd("CLIENT", "INFO")
                self.assertEqual(info_field(info, "name"), "aname2", where)

    # ------------------------------------------------------------------ adoption state

    def test_adopted_connection_has_the_clients_db_protocol_and_user(self):
        # PASSES (kept: adoption skips the replayed AUTH/HELLO/SELECT; the adopted
        # connection must already be in the client's state).
        for where, server, port in self.targets():
            with self.subTest(where=where):
                ctl = server.raw()
                self.assertEqual(ctl.cmd("ACL", "SETUSER", "u1", "on", ">p1", "~*", "+@all"), "OK")
                c = RawConn(port)
                self.assertEqual(c.cmd("AUTH", "u1", "p1"), "OK")
                c.cmd("HELLO", "3")
                self.assertEqual(c.cmd("SELECT", "2"), "OK")
                self.assertEqual(c.cmd("SET", "k", "v"), "OK")
                self.assertEqual(c.cmd("MULTI"), "OK")
                self.assertEqual(c.cmd("GET", "k"), "QUEUED")
                self.assertEqual(c.cmd("ACL", "WHOAMI"), "QUEUED")
                self.assertEqual(c.cmd("CLIENT", "INFO"), "QUEUED")
                got = c.cmd("EXEC")
                self.assertEqual(got[:2], [b"v", b"u1"], where)
                info = got[2]
                self.assertEqual((info_field(info, "db"), info_field(info, "resp"),
                                  info_field(info, "user")), ("2", "3", "u1"), where)

    def test_pipeline_across_busy_script_keeps_order(self):
        # PASSES (kept: a session with replies due stays on its connection while another
        # client's script makes that connection solo).
        for where, server, port in self.targets():
            with self.subTest(where=where):
                a, b = RawConn(port, timeout=10), RawConn(port, timeout=10)
                self.assertEqual(a.cmd("PING"), "PONG")
                self.assertEqual(b.cmd("PING"), "PONG")
                n = 2000
                pipe = [encode("EVAL", "return redis.call('INCR', KEYS[1])", "1", "ctr")
                        if i % 100 == 0 else encode("INCR", "ctr") for i in range(n)]
                a.send(b"".join(pipe))
                for _ in range(50):
                    b.cmd("GET", "ctr")
                got = [a.reply() for _ in range(n)]
                self.assertEqual(got, list(range(1, n + 1)), where)


if __name__ == "__main__":
    unittest.main()

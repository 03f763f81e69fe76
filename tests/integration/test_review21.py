"""Review 21 (3ada63c): dedicated mode reopens a client's backend connection at once when
the server closes it while idle, replaying the client's state; CLIENT SETNAME '' leaves
nothing to replay."""

import time
import unittest

from harness import TestCase
from test_faults import others_in_db

DEDICATED = 'connections = "dedicated"'


class NameClearedAfterHello(TestCase):
    def test_a_name_given_by_hello_and_cleared_stays_cleared_after_a_reconnect(self):
        # Direct: HELLO 2 SETNAME x, then CLIENT SETNAME "": the connection has no name.
        # Through respfence the replay state keeps HELLO 2 SETNAME x, and since 3ada63c
        # nothing replays the clearing: the new connection is named x again.
        r = self.redis()
        d = r.raw()
        self.assertIsInstance(d.cmd("HELLO", "2", "SETNAME", "x"), list)
        self.assertEqual(d.cmd("CLIENT", "SETNAME", ""), "OK")
        self.assertIsNone(d.cmd("CLIENT", "GETNAME"))
        d.close()

        p = self.proxy(r, extra=DEDICATED)
        c = p.raw()
        self.assertIsInstance(c.cmd("HELLO", "2", "SETNAME", "x"), list)
        self.assertEqual(c.cmd("SELECT", "9"), "OK")  # to find its connection
        self.assertEqual(c.cmd("CLIENT", "SETNAME", ""), "OK")
        self.assertIsNone(c.cmd("CLIENT", "GETNAME"))
        ctl = r.raw()
        (conn,) = others_in_db(ctl, 9)
        self.assertEqual(conn.get("name"), "")
        self.assertEqual(ctl.cmd("CLIENT", "KILL", "ID", conn["id"]), 1)
        time.sleep(0.3)  # reopened at once since 3ada63c; before, by the next command
        self.assertIsNone(c.cmd("CLIENT", "GETNAME"), "the new connection has the name the client cleared")
        names = [f.get("name") for f in others_in_db(ctl, 9)]
        self.assertEqual(names, [""])


class RestartMarksDown(TestCase):
    """A restart: the server closes every connection as it exits, and the eager reconnect
    dials a port nobody listens on yet. That refused connect reports the backend
    unreachable (session_core::on_link_failed(b, false) -> report_unreachable): the
    backend is 'down' until the prober connects again, although the server is back and
    the client sent nothing while it was away. Before 3ada63c the client's next command
    connected (lazily) and was answered; direct, it is answered."""

    # For the held case the prober is slow to come back (loading_interval_ms), to make the
    # wait plain; with the defaults the SET waits 30-50 ms here (1 ms on a4e6082).
    HEALTH = "interval_ms = 60000\nloading_interval_ms = 5000\ntimeout_ms = 2000"

    def _restart(self, policy, health=""):
        r = self.redis()
        p = self.proxy(r, extra=DEDICATED, health=health, policy=policy)
        c = p.raw(timeout=30)
        self.assertEqual(c.cmd("SELECT", "9"), "OK")
        self.assertEqual(c.cmd("SET", "k", "v"), "OK")
        r.stop()
        r.start()
        d = r.raw()  # direct: the server is back and answers at once
        self.assertEqual(d.cmd("PING"), "PONG")
        d.close()
        return r, p, c

    def test_a_command_after_a_restart_is_not_refused_as_loading(self):
        # Default [health]: the first command after the restart is refused (3 runs of 3).
        r, p, c = self._restart('on_loading = "reject"')
        got = c.cmd("SET", "k2", "x")
        self.assertEqual(got, "OK", "answered %r right after the server came back" % (got,))
        self.assertEqual(p.backend_status()["state"], "ready")

    def test_a_command_after_a_restart_is_not_held_for_the_prober(self):
        r, p, c = self._restart("", self.HEALTH)
        t0 = time.monotonic()
        self.assertEqual(c.cmd("SET", "k2", "x"), "OK")
        took = time.monotonic() - t0
        self.assertLess(took, 1.0, "SET right after the restart waited %.1f s" % took)


class AuthAfterHelloAuth(TestCase):
    def test_the_latest_auth_is_the_user_after_a_reconnect(self):
        # Not introduced by 3ada63c (the lazy replay did the same), but now every idle
        # connection the server closes is reopened this way at once: the replay sends
        # AUTH (the latest, u2) and then HELLO ... AUTH u (an older one), so the new
        # connection is user u. Direct, the latest AUTH wins.
        r = self.redis()
        ctl = r.raw()
        for user, pw in (("u", "p"), ("u2", "p2")):
            self.assertEqual(ctl.cmd("ACL", "SETUSER", user, "on", ">" + pw, "~*", "&*", "+@all"), "OK")
        p = self.proxy(r, extra=DEDICATED)
        c = p.raw()
        self.assertIsInstance(c.cmd("HELLO", "2", "AUTH", "u", "p"), list)
        self.assertEqual(c.cmd("AUTH", "u2", "p2"), "OK")
        self.assertEqual(c.cmd("SELECT", "9"), "OK")
        self.assertEqual(c.cmd("ACL", "WHOAMI"), b"u2")
        (conn,) = others_in_db(ctl, 9)
        self.assertEqual(ctl.cmd("CLIENT", "KILL", "ID", conn["id"]), 1)
        time.sleep(0.3)
        self.assertEqual(c.cmd("ACL", "WHOAMI"), b"u2")


class LaterHelloKeepsTheUser(TestCase):
    """Review 21b (5935626): the replayed HELLO was the latest HELLO, whole. A later HELLO
    without AUTH (or a bare HELLO, which only reports) replaced it, so a reconnected
    connection lost the user the first HELLO had authenticated (and a bare HELLO also
    dropped RESP3). Each sequence runs direct first, as the control."""

    def _after_kill(self, first, later):
        r = self.redis()
        ctl = r.raw()
        self.assertEqual(ctl.cmd("ACL", "SETUSER", "u", "on", ">p", "~*", "&*", "+@all"), "OK")
        d = r.raw()
        self.assertIsInstance(d.cmd(*first), (list, dict))
        d.cmd(*later)
        direct = (d.cmd("ACL", "WHOAMI"), "resp=3" in d.cmd("CLIENT", "INFO").decode())
        p = self.proxy(r, extra=DEDICATED)
        c = p.raw()
        self.assertIsInstance(c.cmd(*first), (list, dict))
        c.cmd(*later)
        self.assertEqual(c.cmd("SELECT", "9"), "OK")
        (conn,) = others_in_db(ctl, 9)
        self.assertEqual(ctl.cmd("CLIENT", "KILL", "ID", conn["id"]), 1)
        time.sleep(0.3)
        through = (c.cmd("ACL", "WHOAMI"), "resp=3" in c.cmd("CLIENT", "INFO").decode())
        self.assertEqual(through, direct)
        self.assertEqual(direct[0], b"u")

    def test_a_later_hello_without_auth(self):
        self._after_kill(("HELLO", "3", "AUTH", "u", "p"), ("HELLO", "3"))

    def test_a_bare_hello(self):
        self._after_kill(("HELLO", "3", "AUTH", "u", "p"), ("HELLO",))


if __name__ == "__main__":
    unittest.main()

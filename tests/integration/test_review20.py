"""Review 20 of 31bc48c..a7e5a26 (shared backend connections in the worker's own epoll
set; after_batch; read_now delivering before failing; adopt() handing the descriptor
back to Asio).

Written by a reviewer who could not run anything at the time; run afterwards. "FINDING"
marks a defect: F3 (a hang-up behind more than a batch of ready clients) failed on
a7e5a26 (512 of 700 PINGs answered "may or may not have run") and passes since the idle
connection check in upstream::flush. F1 (a pin adopting the connection being read) did
not reproduce on a7e5a26; its fix (adopt waits while read_now delivers) is in anyway.
"GUARD" marks a path the review found sound, which no other file pins down on purpose
(the timer guard's expectation was corrected: the restarted test server is empty)."""

import socket
import time
import unittest

from harness import RawConn, encode
from test_review16 import stopped
from test_review19 import SharedOne, clients_of



def client_list(ctl):
    """The server's clients other than ctl, as dicts of CLIENT LIST fields."""
    me = ctl.cmd("CLIENT", "ID")
    return [f for f in clients_of(ctl) if int(f["id"]) != me]


class Review20(SharedOne):

    # ------------------------------------------------------------------ F1: adopt inside read_now

    def test_adopted_connection_does_not_carry_another_clients_name(self):
        # FINDING F1 (confident about the code path; pre-existing, not new in this diff):
        # upstream::read_now delivers one read's replies session by session
        # (upstream.cpp:373-385). Client A's pump (its GET answered, so its held SUBSCRIBE
        # may pin now) calls adopt() (client_session.cpp:207 -> upstream.cpp:150), which
        # takes the very connection being read: it is open, idle, not writing, not
        # peer_closed and not named yet. Client B's CLIENT SETNAME reply came in the same
        # read; the loop goes on to B and runs c.core.set_named_by(B) (upstream.cpp:380)
        # on the connection A now owns. A's own server connection carries B's name (adopt
        # skips named connections for exactly this reason; A has no name to replay over
        # it), B's name is on no shared connection, and the reconnected shared connection
        # keeps a stale named_by (never adopted again).
        # Direct redis: A's (subscribed) connection has no name.
        r, p = self.setup_one()
        a = p.raw(timeout=5)
        b = p.raw(timeout=5)
        self.assertEqual(a.cmd("SET", "x", "1"), "OK")  # the one shared connection, open
        self.assertEqual(b.cmd("PING"), "PONG")
        sleeper = r.raw()
        sleeper.send(encode("DEBUG", "SLEEP", "0.6"))
        time.sleep(0.1)
        # Both written (A's first) while the server sleeps: answered in one write, read
        # by one recv.
        a.send(encode("GET", "x") + encode("SUBSCRIBE", "review20ch"))
        time.sleep(0.1)
        b.send(encode("CLIENT", "SETNAME", "review20b"))
        self.assertEqual(sleeper.reply(), "OK")
        self.assertEqual(a.reply(), b"1")
        self.assertEqual(a.reply(), [b"subscribe", b"review20ch", 1])
        self.assertEqual(b.reply(), "OK")
        ctl = r.raw()
        subs = [f for f in client_list(ctl) if f.get("cmd") == "subscribe"]
        self.assertEqual(len(subs), 1, subs)
        self.assertEqual(subs[0].get("name", ""), "",
                         "the subscribed client's own connection carries another client's "
                         "name: %r" % subs[0])
        # B still answers, on a shared connection.
        self.assertEqual(b.cmd("CLIENT", "GETNAME"), b"review20b")
        self.assertEqual(b.cmd("PING"), "PONG")

    # ------------------------------------------------------------------ F3: >256 ready events

    def test_hangup_behind_more_than_a_batch_of_ready_clients(self):
        # FINDING F3 (speculative; timing of the kernel, not of the proxy): the poller
        # takes 256 events per batch and writes the batch's commands at its end
        # (socket_poller.cpp:61-71, upstream::after_batch). A hang-up of the idle shared
        # connection that is already in epoll's ready list, but behind 256+ ready clients,
        # is not seen before the first batch's PINGs are written on it (upstream.cpp:215-223
        # checks only c->open). Those PINGs never ran and are answered "may or may not have
        # run"; a second batch can even get ECONNRESET from sendmsg (write_now -> fail,
        # upstream.cpp:302). Direct, every client would get PONG. Same class as review 19's
        # "next command fails" defect, with the FIN hidden by the batch cap instead of a
        # short read.
        r, p = self.setup_one()
        conns = [RawConn(p.port, timeout=10) for _ in range(700)]
        for c in conns:
            self.assertEqual(c.cmd("PING"), "PONG")
        ctl = r.raw()
        ids = [int(f["id"]) for f in client_list(ctl) if f.get("cmd") == "ping"]
        self.assertEqual(len(ids), 1, ids)
        with stopped(p.pid):
            for c in conns:
                c.send(encode("PING"))
            time.sleep(0.3)  # every client's bytes are queued (and in epoll's ready list)
            self.assertEqual(ctl.cmd("CLIENT", "KILL", "ID", str(ids[0])), 1)
            time.sleep(0.2)  # the FIN is queued on the proxy's socket, behind them
        got = []
        for c in conns:
            try:
                got.append(c.reply())
            except socket.timeout:
                got.append("timed out")
        bad = [g for g in got if g != "PONG"]
        self.assertEqual(len(bad), 0, "%d of %d PINGs not PONG, e.g. %r"
                         % (len(bad), len(got), bad[:3]))
        for c in conns:
            c.close()

    # ------------------------------------------------------------------ guards: outside a batch

    def test_command_released_by_a_timer_is_written_without_more_input(self):
        # GUARD: the backend is down; one GET waits in the proxy's queue; the health check
        # (a timer, outside any poller batch) releases it: upstream::schedule() must post
        # (upstream.cpp:68-69), not wait for a batch that never comes (the client sends
        # nothing more, no other socket is ready).
        r, p = self.setup_one()
        c = p.raw(timeout=20)
        self.assertEqual(c.cmd("SET", "t", "v"), "OK")
        r.stop()
        p.wait_state("down", timeout=10)
        c.send(encode("GET", "t"))
        time.sleep(0.3)
        r.start()
        # Answered once the server is back (nil: the test server saves nothing, so the
        # restarted one is empty, as a direct client would find it).
        self.assertIsNone(c.reply())
        self.assertEqual(c.cmd("SET", "t", "w"), "OK")

    def test_shared_command_after_a_pinned_reply_is_written(self):
        # GUARD: replies of a pinned link come from an Asio handler (outside a batch). A
        # BLPOP (pinned) answered by another client's RPUSH, then a transaction: each time
        # the client unpins, its next command goes shared from outside a batch, and must be
        # written without further input.
        r, p = self.setup_one()
        c = p.raw(timeout=10)
        o = p.raw(timeout=10)
        for rnd in range(20):
            c.send(encode("BLPOP", "q20", "5"))
            time.sleep(0.05)
            self.assertEqual(o.cmd("RPUSH", "q20", "a%d" % rnd), 1)
            self.assertEqual(c.reply(), [b"q20", b"a%d" % rnd])
            c.send(encode("MULTI") + encode("INCR", "n20") + encode("EXEC"))
            self.assertEqual(c.reply(), "OK")
            self.assertEqual(c.reply(), "QUEUED")
            self.assertEqual(c.reply(), [rnd + 1])
            self.assertEqual(c.cmd("GET", "n20"), b"%d" % (rnd + 1))

    def test_pinning_right_after_a_reply_on_the_same_read(self):
        # GUARD for F1's path without a name: a client whose SUBSCRIBE pins in the middle
        # of read_now's delivery loop adopts the connection being read; others whose
        # replies came in that read still get them, in order, and the next shared command
        # goes on a new connection.
        r, p = self.setup_one()
        a = p.raw(timeout=5)
        others = [p.raw(timeout=5) for _ in range(5)]
        self.assertEqual(a.cmd("SET", "x", "1"), "OK")
        for i, o in enumerate(others):
            self.assertEqual(o.cmd("SET", "o%d" % i, "0"), "OK")
        sleeper = r.raw()
        sleeper.send(encode("DEBUG", "SLEEP", "0.6"))
        time.sleep(0.1)
        a.send(encode("GET", "x") + encode("SUBSCRIBE", "review20ch2"))
        time.sleep(0.1)
        for i, o in enumerate(others):
            o.send(encode("INCR", "o%d" % i) + encode("INCR", "o%d" % i))
        self.assertEqual(sleeper.reply(), "OK")
        self.assertEqual(a.reply(), b"1")
        self.assertEqual(a.reply(), [b"subscribe", b"review20ch2", 1])
        for o in others:
            self.assertEqual([o.reply(), o.reply()], [1, 2])
        for i, o in enumerate(others):
            self.assertEqual(o.cmd("GET", "o%d" % i), b"2")
        pub = r.raw()
        self.assertEqual(pub.cmd("PUBLISH", "review20ch2", "m"), 1)
        self.assertEqual(a.reply(), [b"message", b"review20ch2", b"m"])


if __name__ == "__main__":
    unittest.main()

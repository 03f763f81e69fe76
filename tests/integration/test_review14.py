"""Review of issue 14 (shared backend connections, e115b83): cases where a client through
respfence (connections = "shared") sees something other than what it sees on its own
connection to redis-server 7.0.15. Each test runs the same client code directly (the
control) and through the proxy, and compares. Every test here failed on e115b83; one (HELLO's id) now pins down the documented
difference instead."""

import time
import unittest

from harness import Error, Push, RawConn, TestCase, encode

SHARED = 'connections = "shared"'


def run_both(case, fn, redis_args=()):
    """fn(port, server) against a fresh redis-server directly, then through a proxy (one
    worker, so that every unpinned client shares one connection) in front of another."""
    d = case.redis(args=redis_args)
    direct = fn(d.port, d)
    r = case.redis(args=redis_args)
    p = case.proxy(r, threads=1, extra=SHARED)
    proxied = fn(p.port, r)
    return direct, proxied


class StateInsideMulti(TestCase):
    """A MULTI block on a shared link is held by the proxy and sent whole at EXEC over the
    shared connection, but nothing looks at what the block changes on that connection
    (tx.cpp defer_command queues SELECT/AUTH/HELLO/CLIENT ... like any command;
    replies.cpp record_state ignores EXEC's replies)."""

    def test_select_inside_multi_moves_other_clients_to_that_db(self):
        # Redis: A's MULTI/SELECT 1/EXEC changes A's connection only; B's SET lands in
        # db 0. Proxy: the SELECT runs on the shared connection, which stays in db 1, and
        # B's (and everyone's) later commands run in db 1.
        def run(port, server):
            a, b = RawConn(port), RawConn(port)
            b.cmd("PING")
            a.send(encode("MULTI") + encode("SELECT", "1") + encode("EXEC"))
            got = [a.reply() for _ in range(3)]
            got.append(b.cmd("SET", "bkey", "b"))
            ctl = server.raw()
            got.append(ctl.cmd("EXISTS", "bkey"))  # db 0
            return got
        direct, proxied = run_both(self, run)
        self.assertEqual(direct, ["OK", "QUEUED", ["OK"], "OK", 1])
        self.assertEqual(proxied, direct)

    def test_auth_inside_multi_gives_other_clients_that_identity(self):
        # Redis: A authenticates as alice inside MULTI; B, never authenticated, stays
        # the default user. Proxy: the shared connection becomes alice's, so B runs as
        # alice (ACL WHOAMI says alice, and alice's restrictions apply to B).
        def run(port, server):
            ctl = server.raw()
            ctl.cmd("ACL", "SETUSER", "alice", "on", ">apw", "~a:*", "+@all")
            a, b = RawConn(port), RawConn(port)
            b.cmd("PING")
            a.send(encode("MULTI") + encode("AUTH", "alice", "apw") + encode("EXEC"))
            got = [a.reply() for _ in range(3)]
            got.append(b.cmd("ACL", "WHOAMI"))
            got.append(b.cmd("SET", "b:key", "x"))
            return got
        direct, proxied = run_both(self, run)
        self.assertEqual(direct, ["OK", "QUEUED", ["OK"], b"default", "OK"])
        self.assertEqual(proxied, direct)

    def test_hello3_inside_multi_switches_other_clients_to_resp3(self):
        # Redis: B (RESP2) keeps RESP2 replies: HGETALL of a hash is a flat array.
        # Proxy: A's HELLO 3 ran on the shared connection; B gets RESP3 maps.
        def run(port, server):
            server.raw().cmd("HSET", "h", "f", "v")
            a, b = RawConn(port), RawConn(port)
            b.cmd("PING")
            a.send(encode("MULTI") + encode("HELLO", "3") + encode("EXEC"))
            [a.reply() for _ in range(3)]
            return b.cmd("HGETALL", "h")
        direct, proxied = run_both(self, run)
        self.assertEqual(direct, [b"f", b"v"])
        self.assertEqual(proxied, direct)

    def test_client_reply_off_inside_multi_silences_other_clients(self):
        # Redis: CLIENT REPLY OFF inside A's MULTI silences A only; B's PING answers.
        # Proxy: the shared connection stops answering: B (and everyone on that
        # connection) waits for ever.
        def run(port, server):
            a, b = RawConn(port, timeout=3), RawConn(port, timeout=3)
            b.cmd("PING")
            a.send(encode("MULTI") + encode("CLIENT", "REPLY", "OFF") + encode("EXEC"))
            time.sleep(0.3)
            try:
                return b.cmd("PING")
            except OSError as e:  # socket.timeout
                return "no reply: %r" % e
        direct, proxied = run_both(self, run)
        self.assertEqual(direct, "PONG")
        self.assertEqual(proxied, direct)

    def test_client_setname_inside_multi(self):
        # Redis: a name set inside MULTI is the connection's name afterwards.
        # Proxy: the name goes to the shared connection; CLIENT GETNAME, answered by the
        # proxy, says nil (and another client's CLIENT GETNAME inside MULTI reads it).
        def run(port, server):
            a, b = RawConn(port), RawConn(port)
            b.cmd("PING")
            a.send(encode("MULTI") + encode("CLIENT", "SETNAME", "alpha") + encode("EXEC"))
            got = [a.reply() for _ in range(3)]
            got.append(a.cmd("CLIENT", "GETNAME"))
            b.send(encode("MULTI") + encode("CLIENT", "GETNAME") + encode("EXEC"))
            got.append([b.reply() for _ in range(3)])
            return got
        direct, proxied = run_both(self, run)
        self.assertEqual(direct, ["OK", "QUEUED", ["OK"], b"alpha", ["OK", "QUEUED", [None]]])
        self.assertEqual(proxied, direct)

    def test_queue_time_acl_error_inside_multi(self):
        # Redis checks ACLs when it queues a command: inside MULTI a forbidden SET
        # answers -NOPERM at once (and EXEC then answers EXECABORT). Proxy: the held
        # block answers +QUEUED for it; the server's -NOPERM is swallowed.
        def run(port, server):
            server.raw().cmd("ACL", "SETUSER", "ro", "on", ">pw", "~*", "+@all", "-set")
            c = RawConn(port)
            c.cmd("AUTH", "ro", "pw")
            c.send(encode("MULTI") + encode("SET", "k", "v") + encode("GET", "k") +
                   encode("EXEC"))
            got = [c.reply() for _ in range(4)]
            return [g.split(" ")[0] if isinstance(g, Error) else g for g in got]
        direct, proxied = run_both(self, run)
        self.assertEqual(direct, ["OK", "NOPERM", "QUEUED", "EXECABORT"])
        self.assertEqual(proxied, direct)


class PerConnectionCommands(TestCase):
    def test_script_debug_leaks_to_other_clients(self):
        # SCRIPT DEBUG is per connection and not in the pin list (shared.cpp pins()).
        # Redis: A's SCRIPT DEBUG YES affects A's next EVAL only; B's EVAL returns 1.
        # Proxy: it runs on the shared connection, and B's EVAL starts a debugging
        # session (the server forks a debugger that takes over the shared connection).
        def run(port, server):
            a, b = RawConn(port, timeout=3), RawConn(port, timeout=3)
            b.cmd("PING")
            got = [a.cmd("SCRIPT", "DEBUG", "YES")]
            try:
                got.append(b.cmd("EVAL", "return 1", "0"))
            except OSError as e:
                got.append("no reply: %r" % e)
            return got
        direct, proxied = run_both(self, run)
        self.assertEqual(direct, ["OK", 1])
        self.assertEqual(proxied, direct)

    def test_hello_setname_with_invalid_name(self):
        # Redis validates HELLO's SETNAME before anything: "HELLO 3 SETNAME 'a b'" fails
        # and the connection stays RESP2. Proxy (core.cpp send(), shared link): HELLO goes
        # without its SETNAME, succeeds, and the client is switched to RESP3.
        def run(port, server):
            c = RawConn(port)
            got = c.cmd("HELLO", "3", "SETNAME", "a b")
            got = "error" if isinstance(got, Error) else "map"
            server.raw().cmd("HSET", "h", "f", "v")
            return [got, c.cmd("HGETALL", "h")]
        direct, proxied = run_both(self, run)
        self.assertEqual(direct, ["error", [b"f", b"v"]])
        self.assertEqual(proxied, direct)

    def test_client_setname_before_auth(self):
        # Redis with requirepass: CLIENT SETNAME/GETNAME before AUTH answer -NOAUTH.
        # Proxy: answered locally (shared.cpp answer_client_name): +OK and the name.
        def run(port, server):
            c = RawConn(port)
            return [c.cmd("CLIENT", "SETNAME", "x"), c.cmd("CLIENT", "GETNAME")]
        d = self.redis(args=["--requirepass", "pw"])
        direct = run(d.port, d)
        r = self.redis(args=["--requirepass", "pw"])
        p = self.proxy(r, threads=1, extra=SHARED, backend_extra=['password = "pw"'])
        proxied = run(p.port, r)
        self.assertTrue(all(isinstance(x, Error) and x.startswith("NOAUTH") for x in direct),
                        direct)
        self.assertEqual(proxied, direct)

    def test_name_after_hello_setname_survives_a_pin(self):
        # Redis: CLIENT SETNAME a, then HELLO 3 SETNAME b: the name is b (CLIENT INFO).
        # Proxy: when CLIENT INFO pins the client, the state is replayed as AUTH, HELLO
        # (SETNAME b), SELECT, CLIENT SETNAME a (replies.cpp on_link_connected): name=a.
        def run(port, server):
            c = RawConn(port)
            c.cmd("CLIENT", "SETNAME", "a")
            c.cmd("HELLO", "3", "SETNAME", "b")
            info = c.cmd("CLIENT", "INFO").decode()
            return [kv for kv in info.split(" ") if kv.startswith("name=")]
        direct, proxied = run_both(self, run)
        self.assertEqual(direct, ["name=b"])
        self.assertEqual(proxied, direct)

    def test_hello_reports_the_shared_connection_id(self):
        # Redis: HELLO's "id" is the connection's own: two clients see two ids.
        # Proxy: HELLO does not pin (modern clients send it at connect; pinning on it
        # would leave nothing to share), so both see the shared connection's id: a
        # documented difference (README, "Backend connections"). CLIENT ID, which pins,
        # gives each its own, as direct.
        def run(port, server):
            a, b = RawConn(port), RawConn(port)
            same_hello = a.cmd("HELLO", "3")["id"] == b.cmd("HELLO", "3")["id"]
            return same_hello, a.cmd("CLIENT", "ID") != b.cmd("CLIENT", "ID")
        direct, proxied = run_both(self, run)
        self.assertEqual(direct, (False, True))
        self.assertEqual(proxied, (True, True))


class Unpinning(TestCase):
    """maybe_unpin() (shared.cpp) closes a pinned client's own connection after a quiet
    second, though state that is not replayed lived on it."""

    def test_client_id_is_stable(self):
        # Redis: CLIENT ID is the same for the life of the connection. Proxy: the client
        # is unpinned after a quiet second, and the next CLIENT ID pins a new connection.
        def run(port, server):
            c = RawConn(port)
            first = c.cmd("CLIENT", "ID")
            time.sleep(2.5)
            return first == c.cmd("CLIENT", "ID")
        direct, proxied = run_both(self, run)
        self.assertTrue(direct)
        self.assertEqual(proxied, direct)

    def test_client_no_evict_is_kept(self):
        # Redis: CLIENT NO-EVICT ON stays (flags contain "e"). Proxy: the connection
        # that had it is closed by the unpin; the next pin opens one without it.
        def run(port, server):
            c = RawConn(port)
            c.cmd("CLIENT", "NO-EVICT", "ON")
            time.sleep(2.5)
            info = c.cmd("CLIENT", "INFO").decode()
            flags = [kv for kv in info.split(" ") if kv.startswith("flags=")][0]
            return "e" in flags[len("flags="):]
        direct, proxied = run_both(self, run)
        self.assertTrue(direct)
        self.assertEqual(proxied, direct)


class SharedFailures(TestCase):
    def test_reply_count_after_a_failed_connect(self):
        # A client's command waits for the shared connection, whose connect is refused
        # (the server went away): on_link_failed(b, false) clears the link's items but not
        # its `untaken` count (replies.cpp close_link_state), so when the command is sent
        # again the upstream expects one reply too many from this client, and the next
        # client's reply goes to it. Redis (restarted): each client gets its own reply.
        r = self.redis()
        p = self.proxy(r, threads=1, extra=SHARED)
        a = RawConn(p.port, timeout=20)
        self.assertEqual(a.cmd("SET", "k", "a"), "OK")
        r.kill9()
        time.sleep(0.2)
        a.send(encode("GET", "k"))
        time.sleep(0.5)
        r.start()
        r.raw().cmd("SET", "k", "a2")
        got_a = a.reply()
        self.assertIn(got_a, (b"a2", None), got_a)
        if isinstance(got_a, Error):
            return
        b = RawConn(p.port, timeout=5)
        try:
            got_b = b.cmd("ECHO", "for b")
        except OSError as e:
            got_b = "no reply: %r" % e
        extra = a.read_all(0.5)
        self.assertEqual((got_b, extra), (b"for b", b""))

    def test_tracking_redirected_to_the_shared_connection(self):
        # HELLO tells a client its connection id; through the proxy that is the shared
        # connection's (not pinned). Another client's CLIENT TRACKING ... REDIRECT <id>
        # then sends invalidation pushes to the shared connection, and shared_link::on_data
        # takes a push for the reply of whoever is at the front of the FIFO.
        # Redis: B gets the push out of band and then +OK for its SET, then PONG.
        # Proxy: B's SET is answered with the push, +OK goes nowhere: B hangs.
        def run(port, server):
            b, x = RawConn(port, timeout=3), RawConn(port, timeout=3)
            bid = b.cmd("HELLO", "3")["id"]
            self.assertEqual(x.cmd("CLIENT", "TRACKING", "ON", "REDIRECT", str(bid)), "OK")
            x.cmd("GET", "k")
            b.send(encode("SET", "k", "2") + encode("PING"))
            got = []
            try:
                while len(got) < 2:
                    rep = b.reply()
                    if not isinstance(rep, Push):
                        got.append(rep)
            except OSError as e:
                got.append("no reply: %r" % e)
            return got
        direct, proxied = run_both(self, run)
        self.assertEqual(direct, ["OK", "PONG"])
        self.assertEqual(proxied, direct)


class SubscribeInsideMulti(TestCase):
    def test_subscribe_inside_multi_breaks_the_shared_connection(self):
        # Redis 7.0 accepts SUBSCRIBE inside MULTI: A's connection is subscribed after
        # EXEC; B is unaffected. Proxy: the held block runs on the shared connection,
        # which is then in subscribed mode: every other client's command fails with
        # "only (P|S)SUBSCRIBE / ... are allowed in this context".
        def run(port, server):
            a, b = RawConn(port), RawConn(port)
            b.cmd("PING")
            a.send(encode("MULTI") + encode("SUBSCRIBE", "ch") + encode("EXEC"))
            [a.reply() for _ in range(3)]
            return [b.cmd("SET", "k", "v"), b.cmd("GET", "k")]
        direct, proxied = run_both(self, run)
        self.assertEqual(direct, ["OK", b"v"])
        self.assertEqual(proxied, direct)



if __name__ == "__main__":
    unittest.main()

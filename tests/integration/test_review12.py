"""Review of issue 12 ("Never change what a command does"). Each test runs a client
sequence straight to redis-server as a control where one makes sense, then through
respfence, and compares. Every test here FAILS on commit 1e8489d: through the proxy the
command does something redis would not do (commits, lands in another db, hangs)."""

import socket
import threading
import time
import unittest

from harness import Error, RawConn, TestCase, encode, wait_until

KEYS = 30000
LOADING = "LOADING Redis is loading the dataset in memory"
SLOW_PROBER = "interval_ms = 600000\nloading_interval_ms = 50"


def client_list(server):
    c = RawConn(server.port)
    try:
        text = c.cmd("CLIENT", "LIST").decode()
    finally:
        c.close()
    out = []
    for line in text.splitlines():
        out.append(dict(kv.split("=", 1) for kv in line.split(" ") if "=" in kv))
    return out


def kill_link_whose_last_command_was(server, ctl, cmd):
    links = [c for c in client_list(server) if c.get("cmd") == cmd]
    assert len(links) == 1, links
    assert ctl.cmd("CLIENT", "KILL", "ID", links[0]["id"]) == 1


class Watch(TestCase):
    """R2: a lost WATCH never lets EXEC commit; and once it has been paid for, it is
    forgotten as redis forgets a WATCH at EXEC."""

    def test_a_transaction_after_execabort_for_a_lost_link_commits(self):
        r = self.redis()
        p = self.proxy(r)
        ctl = r.raw()
        # Control: redis ends WATCH at EXEC, even when EXEC answers EXECABORT.
        d = r.raw()
        self.assertEqual(d.cmd("WATCH", "k"), "OK")
        self.assertEqual(d.cmd("MULTI"), "OK")
        self.assertIsInstance(d.cmd("SET", "k"), Error)  # arity: the block is dirty
        self.assertTrue(d.cmd("EXEC").startswith("EXECABORT"))
        self.assertEqual(ctl.cmd("SET", "k", "touched"), "OK")
        self.assertEqual(d.cmd("MULTI"), "OK")
        self.assertEqual(d.cmd("SET", "k2", "direct"), "QUEUED")
        self.assertEqual(d.cmd("EXEC"), ["OK"])
        d.close()
        # Through respfence: the link breaks inside MULTI (the proxy answers EXECABORT,
        # its documented visible failure); then a transaction with no WATCH at all.
        c = p.raw()
        self.assertEqual(c.cmd("WATCH", "k"), "OK")
        self.assertEqual(c.cmd("MULTI"), "OK")
        self.assertEqual(c.cmd("SET", "k", "mine"), "QUEUED")
        ctl.cmd("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        time.sleep(0.3)
        ctl = r.raw()
        aborted = c.cmd("EXEC")
        self.assertIsInstance(aborted, Error)
        self.assertTrue(aborted.startswith("EXECABORT"), aborted)
        self.assertEqual(c.cmd("MULTI"), "OK")
        self.assertEqual(c.cmd("SET", "k2", "proxy"), "QUEUED")
        self.assertEqual(c.cmd("EXEC"), ["OK"], "an unwatched transaction did not commit")
        self.assertEqual(ctl.cmd("GET", "k2"), b"proxy")

    def test_a_held_exec_never_commits_after_its_watch_link_broke(self):
        # WATCH k goes to the server; another client then changes k, so direct, this
        # client's EXEC would answer null. A flush (of db 1) is held by the server under
        # CLIENT PAUSE WRITE, so its fence holds this client's MULTI..EXEC in the proxy.
        # The link that holds the WATCH is killed meanwhile. When the fence lifts, the
        # block goes on a new connection, where nothing is watched.
        r = self.redis()
        p = self.proxy(r)
        ctl = r.raw()
        ctl.cmd("SET", "k", "orig")
        c = p.raw(timeout=30)
        self.assertEqual(c.cmd("WATCH", "k"), "OK")
        self.assertEqual(ctl.cmd("SET", "k", "theirs"), "OK")
        ctl.cmd("CLIENT", "PAUSE", "20000", "WRITE")
        flusher = p.raw(timeout=30)
        flusher.send(encode("SELECT", "1") + encode("FLUSHDB"))
        self.assertEqual(flusher.reply(), "OK")
        wait_until(lambda: any(x.get("cmd") == "flushdb" for x in client_list(r)), 5,
                   what="the flush waiting in the server")
        c.send(encode("MULTI") + encode("SET", "k", "mine") + encode("EXEC"))
        self.assertEqual(c.reply(), "OK")
        self.assertEqual(c.reply(), "QUEUED")
        kill_link_whose_last_command_was(r, ctl, "watch")
        time.sleep(0.3)
        ctl.cmd("CLIENT", "UNPAUSE")
        self.assertEqual(flusher.reply(), "OK")
        result = c.reply()
        self.assertTrue(result is None or isinstance(result, Error),
                        "EXEC committed without its WATCH: %r" % (result,))
        self.assertEqual(ctl.cmd("GET", "k"), b"theirs", "a lost update")


class Retries(TestCase):
    """R1: a command is sent again only if nothing after it on its connection ran."""

    def pipeline(self, port):
        c = RawConn(port, timeout=60)
        # CLIENT REPLY SKIP: SELECT 1 runs (loading-safe) and answers nothing.
        c.send(encode("SET", "k", "v") + encode("CLIENT", "REPLY", "SKIP") +
               encode("SELECT", "1") + encode("SET", "k2", "v2"))
        out = [c.reply(), c.reply()]
        c.close()
        return out

    def test_a_loading_retry_never_runs_after_a_reply_less_select(self):
        r = self.redis()
        r.make_dataset(KEYS)
        p = self.proxy(r, health=SLOW_PROBER)
        self.assertEqual(p.raw().cmd("PING"), "PONG")
        r.restart_loading()
        direct = self.pipeline(r.port)
        self.assertEqual(direct, [Error(LOADING), Error(LOADING)])
        through = self.pipeline(p.port)
        r.wait_loaded()
        time.sleep(0.5)
        d = r.raw()
        d.cmd("SELECT", "1")
        in_db1 = d.cmd("GET", "k")
        self.assertEqual(in_db1, None,
                         "SET k v (a db 0 write) ran in db 1; replies %r" % (through,))
        if through[0] == "OK":
            d.cmd("SELECT", "0")
            self.assertEqual(d.cmd("GET", "k"), b"v")
        else:
            self.assertEqual(through[0], Error(LOADING))


    def test_slots_mode_a_retried_command_never_joins_a_later_multi(self):
        # SET a 1 reaches its shard just after a restart (the prober has not seen it):
        # -LOADING. MULTI and SET a 2 pipelined behind it are answered by the proxy (slots
        # mode holds transactions). Once the shard is ready, SET a 1 is decided again
        # while the client is inside MULTI: it is queued into the transaction.
        servers = [self.redis() for _ in range(2)]
        shard = servers[1]  # slot of "a" (15495): the second half
        shard.make_dataset(KEYS)
        p = self.proxy(servers, mode="slots", health=SLOW_PROBER)
        c = p.raw(timeout=60)
        self.assertEqual(c.cmd("PING"), "PONG")
        shard.restart_loading()
        c.send(encode("SET", "a", "1") + encode("MULTI") + encode("SET", "a", "2"))
        first = [c.reply(), c.reply(), c.reply()]
        shard.wait_loaded()
        exec_reply = c.cmd("EXEC")
        value = shard.raw().cmd("GET", "a")
        self.assertIn(first[0], ("OK", Error(LOADING)), first)
        self.assertEqual(first[1:], ["OK", "QUEUED"], first)
        self.assertEqual(exec_reply, ["OK"], "EXEC ran %r for a one-command block" % (exec_reply,))
        self.assertEqual(value, b"2")


class ConcurrentFlushes(TestCase):
    """R3: no command waits for a fence timeout in normal operation."""

    def test_a_pipelined_flush_held_behind_one_fence_does_not_stall_a_later_one(self):
        # U's FLUSHALL is held by the server (CLIENT PAUSE WRITE), so its fence is up.
        # S pipelines SET s1; FLUSHALL; SET s2 (held behind U's fence). T sends FLUSHALL.
        # Direct, once writes resume, all of it is answered at once.
        r = self.redis()
        p = self.proxy(r, policy="queue_timeout_ms = 5000")
        ctl = r.raw()
        ctl.cmd("CLIENT", "PAUSE", "20000", "WRITE")
        u = p.raw(timeout=30)
        u.send(encode("FLUSHALL"))
        wait_until(lambda: any(x.get("cmd") == "flushall" for x in client_list(r)), 5,
                   what="U's flush waiting in the server")
        s = p.raw(timeout=30)
        s.send(encode("SET", "s1", "x") + encode("FLUSHALL") + encode("SET", "s2", "y"))
        time.sleep(0.3)
        t = p.raw(timeout=30)
        t.send(encode("FLUSHALL"))
        time.sleep(0.3)
        ctl.cmd("CLIENT", "UNPAUSE")
        t0 = time.monotonic()
        self.assertEqual(u.reply(), "OK")
        self.assertEqual([s.reply(), s.reply(), s.reply()], ["OK", "OK", "OK"])
        self.assertEqual(t.reply(), "OK")
        took = time.monotonic() - t0
        self.assertLess(took, 1.0, "the flushes waited %.1f s (a fence timeout)" % took)
        self.assertNotIn("fence_drain_timeout", p.log())


class Busy(TestCase):
    """A busy server answers -BUSY at once and accepts FUNCTION KILL; a flush fence must
    not turn a runaway script into a stall of every client."""

    LIB = ("#!lua name=spinlib\n"
           "redis.register_function('spin', function() local i = 0 while true do i = i + 1 end end)")

    def test_a_flush_during_a_busy_script_does_not_hold_function_kill(self):
        # R runs a function that never ends. F sends FLUSHALL; K sends FUNCTION KILL.
        # Direct: FLUSHALL -> -BUSY at once, FUNCTION KILL -> OK at once. Through
        # respfence the FLUSHALL's fence waits for R's FCALL (which only FUNCTION KILL can
        # end), and holds K's FUNCTION KILL behind it until the fence times out.
        r = self.redis()
        ctl = r.raw()
        ctl.cmd("CONFIG", "SET", "busy-reply-threshold", "100")
        self.assertEqual(ctl.cmd("FUNCTION", "LOAD", self.LIB), b"spinlib")
        # Control, direct.
        runner = RawConn(r.port, timeout=30)
        runner.send(encode("FCALL", "spin", "0"))
        time.sleep(0.5)
        f = RawConn(r.port, timeout=5)
        flush_direct = f.cmd("FLUSHALL")
        self.assertTrue(isinstance(flush_direct, Error) and flush_direct.startswith("BUSY"))
        self.assertEqual(RawConn(r.port, timeout=5).cmd("FUNCTION", "KILL"), "OK")
        self.assertIsInstance(runner.reply(), Error)
        # Through respfence.
        p = self.proxy(r, health="interval_ms = 100\nloading_interval_ms = 50")
        runner = p.raw(timeout=30)
        runner.send(encode("FCALL", "spin", "0"))
        time.sleep(0.5)
        f = p.raw(timeout=30)
        f.send(encode("FLUSHALL"))
        time.sleep(0.2)
        k = p.raw(timeout=3)
        t0 = time.monotonic()
        try:
            killed = k.cmd("FUNCTION", "KILL")
        except socket.timeout:
            killed = "no answer in 3 s"
        self.assertEqual(killed, "OK")
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertIsInstance(runner.reply(), Error)
        self.assertIsInstance(f.reply(), (Error, str))


class Backpressure(TestCase):
    """R4/R5: a small client_output_limit never makes a client wait for ever."""

    def test_slots_mode_a_big_reply_before_its_turn_does_not_stop_the_head(self):
        # BLPOP a 1 goes to one shard, GET b (2000 bytes) to the other. GET b's reply
        # arrives first and waits for BLPOP's turn; alone it is over the 1024-byte limit,
        # and the proxy stops reading every backend, BLPOP's too.
        servers = [self.redis() for _ in range(2)]
        p = self.proxy(servers, mode="slots", extra="client_output_limit = 1024")
        big = "v" * 2000
        # Control: one server answers nil after 1 s, then the value.
        d = servers[0].raw()
        d.cmd("SET", "b", big)
        d.send(encode("BLPOP", "a", "1") + encode("GET", "b"))
        self.assertEqual([d.reply(), d.reply()], [None, big.encode()])
        d.cmd("DEL", "b")
        c = p.raw(timeout=5)
        self.assertEqual(c.cmd("SET", "b", big), "OK")
        c.send(encode("BLPOP", "a", "1") + encode("GET", "b"))
        try:
            got = [c.reply(), c.reply()]
        except socket.timeout:
            got = "no reply in 5 s"
        self.assertEqual(got, [None, big.encode()])

    def pipeline_with_a_reader(self, port, n):
        value = b"x" * 20
        one = b"$20\r\n" + value + b"\r\n"
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        got = bytearray()
        want = n * len(one)

        def reader():
            try:
                while len(got) < want:
                    chunk = s.recv(1 << 20)
                    if not chunk:
                        return
                    got.extend(chunk)
            except OSError:
                pass
        th = threading.Thread(target=reader)
        th.start()
        s.sendall(b"".join(encode("GET", k) for k in ("a", "b")) * (n // 2))
        th.join(30)
        s.close()
        return len(got), want

    def test_slots_mode_a_pipeline_read_as_it_comes_never_stops(self):
        # The client reads all the time; GET a and GET b alternate over two shards. With
        # a 64 KB output limit the proxy stops reading both backends after a few hundred
        # KB (replies already passed on still count, in the stash), for ever.
        servers = [self.redis() for _ in range(2)]
        p = self.proxy(servers, mode="slots", extra="client_output_limit = 65536")
        c = p.raw()
        for k in ("a", "b"):
            self.assertEqual(c.cmd("SET", k, "x" * 20), "OK")
        d = servers[0].raw()
        for k in ("a", "b"):
            d.cmd("SET", k, "x" * 20)
        n = 100000
        got, want = self.pipeline_with_a_reader(servers[0].port, n)  # control
        self.assertEqual(got, want)
        got, want = self.pipeline_with_a_reader(p.port, n)
        self.assertEqual(got, want, "the replies stopped after %d of %d bytes" % (got, want))


if __name__ == "__main__":
    unittest.main()

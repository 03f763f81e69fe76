"""Review 32 of c034706: the LOADING queue's bounds (queue_max, queue_max_bytes) with
pipelining clients.

Each test runs the client code straight to a redis-server (the control) where that makes
sense, and through respfence, and expects the same outcome or what the README promises.
Every test here fails against c034706 (/work/review-bin/respfence).
"""

import time
import unittest

from harness import RawConn, TestCase, encode, one_shot

LOADING = "LOADING Redis is loading the dataset in memory"


def loading_proxy(case, keys=60000, policy="", **kw):
    """A redis-server that loads `keys` keys (several seconds at 100 us a key), and
    respfence (one thread) in front of it that has seen it loading."""
    r = case.redis()
    r.make_dataset(keys)
    kw.setdefault("threads", 1)
    p = case.proxy(r, health="loading_interval_ms = 50", policy=policy, **kw)
    r.restart_loading(100)
    p.wait_state("loading")
    return r, p


def read_n(conn, n):
    return [conn.reply() for _ in range(n)]


class QueueBoundsWithPipelines(TestCase):
    """README: `queue_max` is the number of "commands queued per backend over all
    clients; beyond: LOADING error", and `queue_max_bytes` the same in bytes ("Past its
    deadline, or past queue_max/queue_max_bytes, it gets the server's own -LOADING").

    respfence admits only the *first* held command of a client against the bound
    (session_core::hold_for_loading -> env_.queue_admit, proxy/session/holds.cpp): the
    commands the client pipelined behind it wait with hold_reason::order
    (session_core::accept_request, proxy/session/core.cpp) and are never counted: only
    the head is decided again by resume() (release_admission, then queue_admit). So one
    pipelining client holds any number of commands and bytes while the backend's queue
    says it holds one, and other clients with a single command each are turned away with
    LOADING once the bound is reached by heads alone. /status `queued`/`queued_bytes`
    count only the heads too."""

    def test_queue_max_bounds_the_commands_of_one_pipelining_client(self):
        """queue_max = 3. While the server loads, one client writes 10 x INCR n in one
        write. Direct: 10 x -LOADING, n never set. respfence, promised: at most 3
        queued, the rest the server's LOADING text, in order; n is then the number of
        integer replies. Got: /status queued 1, and all 10 INCRs run after the load
        ([1..10], n = 10)."""
        r, p = loading_proxy(self, policy="queue_max = 3")
        d = r.raw()
        d.sock.settimeout(10)
        d.send(encode("INCR", "n") * 10)
        self.assertEqual(read_n(d, 10), [LOADING] * 10)  # control
        d.close()
        c = RawConn(p.port, timeout=60)
        c.send(encode("INCR", "n") * 10)
        time.sleep(0.5)
        queued_now = p.backend_status()["queued"]
        replies = read_n(c, 10)
        c.close()
        ints = [x for x in replies if isinstance(x, int)]
        n = int(one_shot(r.port, "GET", "n") or 0)
        self.assertEqual((replies[:len(ints)], replies[len(ints):], n),
                         (list(range(1, len(ints) + 1)), [LOADING] * (10 - len(ints)), len(ints)))
        self.assertLessEqual(len(ints), 3, "queue_max = 3, yet %d commands were queued "
                             "and ran (/status queued said %d)" % (len(ints), queued_now))

    def test_queue_max_bytes_bounds_the_bytes_of_one_pipelining_client(self):
        """queue_max_bytes = 4096. While the server loads, one client writes 20 x SET
        kI <1000 bytes> (about 1,030 bytes each) in one write. Promised: at most 4096
        bytes queued (3 commands), the rest -LOADING. Got: all 20 SETs (20 KB) held and
        run; /status queued_bytes about one command's size."""
        r, p = loading_proxy(self, policy="queue_max_bytes = 4096")
        reqs = [encode("SET", "k%02d" % i, "x" * 1000) for i in range(20)]
        c = RawConn(p.port, timeout=60)
        c.send(b"".join(reqs))
        time.sleep(0.5)
        queued_bytes = p.backend_status()["queued_bytes"]
        replies = read_n(c, 20)
        c.close()
        oks = [x for x in replies if x == "OK"]
        self.assertEqual(replies, ["OK"] * len(oks) + [LOADING] * (20 - len(oks)))
        self.assertLessEqual(len(oks) * len(reqs[0]), 4096,
                             "queue_max_bytes = 4096, yet %d bytes were queued and ran "
                             "(/status queued_bytes said %d)" % (len(oks) * len(reqs[0]),
                                                                 queued_bytes))

    def test_a_pipelining_client_does_not_crowd_out_single_commands_past_the_bound(self):
        """queue_max = 2. While the server loads: client A writes 10 x INCR a; then
        clients B and C each send one INCR b. Promised: 2 commands queued over all
        clients, beyond: LOADING; so of A's 10 and B's and C's, at most 2 run. Got: A's
        10 all run, and B or C is refused: the bound counts one command per client."""
        r, p = loading_proxy(self, policy="queue_max = 2")
        a = RawConn(p.port, timeout=60)
        a.send(encode("INCR", "a") * 10)
        time.sleep(0.3)
        b = RawConn(p.port, timeout=60)
        b.send(encode("INCR", "b"))
        time.sleep(0.1)
        c = RawConn(p.port, timeout=60)
        c.send(encode("INCR", "b"))
        ra, rb, rc = read_n(a, 10), b.reply(), c.reply()
        for x in (a, b, c):
            x.close()
        ran = sum(isinstance(x, int) for x in ra + [rb, rc])
        self.assertLessEqual(ran, 2, (ra, rb, rc))


if __name__ == "__main__":
    unittest.main()

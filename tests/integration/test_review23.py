"""Review 23 of 7c313b1 (CLIENT REPLY: pub/sub confirmations, refusal in RESP2 subscribed
context, records answered under OFF/SKIP).

Each test runs a byte sequence straight to a redis-server 7.0.15 and through respfence and
expects the same bytes; the wedge tests then expect another client's FLUSHALL to be
answered. Every test here fails against 7c313b1.

Root cause: decide_reply sets sub_pending_ for any RESP2 SUBSCRIBE/PSUBSCRIBE/SSUBSCRIBE,
and only a confirmation (on_subscribe_confirmation) or RESET clears it. A SUBSCRIBE the
server refuses (arity error, -NOPERM for a channel) sends no confirmation: the client is
not subscribed, yet every later CLIENT REPLY is taken as refused (reply_refused) forever.
Direct, CLIENT REPLY OFF is accepted and silent; respfence waits for an answer to it that
never comes, so the session is wedged (nothing after it is heard) and every later flush
fence waits behind it."""

import time
import unittest

from harness import TestCase
from test_review22 import DEDICATED, SHARED, SLOTS, Review22, assert_flush_answered, run

ALL = [("single", SHARED), ("single", DEDICATED), ("slots", SHARED), ("slots", DEDICATED)]
AFTER = [("CLIENT", "REPLY", "OFF"), ("SET", "foo", "1"), ("CLIENT", "REPLY", "ON"),
         ("GET", "foo")]


class RefusedSubscribeLeavesSubPending(Review22):
    def test_subscribe_without_channels_then_off(self):
        """SUBSCRIBE (no channel: arity error, not subscribed), CLIENT REPLY OFF, SET foo 1,
        CLIENT REPLY ON, GET foo, ECHO end. Direct: -ERR wrong number of arguments for
        'subscribe' command, +OK, $1 1, $3 end. respfence: the arity error, then nothing
        at all (the OFF is taken as refused in subscribed context and its answer waited
        for)."""
        self.compare([("SUBSCRIBE",)] + AFTER, ALL)

    def test_psubscribe_without_patterns_then_off(self):
        """As above with PSUBSCRIBE."""
        self.compare([("PSUBSCRIBE",)] + AFTER, ALL)


class SubscribeRefusedByAcl(Review22):
    """A user allowed channel "ok" only: SUBSCRIBE no is answered -NOPERM and the client
    is not subscribed."""

    ACL = ("ACL", "SETUSER", "u", "on", ">p", "~*", "resetchannels", "&ok", "+@all")

    def test_noperm_subscribe_then_off(self):
        """AUTH u p, SUBSCRIBE no (-NOPERM), CLIENT REPLY OFF, SET foo 1, CLIENT REPLY ON,
        GET foo, ECHO end. Direct: +OK, -NOPERM ..., +OK, $1 1, $3 end. respfence: +OK,
        -NOPERM ..., then nothing."""
        self.compare([("AUTH", "u", "p"), ("SUBSCRIBE", "no")] + AFTER,
                     [("single", SHARED), ("single", DEDICATED)])


class RefusedSubscribeWedgesFlushes(TestCase):
    """After SUBSCRIBE (arity error) and CLIENT REPLY OFF, another client's FLUSHALL
    through the proxy must be answered (direct: +OK at once). respfence waits for the OFF's
    answer, which never comes, and the FLUSHALL's fence waits behind it."""

    SEQ = [("SUBSCRIBE",), ("CLIENT", "REPLY", "OFF"), ("SET", "foo", "1")]

    def _check(self, model, mode="single"):
        servers = [self.redis() for _ in range(2 if mode == "slots" else 1)]
        p = self.proxy(servers, mode=mode, extra=model,
                       backend_extra=SLOTS if mode == "slots" else None)
        c = p.raw()
        run(c, self.SEQ, until_end=False, limit=1.0)
        assert_flush_answered(self, p)
        # direct, the session itself goes on: CLIENT REPLY ON answers +OK
        self.assertEqual(run(c, [("CLIENT", "REPLY", "ON")]), b"+OK\r\n$3\r\nend\r\n")

    def test_shared(self):
        self._check(SHARED)

    def test_dedicated(self):
        self._check(DEDICATED)


if __name__ == "__main__":
    unittest.main()


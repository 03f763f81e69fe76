"""Two suite tests send a command on one connection and, without waiting for its reply,
a command on another connection that must come after it:

- unit/pubsub "PUBLISH/SUBSCRIBE after UNSUBSCRIBE without arguments": `unsubscribe $rd1`
  with no channels reads no confirmation at all (consume_subscribe_messages loops over
  the empty channel list), then `r publish chan1 hello` must count 0 receivers;
- unit/type/stream-cgroups "Blocking XREAD: key type changed with SET": `$rd XREAD BLOCK
  0 ...` then at once `r SET mystream val1`; if SET runs first, XREAD gets WRONGTYPE.

Direct, the first command reaches the server one loopback hop ahead of the second and
wins almost always. Through respfence each goes through the proxy (two hops, maybe two
different I/O threads), so the second can overtake the first. Nothing but timing: the
proxy holds neither command back. Prints how often the order is lost, per side; run it
with the machine busy (e.g. beside a suite run) to see the through side lose it."""

import sys

from common import Conn, Err, both

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 300

for name, port in both():
    r = Conn(port)
    lost_pub = 0
    for _ in range(RUNS):
        rd1 = Conn(port)
        rd1.cmd("PING")                  # connected, as redis_deferring_client is
        for ch in ("chan1", "chan2", "chan3"):
            rd1.send("SUBSCRIBE", ch)
            rd1.read()
        rd1.send("UNSUBSCRIBE")          # no read, as in the test
        if r.cmd("PUBLISH", "chan1", "hello") != 0:
            lost_pub += 1
        rd1.close()
    lost_xread = 0
    for _ in range(RUNS):
        r.cmd("DEL", "mystream")
        r.cmd("XADD", "mystream", "666", "f", "v")
        rd = Conn(port, timeout=2.0)
        rd.cmd("PING")
        rd.send("XREAD", "BLOCK", "0", "STREAMS", "mystream", "$")   # no read
        r.cmd("SET", "mystream", "val1")
        r.cmd("DEL", "mystream")
        r.cmd("XADD", "mystream", "667", "f", "v")
        try:
            if isinstance(rd.read(), Err):   # WRONGTYPE: SET ran first
                lost_xread += 1
        except OSError:                      # blocked for good: XADD 667 ran first too
            lost_xread += 1
        rd.close()
    print("%-8s PUBLISH overtook UNSUBSCRIBE %d/%d; SET overtook XREAD BLOCK %d/%d"
          % (name, lost_pub, RUNS, lost_xread, RUNS))

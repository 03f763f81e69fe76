"""unit/scripting "Script return recursive object": a Lua table that contains itself is
returned as a *1 chain nested until Lua's stack limit, ending in
"-ERR reached lua stack limit". proxy/reply_framer.hpp max_depth (512) refuses it:
respfence answers "-ERR respfence: the backend sent a reply that is not RESP" and drops
the backend connection. Prints the depth and the last line each side returns."""

from common import Conn, both

SCRIPT = "local a = {}; local b = {a}; a[1] = b; return a"

for name, port in both():
    c = Conn(port)
    c.send("EVAL", SCRIPT, "0")
    depth = 0
    while True:
        line = c._line()
        if line != b"*1":
            break
        depth += 1
    print("%-8s %d levels of *1, then %r; PING after: %r" % (name, depth, line.decode(), c.cmd("PING")))

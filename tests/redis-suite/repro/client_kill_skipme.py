"""unit/introspection "CLIENT KILL SKIPME YES/NO will kill all clients".

Two differences through respfence:
1. A connection the server kills stays open on the client side: respfence answers the
   commands in flight with "connection to the backend was lost" and opens a new backend
   connection for the next command. Direct, `CLIENT KILL ... SKIPME no` closes the
   caller's own connection, and its next PING fails with an I/O error; through
   respfence it answers PONG.
2. The health prober's own connection is one more client on the server: it is counted in
   INFO connected_clients and is killed by CLIENT KILL SKIPME yes/no (the prober then
   fails its next probe, marks the backend down, and reconnects)."""

import time

from common import Conn, both

for name, port in both():
    r = Conn(port)
    rd1, rd2 = Conn(port), Conn(port)
    rd1.cmd("PING")
    rd2.cmd("PING")
    info = r.cmd("INFO", "clients").decode()
    n = int(info.split("connected_clients:")[1].split("\r\n")[0])
    killed = r.cmd("CLIENT", "KILL", "SKIPME", "yes")
    try:
        after = rd1.cmd("PING")
    except OSError as e:
        after = "I/O error (%s)" % e.__class__.__name__
    killed_self = r.cmd("CLIENT", "KILL", "SKIPME", "no")
    try:
        self_ping = r.cmd("PING")
    except OSError as e:
        self_ping = "I/O error (%s)" % e.__class__.__name__
    print("%-8s connected_clients=%d (3 clients of the test); SKIPME yes killed %s; "
          "killed rd1 then PINGs: %s; SKIPME no killed %s; own PING after: %s"
          % (name, n, killed, after, killed_self, self_ping))
    time.sleep(0.2)

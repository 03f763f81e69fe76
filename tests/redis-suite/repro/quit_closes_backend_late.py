"""unit/tracking "CLIENT TRACKINGINFO provides reasonable results when tracking redir
broken" hangs through respfence.

A client tracks with REDIRECT to another client, which QUITs. Direct, by the time +OK
reaches the quitting client the server has freed it, so the next invalidation finds the
redirection broken and sends "tracking-redir-broken" to the tracking client. respfence
answers QUIT itself (+OK at once) and closes its backend connection afterwards, so a
write that follows at once can still find the redirect client alive on the server: no
push comes, and the test's `r read` waits forever."""

import socket

from common import Conn, both

for name, port in both():
    broken = 0
    runs = 50
    for i in range(runs):
        redir = Conn(port)
        redir_id = redir.cmd("CLIENT", "ID")
        redir.cmd("SUBSCRIBE", "__redis__:invalidate")  # as the test's redirect client is
        r = Conn(port, timeout=1.0)
        r.cmd("HELLO", "3")
        r.cmd("CLIENT", "TRACKING", "on", "REDIRECT", redir_id)
        w = Conn(port)
        w.cmd("SET", "key1", 1)
        r.cmd("GET", "key1")
        assert redir.cmd("QUIT") == "OK"
        w.cmd("SET", "key1", 2)
        try:
            msg = r.read()
            if isinstance(msg, list) and b"tracking-redir-broken" in msg:
                broken += 1
        except socket.timeout:
            pass
        for c in (redir, r, w):
            c.close()
    print("%-8s tracking-redir-broken seen in %d of %d runs" % (name, broken, runs))

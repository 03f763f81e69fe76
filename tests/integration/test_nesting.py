"""Issue 13: replies of any nesting depth the server can produce pass through unchanged.

A script's recursive table comes back from redis-server about 8,000 levels deep, ending
in an error (Redis's own suite: "Script return recursive object"). A reply 10,000
levels deep comes from a minimal RESP server here, since no redis command nests that
far; the proxy's prober talks to it like to any server."""

import socket
import threading
import unittest

from harness import RawConn, TestCase, encode, free_port

DEPTH = 10000


def read_exact(sock, n, buf=b""):
    while len(buf) < n:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        buf += chunk
    return buf


def read_until(sock, marker, buf=b""):
    while marker not in buf:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        buf += chunk
    return buf


class DeepServer:
    """Answers INFO like a ready redis, COMMAND with an empty list, and every other
    command with an array nested DEPTH levels deep."""

    DEEP = b"*1\r\n" * DEPTH + b"+bottom\r\n"

    def __init__(self, case):
        self.port = free_port()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(16)
        self.stop = False
        threading.Thread(target=self.accept, daemon=True).start()
        case.addCleanup(self.close)

    def close(self):
        self.stop = True
        self.sock.close()

    def accept(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        buf = b""
        try:
            while True:
                while b"\r\n" not in buf:
                    chunk = c.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                # One multibulk request: *N, then N bulk strings.
                line, buf = buf.split(b"\r\n", 1)
                args = []
                for _ in range(int(line[1:])):
                    while buf.count(b"\r\n") < 2:
                        buf += c.recv(65536)
                    _, buf = buf.split(b"\r\n", 1)
                    arg, buf = buf.split(b"\r\n", 1)
                    args.append(arg)
                name = args[0].upper()
                if name == b"INFO":
                    text = b"# Server\r\nrun_id:deep\r\n# Persistence\r\nloading:0\r\n"
                    c.sendall(b"$%d\r\n%s\r\n" % (len(text), text))
                elif name == b"COMMAND":
                    c.sendall(b"*0\r\n")
                elif name == b"PING":
                    c.sendall(b"+PONG\r\n")
                else:
                    c.sendall(self.DEEP)
        except OSError:
            return


class Nesting(TestCase):
    def test_a_reply_10000_levels_deep_passes_unchanged(self):
        s = DeepServer(self)
        p = self.proxy([s])
        c = socket.create_connection(("127.0.0.1", p.port), timeout=10)
        c.sendall(encode("GET", "x") + encode("PING"))
        want = DeepServer.DEEP + b"+PONG\r\n"
        self.assertEqual(read_exact(c, len(want)), want)
        c.close()

    def test_a_scripts_recursive_table_passes_as_direct(self):
        script = "local a = {}; local b = {a}; a[1] = b; return a"
        r = self.redis()
        p = self.proxy(r)
        got = {}
        for name, port in (("direct", r.port), ("through", p.port)):
            c = socket.create_connection(("127.0.0.1", port), timeout=10)
            c.sendall(encode("EVAL", script, "0") + encode("PING"))
            got[name] = read_until(c, b"reached lua stack limit\r\n+PONG\r\n")
            c.close()
        self.assertEqual(got["through"], got["direct"])
        self.assertGreater(got["direct"].count(b"*1\r\n"), 5000)
        self.assertEqual(RawConn(p.port).cmd("PING"), "PONG")


if __name__ == "__main__":
    unittest.main()

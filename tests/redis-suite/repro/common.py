"""Shared by the repro scripts: a fresh redis-server, and respfence in front of another
one, on free loopback ports, stopped at exit. Each script prints what it sees direct and
through respfence; neither needs more than python3 and the release build.

    python3 tests/redis-suite/repro/NAME.py [--bin build/release/proxy/respfence]
"""

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BIN = os.path.join(ROOT, "build", "release", "proxy", "respfence")
if "--bin" in sys.argv:
    BIN = sys.argv[sys.argv.index("--bin") + 1]
_procs = []
_dirs = []


def _cleanup():
    for p in _procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
    for d in _dirs:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _wait(pred, what, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.05)
    raise RuntimeError("timed out waiting for " + what)


def redis_server(*extra):
    """A redis-server as scripts/redis-suite starts it; returns its port."""
    d = tempfile.mkdtemp(prefix="repro-redis.")
    _dirs.append(d)
    port = free_port()
    p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                          "--dir", d, "--save", "", "--appendonly", "no",
                          "--enable-debug-command", "yes", "--enable-protected-configs", "yes",
                          "--enable-module-command", "yes", "--logfile", os.path.join(d, "log")]
                         + list(extra), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _procs.append(p)
    _wait(lambda: Conn(port).cmd("PING") == "PONG", "redis-server")
    return port


def respfence(backend_ports, mode="single", threads=2, extra=""):
    """respfence (threads = 2, as scripts/redis-suite runs it) in front of the given
    backends; returns (port, logfile)."""
    d = tempfile.mkdtemp(prefix="repro-proxy.")
    _dirs.append(d)
    port, admin = free_port(), free_port()
    conf = os.path.join(d, "respfence.toml")
    lines = ["[server]", 'listen = "127.0.0.1:%d"' % port, 'admin = "127.0.0.1:%d"' % admin,
             "threads = %d" % threads, 'log_level = "debug"', extra, "", "[routing]",
             'mode = "%s"' % mode, ""]
    for i, b in enumerate(backend_ports):
        lines += ["[[backend]]", 'name = "b%d"' % i, 'address = "127.0.0.1:%d"' % b, ""]
    with open(conf, "w") as f:
        f.write("\n".join(lines))
    log = os.path.join(d, "respfence.log")
    p = subprocess.Popen([BIN, "--config", conf], stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    _procs.append(p)

    def ready():
        with urllib.request.urlopen("http://127.0.0.1:%d/readyz" % admin, timeout=2) as r:
            return r.status == 200
    _wait(ready, "respfence /readyz")
    return port, log


def both():
    """[("direct", port), ("through", port)]: one fresh server direct, one behind respfence."""
    direct = redis_server()
    through, _log = respfence([redis_server()])
    return [("direct", direct), ("through", through)]


def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Conn:
    """A RESP2/RESP3 connection with its own small parser (errors come back as
    Err instances, never raised)."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, *args):
        self.sock.sendall(encode(*args))

    def sendraw(self, data):
        self.sock.sendall(data)

    def cmd(self, *args):
        self.send(*args)
        return self.read()

    def _fill(self):
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("connection closed")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _bytes(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def read(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t in (b"+",):
            return rest.decode()
        if t in (b"-", b"!"):
            return Err(rest.decode() if t == b"-" else self._bytes(int(rest)).decode())
        if t in (b":",):
            return int(rest)
        if t in (b"$", b"="):
            n = int(rest)
            return None if n < 0 else self._bytes(n)
        if t in (b"*", b"~", b">"):
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        if t == b"%":
            return {self._key(self.read()): self.read() for _ in range(int(rest))}
        if t == b"_":
            return None
        if t == b",":
            return float(rest)
        if t == b"#":
            return rest == b"t"
        raise ValueError("unknown reply type %r" % line)

    @staticmethod
    def _key(k):
        return k if not isinstance(k, list) else tuple(k)

    def close(self):
        self.sock.close()


class Err(str):
    pass

"""Integration-test harness: real redis-server processes and a real respfence, on free
loopback ports, started and stopped by pid. Every test registers its cleanups, so a
failing test leaves nothing running.

Environment: RESPFENCE_BIN (the binary under test; defaults to build/release).
"""

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("RESPFENCE_BIN") or os.path.join(ROOT, "build", "release", "proxy", "respfence")
HIREDIS_CLIENT = os.environ.get("RESPFENCE_HIREDIS_CLIENT") or os.path.join(
    os.path.dirname(BIN), "..", "tests", "hiredis_client")

# Sanitizer builds keep freed memory in quarantine: RSS does not go back down there, so
# "memory returns to baseline" is checked on the release build only.
SANITIZED = bool(os.environ.get("RESPFENCE_SANITIZED"))

_ports_lock = threading.Lock()
_ports_given = set()


def _bindable(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _outside_ephemeral():
    """The loopback ports no outgoing connection can take: above the kernel's ephemeral
    range (ip_local_port_range), when it leaves room. A port probed free in the ephemeral
    range can be taken by any process's connect() before the server we start binds it
    (CI saw a cluster node's bus port go that way)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        return None
    if 65535 - hi >= 2000:
        return (hi + 1, 65535)
    if lo - 10000 >= 2000:
        return (10000, lo - 1)
    return None


_POOL = _outside_ephemeral()


def free_port(cluster_bus=False):
    """A loopback port nobody listens on now (and that this process has not handed out),
    outside the ephemeral range when there is room. `cluster_bus` is kept for callers: a
    cluster node now gets its bus port from here too (--cluster-port), not port + 10000."""
    del cluster_bus
    with _ports_lock:
        for _ in range(10000):
            if _POOL:
                port = random.randint(*_POOL)
            else:
                s = socket.socket()
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
                s.close()
            if port in _ports_given or not _bindable(port):
                continue
            _ports_given.add(port)
            return port
        raise AssertionError("no free loopback port")


def wait_until(pred, timeout=10.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - the predicate may fail until ready
            last = e
        time.sleep(interval)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


# ----------------------------------------------------------------------------- RESP

def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        elif isinstance(a, int):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Push(list):
    """A RESP3 push (>) as parsed by RawConn."""


class Error(str):
    """An error reply, as parsed by RawConn."""


class RawConn:
    """A socket that speaks RESP2/RESP3 with its own small parser: tests compare bytes
    and see pushes, which client libraries hide."""

    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        self.sock.sendall(data)

    def cmd(self, *args):
        self.send(encode(*args))
        return self.reply()

    def _fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("closed by peer")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def reply(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return Error(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if t in (b"*", b">", b"~"):
            n = int(rest)
            if n < 0:
                return None
            items = [self.reply() for _ in range(n)]
            return Push(items) if t == b">" else items
        if t == b"%":
            n = int(rest)
            return {self._key(self.reply()): self.reply() for _ in range(n)}
        if t == b"_":
            return None
        if t == b"#":
            return rest == b"t"
        if t == b",":
            return float(rest)
        if t == b"=":
            return self._exact(int(rest))
        if t == b"!":
            return Error(self._exact(int(rest)).decode())
        raise AssertionError("unexpected RESP line %r" % line)

    @staticmethod
    def _key(k):
        return k.decode() if isinstance(k, bytes) else k

    def read_all(self, settle=0.3):
        """Every byte until the peer closes or stays quiet for `settle` seconds."""
        self.sock.settimeout(settle)
        out = self.buf
        self.buf = b""
        try:
            while True:
                c = self.sock.recv(1 << 20)
                if not c:
                    break
                out += c
        except socket.timeout:
            pass
        return out

    def closed_by_peer(self, wait=2.0):
        self.sock.settimeout(wait)
        try:
            return self.sock.recv(1) == b""
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True


# ----------------------------------------------------------------------------- processes

class RedisServer:
    """One redis-server on a free loopback port, in its own directory."""

    def __init__(self, case, port=None, args=()):
        self.case = case
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="rf-redis-")
        self.args = list(args)
        if "--cluster-enabled" in self.args and "--cluster-port" not in self.args:
            # The bus port, chosen like the others (the default, port + 10000, can be in
            # the ephemeral range however the port is chosen).
            self.args += ["--cluster-port", str(free_port())]
        self.proc = None
        case.addCleanup(self.cleanup)

    def start(self, *extra, wait=True):
        cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
               "--dir", self.dir, "--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no",
               "--enable-debug-command", "yes", "--logfile", os.path.join(self.dir, "redis.log"),
               "--daemonize", "no"] + self.args + list(extra)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if wait:
            self.wait_accepting()
        return self

    def wait_accepting(self, timeout=10):
        def up():
            if self.proc.poll() is not None:
                raise AssertionError("redis-server exited: %s" % self.log())
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        wait_until(up, timeout, what="redis-server on %d" % self.port)

    @property
    def pid(self):
        return self.proc.pid

    def client(self, **kw):
        import redis
        kw.setdefault("socket_timeout", 10)
        return redis.Redis(host="127.0.0.1", port=self.port, **kw)

    def raw(self):
        return RawConn(self.port)

    def log(self):
        try:
            with open(os.path.join(self.dir, "redis.log")) as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill9(self):
        self.stop(signal.SIGKILL)

    def make_dataset(self, keys, extra=None):
        """DEBUG POPULATE and SAVE, so that a restart loads `keys` keys from disk."""
        c = self.client()
        c.execute_command("DEBUG", "POPULATE", keys)
        for k, v in (extra or {}).items():
            c.set(k, v)
        c.execute_command("SAVE")
        c.close()

    def restart_loading(self, delay_us=100, wait_loading=True):
        """Restart so that loading the saved dataset takes about keys * (delay + ~100 us)."""
        self.stop()
        self.start("--key-load-delay", str(delay_us),
                   "--loading-process-events-interval-bytes", "1024", wait=True)
        if wait_loading:
            wait_until(self.is_loading, 10, what="redis-server to be loading")

    def is_loading(self):
        r = RawConn(self.port)
        try:
            info = r.cmd("INFO", "persistence")
            return b"loading:1" in info
        finally:
            r.close()

    def wait_loaded(self, timeout=60):
        wait_until(lambda: not self.is_loading(), timeout, interval=0.05, what="loading to end")

    def commandstat_calls(self, name):
        r = RawConn(self.port)
        try:
            info = r.cmd("INFO", "commandstats").decode()
        finally:
            r.close()
        for line in info.splitlines():
            if line.startswith("cmdstat_%s:" % name):
                return int(line.split("calls=")[1].split(",")[0])
        return 0

    def cleanup(self):
        self.stop(signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)


class Proxy:
    """respfence with a generated config, on free ports."""

    def __init__(self, case, backends, mode="single", threads=2, policy="", health="",
                 extra="", backend_extra=None, admin=True):
        self.case = case
        self.port = free_port()
        self.admin_port = free_port() if admin else None
        self.dir = tempfile.mkdtemp(prefix="rf-proxy-")
        self.config = os.path.join(self.dir, "respfence.toml")
        self.logfile = os.path.join(self.dir, "respfence.log")
        self.proc = None
        self.backends = backends
        # Tests run in respfence's default model, shared backend connections;
        # RESPFENCE_CONNECTIONS=dedicated runs them with one backend connection per
        # client. A test may name its own.
        self.connections = os.environ.get("RESPFENCE_CONNECTIONS") or "shared"
        if "connections =" in extra:
            self.connections = "dedicated" if 'connections = "dedicated"' in extra else "shared"
        else:
            extra = 'connections = "%s"\n%s' % (self.connections, extra)
        lines = ["[server]", 'listen = "127.0.0.1:%d"' % self.port,
                 'admin = "%s"' % ("127.0.0.1:%d" % self.admin_port if admin else ""),
                 "threads = %d" % threads, 'log_level = "debug"', extra, "",
                 "[routing]", 'mode = "%s"' % mode, ""]
        for i, b in enumerate(backends):
            lines += ["[[backend]]", 'name = "b%d"' % i, 'address = "127.0.0.1:%d"' % b.port]
            if backend_extra and i < len(backend_extra) and backend_extra[i]:
                lines.append(backend_extra[i])
            lines.append("")
        if "queue_timeout_ms" not in policy:
            # A test's loading window (--key-load-delay sleeps per key) lasts 3 to 10+ s with
            # the machine's load; the 10 s default deadline would cut some short. Tests of
            # deadlines set their own.
            policy = "queue_timeout_ms = 60000\n" + policy
        lines += ["[health]", health, "", "[policy]", policy]
        self.write_config("\n".join(lines) + "\n")
        case.addCleanup(self.cleanup)

    def write_config(self, text):
        with open(self.config, "w") as f:
            f.write(text)

    def start(self, wait_ready=True):
        self.logf = open(self.logfile, "ab")
        self.proc = subprocess.Popen([BIN, "--config", self.config], stdout=self.logf,
                                     stderr=self.logf)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("respfence exited %s: %s" % (self.proc.returncode, self.log()))
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        wait_until(up, 10, what="respfence to listen")
        if wait_ready and self.admin_port:
            wait_until(lambda: all(b["state"] == "ready" for b in self.status()["backends"]),
                       10, what="backends ready")
        return self

    @property
    def pid(self):
        return self.proc.pid

    def client(self, **kw):
        import redis
        kw.setdefault("socket_timeout", 15)
        return redis.Redis(host="127.0.0.1", port=self.port, **kw)

    def raw(self, timeout=10.0):
        return RawConn(self.port, timeout)

    def http(self, path, method="GET"):
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.admin_port, path),
                                     method=method, data=b"" if method == "POST" else None)
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def status(self):
        code, body = self.http("/status")
        assert code == 200, (code, body)
        return json.loads(body)

    def backend_status(self, i=0):
        return self.status()["backends"][i]

    def metrics(self):
        code, body = self.http("/metrics")
        assert code == 200
        out = {}
        for line in body.splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out

    def wait_state(self, state, i=0, timeout=10):
        wait_until(lambda: self.backend_status(i)["state"] == state, timeout,
                   what="backend %d %s" % (i, state))

    def signal(self, sig):
        self.proc.send_signal(sig)

    def log(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def stop(self, timeout=15):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode if self.proc else None
        self.proc = None
        return rc

    def cleanup(self):
        # A clean exit lets LeakSanitizer (ASan builds) report into the log, checked below.
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "logf", None):
            self.logf.close()
        # Sanitizer builds print their findings to the log: a finding fails the test.
        text = self.log()
        keep = os.environ.get("RESPFENCE_KEEP_LOGS")
        if keep:  # a directory: each proxy's log is copied there, for a failure's post-mortem
            os.makedirs(keep, exist_ok=True)
            with open(os.path.join(keep, "%s-%d.log" % (self.case.id(), self.port)), "w") as f:
                f.write(text)
        shutil.rmtree(self.dir, ignore_errors=True)
        for marker in ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer",
                       "WARNING: ThreadSanitizer"):
            if marker in text:
                raise AssertionError("sanitizer finding in respfence's log:\n" + text)


def one_shot(port, *args):
    """One command on a connection of its own (closed after): a direct control."""
    c = RawConn(port)
    try:
        return c.cmd(*args)
    finally:
        c.close()


def info_field(port, section, field):
    """One field of INFO `section` from the server on `port` (None if absent)."""
    for line in one_shot(port, "INFO", section).decode().splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    return None


def redis_cli(port, *args, proto3=False, stdin=None, timeout=20):
    cmd = ["redis-cli", "-h", "127.0.0.1", "-p", str(port)]
    if proto3:
        cmd.append("-3")
    cmd += [str(a) for a in args]
    p = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout)
    return p.stdout.decode(errors="replace")


class TestCase(unittest.TestCase):
    maxDiff = None

    def assert_rss_returned(self, grown_kb, limit_kb, what):
        if SANITIZED:
            return  # see SANITIZED
        self.assertLess(grown_kb, limit_kb, "%s: RSS still %d kB above baseline" % (what, grown_kb))

    def setUp(self):
        # Raw connections are left to the garbage collector on purpose in many tests.
        warnings.simplefilter("ignore", ResourceWarning)

    def redis(self, args=()):
        return RedisServer(self, args=args).start()

    def proxy(self, backends, **kw):
        if not isinstance(backends, (list, tuple)):
            backends = [backends]
        return Proxy(self, list(backends), **kw).start()


class RedisCluster:
    """A real Redis Cluster on loopback: `primaries` nodes made with --cluster-enabled and
    `redis-cli --cluster create`, each in its own directory."""

    def __init__(self, case, primaries=3, replicas=0, args=()):
        self.case = case
        self.nodes = [RedisServer(case, args=["--cluster-enabled", "yes",
                                              "--cluster-config-file", "nodes.conf",
                                              "--cluster-node-timeout", "2000"] + list(args))
                      for _ in range(primaries * (1 + replicas))]
        for n in self.nodes:
            n.start()
        addrs = ["127.0.0.1:%d" % n.port for n in self.nodes]
        out = subprocess.run(["redis-cli", "--cluster", "create"] + addrs +
                             ["--cluster-replicas", str(replicas), "--cluster-yes"],
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise AssertionError("cluster create failed: %s %s" % (out.stdout, out.stderr))
        self.wait_ok()

    def wait_ok(self, timeout=30):
        def ok():
            for n in self.nodes:
                c = RawConn(n.port)
                info = c.cmd("CLUSTER", "INFO").decode()
                c.close()
                if "cluster_state:ok" not in info:
                    return False
            return True
        wait_until(ok, timeout, interval=0.1, what="cluster_state:ok")

    def seeds(self):
        return ['"127.0.0.1:%d"' % self.nodes[0].port]

    def owner_port(self, key):
        """The port of the primary that owns key's slot, asked from the cluster itself."""
        c = RawConn(self.nodes[0].port)
        try:
            slot = c.cmd("CLUSTER", "KEYSLOT", key)
            for entry in c.cmd("CLUSTER", "SLOTS"):
                if entry[0] <= slot <= entry[1]:
                    return entry[2][1]
        finally:
            c.close()
        raise AssertionError("no owner for %s" % key)

    def node_by_port(self, port):
        return next(n for n in self.nodes if n.port == port)

    def node_id(self, node):
        c = RawConn(node.port)
        try:
            return c.cmd("CLUSTER", "MYID").decode()
        finally:
            c.close()

    def primaries(self):
        c = RawConn(self.nodes[0].port)
        try:
            ports = sorted({e[2][1] for e in c.cmd("CLUSTER", "SLOTS")})
        finally:
            c.close()
        return [self.node_by_port(p) for p in ports]


def cluster_proxy(case, cluster, read_from="primary", **kw):
    """respfence in cluster mode in front of `cluster`."""
    p = Proxy(case, [], mode="cluster", **kw)
    with open(p.config) as f:
        text = f.read()
    text = text.replace('mode = "cluster"',
                        'mode = "cluster"\nseeds = [%s]\nrefresh_interval_ms = 500\nread_from = "%s"'
                        % (", ".join(cluster.seeds()), read_from))
    p.write_config(text)
    return p.start()


SHARED = 'connections = "shared"'
DEDICATED = 'connections = "dedicated"'


def in_models(case, backends, run, models=(SHARED, DEDICATED), **kw):
    """run(port) through respfence (one I/O thread, for a deterministic order) in each
    connection model: {model: outcome}."""
    out = {}
    for m in models:
        p = case.proxy(backends, extra=m, threads=1, **kw)
        out[m] = run(p.port)
        p.stop()
    return out

"""Slots mode (3 shards, slots split evenly as redis-cli --cluster create would) against
one redis-server: one probe per class of difference the suite found. Each line: what
the command sequence gives direct, then through respfence in slots mode.

Classes (routing/router.cpp decide(): a keyless command without a rule goes to the
first shard; is_fanout() and merge_rule_for() list the exceptions):
- server settings that reach the first shard only: CONFIG SET, DEBUG SET-ACTIVE-EXPIRE,
  FUNCTION LOAD, SWAPDB, CLIENT PAUSE, ACL SETUSER, CONFIG RESETSTAT, ...;
- server-wide reads answered by one shard or merged as text: INFO (sections concatenated,
  so a client reads the first shard's field), RANDOMKEY (first shard's, never random),
  SLOWLOG, LATENCY, MONITOR;
- keys a command reaches that are not in its key spec: SORT BY/GET patterns, scripts
  reading undeclared keys, DEBUG OBJECT key (DEBUG has no key spec);
- transactions: a DISCARD of a block respfence holds is answered locally and the WATCH
  on the key's shard stays dirty (proxy/session_tx.cpp:178);
- pub/sub: SUBSCRIBE goes to the first shard; keyspace events and tracking invalidations
  of keys on the other shards never arrive."""

import time

from common import Conn, redis_server, respfence


def crc16(data):
    crc = 0
    for ch in data:
        crc ^= ch << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def shard(key, n=3):
    slot = crc16(key.encode()) % 16384
    per = 16384 / n
    return min(int(slot // per), n - 1)


def key_on(n, prefix):
    i = 0
    while shard("%s%d" % (prefix, i)) != n:
        i += 1
    return "%s%d" % (prefix, i)


direct = redis_server()
through, _log = respfence([redis_server() for _ in range(3)], mode="slots")
k2 = key_on(2, "k")  # a key on the last shard
probes = []


def probe(title):
    def deco(f):
        probes.append((title, f))
        return f
    return deco


@probe("CONFIG SET zset-max-listpack-entries 0; ZADD; OBJECT ENCODING")
def _(c):
    c.cmd("FLUSHALL")
    c.cmd("CONFIG", "SET", "zset-max-listpack-entries", "0")
    c.cmd("ZADD", k2, "1", "a")
    enc = c.cmd("OBJECT", "ENCODING", k2)
    c.cmd("CONFIG", "SET", "zset-max-listpack-entries", "128")
    return enc


@probe("BLPOP on another connection; INFO clients blocked_clients (first one)")
def _(c, port):
    c.cmd("FLUSHALL")
    b = Conn(port)
    b.send("BLPOP", k2, "0")
    time.sleep(0.2)
    info = c.cmd("INFO", "clients").decode()
    c.cmd("LPUSH", k2, "x")
    b.read()
    return info.split("blocked_clients:")[1].split("\r\n")[0] + \
        " (INFO has %d blocked_clients fields)" % info.count("blocked_clients:")


@probe("SET foo, SET bar; 50 RANDOMKEY: keys seen")
def _(c):
    c.cmd("SET", "foo", "x")
    c.cmd("SET", "bar", "y")
    return sorted({c.cmd("RANDOMKEY").decode() for _ in range(50)} & {"foo", "bar"})


@probe("FUNCTION LOAD; FCALL with a key on the last shard")
def _(c):
    c.cmd("FLUSHALL")
    c.cmd("FUNCTION", "LOAD", "REPLACE",
          "#!lua name=lib\nredis.register_function('f', function(keys) return redis.call('incr', keys[1]) end)")
    return c.cmd("FCALL", "f", "1", k2)


@probe("SET w_1..3 weights, RPUSH l 1 2 3; SORT l BY w_*")
def _(c):
    for i, w in ((1, 30), (2, 10), (3, 20)):
        c.cmd("SET", "w_%d" % i, w)
    c.cmd("DEL", "l")
    c.cmd("RPUSH", "l", "1", "2", "3")
    return c.cmd("SORT", "l", "BY", "w_*")


@probe("WATCH x; SET x 10; MULTI; DISCARD; MULTI; INCR x; EXEC")
def _(c):
    c.cmd("WATCH", "x")
    c.cmd("SET", "x", "10")
    c.cmd("MULTI")
    c.cmd("DISCARD")
    c.cmd("MULTI")
    c.cmd("INCR", "x")
    return c.cmd("EXEC")


@probe("SET; DEBUG OBJECT key")
def _(c):
    c.cmd("FLUSHALL")
    c.cmd("SET", k2, "v")
    return c.cmd("DEBUG", "OBJECT", k2)[:20]


@probe("DEBUG SET-ACTIVE-EXPIRE 0; PSETEX 100 ms; after 1 s: DBSIZE")
def _(c):
    c.cmd("FLUSHALL")
    c.cmd("DEBUG", "SET-ACTIVE-EXPIRE", "0")
    c.cmd("PSETEX", k2, "100", "a")
    time.sleep(1.0)
    n = c.cmd("DBSIZE")
    c.cmd("DEBUG", "SET-ACTIVE-EXPIRE", "1")
    return n


@probe("SELECT 1; SET key; SWAPDB 0 1; SELECT 0; EXISTS key")
def _(c):
    c.cmd("FLUSHALL")
    c.cmd("SELECT", "1")
    c.cmd("SET", k2, "v")
    c.cmd("SWAPDB", "0", "1")
    c.cmd("SELECT", "0")
    return c.cmd("EXISTS", k2)


@probe("CONFIG SET notify-keyspace-events KEA; SUBSCRIBE __keyevent@0__:set; SET key")
def _(c, port):
    c.cmd("CONFIG", "SET", "notify-keyspace-events", "KEA")
    s = Conn(port, timeout=1.0)
    s.cmd("SUBSCRIBE", "__keyevent@0__:set")
    c.cmd("SET", k2, "v")
    try:
        got = s.read()
    except OSError:
        got = "<nothing in 1 s>"
    c.cmd("CONFIG", "SET", "notify-keyspace-events", "")
    return got


for title, f in probes:
    out = []
    for port in (direct, through):
        c = Conn(port, timeout=5.0)
        try:
            out.append(f(c, port) if f.__code__.co_argcount == 2 else f(c))
        except OSError as e:
            out.append("<%s>" % e.__class__.__name__)
        c.close()
    print("%s\n    direct:  %r\n    through: %r" % (title, out[0], out[1]))

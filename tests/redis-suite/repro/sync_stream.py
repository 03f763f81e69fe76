"""attach_to_replication_stream (tests/test_helper.tcl), used by 40+ tests in string,
list, zset, expire, multi, scripting and maxmemory, and redis-cli --rdb / --replica:
the client sends SYNC, reads "$<len>" and the RDB payload, then the replication stream
(the commands the server propagates). Through respfence the reply framer sees the RDB
bulk without its trailing CRLF and the stream after it: the test hangs (TIMEOUT) and the
rest of the unit is lost. Prints what each side gives back."""

import socket
import time

from common import Conn, both

for name, port in both():
    c = Conn(port, timeout=3.0)
    c.cmd("CONFIG", "SET", "repl-ping-replica-period", "3600")
    c.sendraw(b"SYNC\r\n")
    got = b""
    try:
        while True:
            chunk = c.sock.recv(65536)
            if not chunk:
                got += b"<EOF>"
                break
            got += chunk
            if got.lstrip(b"\n").startswith(b"$") and b"\r\n" in got.lstrip(b"\n"):
                head, rest = got.lstrip(b"\n").split(b"\r\n", 1)
                if len(rest) >= int(head[1:]):
                    break
    except socket.timeout:
        got += b"<3 s, nothing more>"
    w = Conn(port)
    w.cmd("SET", "foo", "bar")
    time.sleep(0.3)
    try:
        stream = c.sock.recv(65536)
    except socket.timeout:
        stream = b"<nothing>"
    print("%-8s SYNC gave %r...; then after SET foo bar: %r" % (name, got[:40], stream[:80]))

"""The health prober's own connection is visible to clients of respfence, in single mode
too: one more client in INFO connected_clients and CLIENT LIST, its INFO every second
(and COMMAND once) in MONITOR output and in INFO commandstats. The suite passed with it,
but by timing only: "MONITOR can log executed commands" and the other MONITOR tests read
the next lines of the MONITOR stream and fail if a probe lands in between (seen in slots
mode, where MONITOR sees only the first shard's traffic), and "CLIENT KILL SKIPME
YES/NO" counts connected_clients (it passes only while the killed prober has not
reconnected yet)."""

import time

from common import Conn, both

for name, port in both():
    c = Conn(port)
    info = c.cmd("INFO", "clients").decode()
    clients = int(info.split("connected_clients:")[1].split("\r\n")[0])
    before = c.cmd("INFO", "commandstats").decode()
    m = Conn(port, timeout=3.0)
    m.cmd("MONITOR")
    t0 = time.monotonic()
    lines = []
    m.sock.settimeout(0.2)
    while time.monotonic() - t0 < 2.5:
        try:
            lines.append(m.read())
        except OSError:
            pass
    after = c.cmd("INFO", "commandstats").decode()

    def calls(text):
        return int(text.split("cmdstat_info:calls=")[1].split(",")[0]) if "cmdstat_info:" in text else 0
    print("%-8s connected_clients=%d with 1 client; MONITOR lines in 2.5 s idle: %d %s; "
          "cmdstat_info calls grew by %d (1 is this script's)" % (
              name, clients, len(lines), [l.split("]", 1)[1].strip()[:30] for l in lines[:2]],
              calls(after) - calls(before)))

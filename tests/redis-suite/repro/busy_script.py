"""unit/multi "EXEC and script timeout" (and the other busy-script tests of multi,
scripting and functions: "Timedout script does not cause a false dead client", ...)
hang through respfence when a health probe falls inside the busy script.

redis-server answers -BUSY to INFO while a script runs past lua-time-limit. The prober
(proxy/prober.cpp probe(): an error reply to "INFO server persistence commandstats
cluster" is taken for a pre-7 server, split_info_ = true, then plain INFO fails too)
reports probe_failed, and the backend goes `down` (policy/backend_state.cpp
on_probe_failed). Commands for a down backend are queued, SCRIPT KILL and FUNCTION KILL
included (they are allow_busy, not loading-safe), so nothing can end the script.

They do not even time out: queue_timeout_ms (10 s) never comes. While the script runs,
each probe moves the backend down -> connecting (connected) -> down (INFO: BUSY), ten
times a second; each change calls resume(), which decides every held command again
(proxy/session_core.cpp:385), and hold_for_loading() gives it a fresh deadline
(session_core.cpp:343, e.deadline = now + timeout). Checked: a held PING had no answer
after 60 s, with 565 probe_failed transitions in the log. Any backend that flaps like
this (a prober that connects but cannot probe) holds commands forever.

Prints, per side, what PING and SCRIPT KILL answer once a probe has seen the busy
script, and how long they took."""

import time

from common import Conn, both

for name, port in both():
    r = Conn(port, timeout=15.0)
    r.cmd("CONFIG", "SET", "lua-time-limit", "10")
    rd = Conn(port, timeout=15.0)
    rd.send("EVAL", "while true do end", "0")
    time.sleep(2.5)  # the prober runs INFO every second
    t0 = time.monotonic()
    try:
        ping = r.cmd("PING")
    except OSError:
        ping = "<no answer>"
    t1 = time.monotonic()
    k = Conn(port, timeout=15.0)
    try:
        kill = k.cmd("SCRIPT", "KILL")
    except OSError:
        kill = "<no answer>"
    t2 = time.monotonic()
    try:
        script = rd.read()
    except OSError:
        script = "<no answer>"
    print("%-8s PING -> %r after %.1f s; SCRIPT KILL -> %r after %.1f s; the script's client "
          "got %r" % (name, ping, t1 - t0, kill, t2 - t1, script))

"""How psycopg waits on its socket in a service (eventlet green threads).

``PSYCOPG_WAIT_FUNC=wait_select`` (set by ``shared``) keeps the other green
threads running while one waits on PostgreSQL, but it goes through eventlet's
hub for every wait, even when the socket is ready at once: in pipeline mode
(the inbox's batches, the command recorder) that is every statement, and it
made a pipelined UPDATE cost ~200 µs of CPU instead of ~50 µs.

``wait_green`` first asks the socket without waiting (``poll(2)`` with a zero
timeout, in C: eventlet does not patch it) and goes through the hub only when
the socket is not ready: what psycopg's own asyncio wait does for writes, here
for reads too (a pipeline's results are often already in). A green thread that
never has to wait yields to the hub at least every few milliseconds, so a long
pipeline cannot starve the others.
"""
from __future__ import annotations

import time

import eventlet
import psycopg
from psycopg import errors, waiting

# The no-wait readiness check in C (psycopg's binary build); poll() otherwise
# taken from the original, unpatched select module.
_ready_now = getattr(waiting, "_ready_c", None)
if _ready_now is None:  # pragma: no cover - the binary build is a requirement
    _select = eventlet.patcher.original("select")

    def _ready_now(fileno, s):
        p = _select.poll()
        p.register(fileno, (_select.POLLIN if s & waiting.WAIT_R else 0)
                   | (_select.POLLOUT if s & waiting.WAIT_W else 0))
        ready = waiting.READY_NONE
        for _, ev in p.poll(0):
            if ev & _select.POLLIN:
                ready |= waiting.READY_R
            if ev & _select.POLLOUT:
                ready |= waiting.READY_W
        return ready

MAX_BUSY = 0.005  # seconds a green thread may go without yielding to the hub


def wait_green(gen, fileno: int, interval: float = 0.0, timeout: float | None = None):
    """psycopg's ``WaitFunc``: consume ``gen``, answering its waits."""
    if interval is None:
        raise ValueError("indefinite wait not supported anymore")
    deadline = time.monotonic() + timeout if timeout is not None else None
    yielded = time.monotonic()
    try:
        s = next(gen)
        while True:
            ready = _ready_now(fileno, s)
            if ready:
                now = time.monotonic()
                if now - yielded >= MAX_BUSY:
                    eventlet.sleep(0)  # let the other green threads run
                    yielded = now
            else:
                # Not ready: the green wait (the hub runs the others meanwhile).
                t = interval if deadline is None else waiting._wait_time(interval, deadline)
                ready = _green_wait(fileno, s, t)
                yielded = time.monotonic()
            s = gen.send(ready)
            if deadline is not None and time.monotonic() >= deadline:
                raise errors._WaitTimeout("wait timeout expired")
    except OSError as ex:
        raise errors.OperationalError("connection socket closed") from ex
    except StopIteration as ex:
        return ex.value


def _green_wait(fileno: int, s, t: float) -> int:
    import select  # eventlet's green select once patched
    fnlist, empty = (fileno,), ()
    rl, wl, xl = select.select(fnlist if s & waiting.WAIT_R else empty,
                               fnlist if s & waiting.WAIT_W else empty, fnlist, t)
    if xl:
        waiting._check_fd_closed(fileno)
        raise errors.OperationalError("connection socket closed")
    return (waiting.READY_R if rl else waiting.READY_NONE) | \
        (waiting.READY_W if wl else waiting.READY_NONE)


def install() -> None:
    """Make psycopg wait with ``wait_green`` (``connection.wait`` looks the
    function up on ``psycopg.waiting`` at each call)."""
    if psycopg.waiting.wait is waiting.wait_select:
        psycopg.waiting.wait = wait_green

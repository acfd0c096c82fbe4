"""Guards shared by the tests of code that must not block."""
from __future__ import annotations

import signal
import time
from contextlib import contextmanager


@contextmanager
def no_hang(seconds: int = 60):
    """Turn a call that would block forever (reading a named pipe, a server that never finishes)
    into a failure: SIGALRM interrupts the blocking system call and raises. A guard against
    hanging the test run, not a time limit on the code under test (main thread, POSIX).

    pytest-timeout's per-test limit runs on the same timer (SIGALRM): it is put back afterwards
    with the time it had left, so the rest of the test keeps its limit."""
    def stop(signum, frame):
        raise TimeoutError(f"still blocked after {seconds} s")

    old = signal.signal(signal.SIGALRM, stop)
    outer_left, _ = signal.getitimer(signal.ITIMER_REAL)  # 0.0 when no outer limit is set
    started = time.monotonic()
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        if outer_left > 0:
            signal.setitimer(signal.ITIMER_REAL, max(outer_left - (time.monotonic() - started), 0.01))

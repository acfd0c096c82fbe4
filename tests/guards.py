"""Guards shared by the tests of code that must not block."""
from __future__ import annotations

import signal
from contextlib import contextmanager


@contextmanager
def no_hang(seconds: int = 60):
    """Turn a call that would block forever (reading a named pipe, a server that never finishes)
    into a failure: SIGALRM interrupts the blocking system call and raises. A guard against
    hanging the test run, not a time limit on the code under test (main thread, POSIX)."""
    def stop(signum, frame):
        raise TimeoutError(f"still blocked after {seconds} s")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)

"""Stopping a training run by hand: the first Ctrl-C (SIGINT) or SIGTERM (``kill``, ``timeout``, a job scheduler)
asks the loop to stop after the step in progress and save (so that a run stopped before its next checkpoint can
still be resumed, and its latest model kept); a second one stops at once.

The loop polls :attr:`StopRequest.asked` between steps, where its state is whole: a KeyboardInterrupt raised inside
a step would leave the discriminator updated and the generator not, which no checkpoint may hold.
"""
from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from types import TracebackType
from typing import Iterator, Optional

#: The signals a run stops on, with the handler each must have for this module to take it over: Python's own
#: (a process started with SIGINT ignored, as a script's background job is, keeps ignoring it; SIGTERM then works).
SIGNALS = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}


class StopRequest:
    """Context manager that turns the first SIGINT or SIGTERM into ``asked = True`` (with one line on stderr) and
    restores the previous handlers, so that the next signal stops the process as usual. Outside the main thread, for
    a signal whose handler is not the default one, or with ``enabled`` False (DDP ranks, which torchrun stops
    together), it changes nothing."""

    def __init__(self, what: str, enabled: bool = True):
        self.what, self.enabled, self.asked = what, enabled, False
        self._previous: dict[int, object] = {}

    def _ask(self, signum, frame) -> None:
        self.asked = True
        self._restore()
        name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
        print(f"\n{name}: {self.what} after this step (again to stop at once)", file=sys.stderr, flush=True)

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def __enter__(self) -> "StopRequest":
        if self.enabled and threading.current_thread() is threading.main_thread():
            for signum, default in SIGNALS.items():
                if signal.getsignal(signum) is default:
                    self._previous[signum] = signal.signal(signum, self._ask)
        return self

    def __exit__(self, kind: Optional[type], value: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        self._restore()


def ignore_interrupts_in_worker(_worker_id: int) -> None:
    """``worker_init_fn`` of data-loading workers: a terminal's Ctrl-C reaches the whole process group, as does the
    SIGTERM of ``pkill -f``, ``kill -- -PGID`` or a job scheduler, and a worker it killed would stop the main
    process's next batch with a traceback before the models are saved (a CPU run lost its last 10 minutes so); the
    main process stops them (and they leave by themselves when it is gone)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class Terminated(KeyboardInterrupt):
    """SIGTERM turned into an interrupt (:func:`terminate_as_interrupt`): handled as Ctrl-C, told apart by the exit
    status (143, the shell's for SIGTERM, against 130)."""


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Inside it, SIGTERM (``kill``, ``timeout``, a job scheduler) raises :class:`Terminated`, a KeyboardInterrupt, so that
    a loop that saves its partial results on Ctrl-C (the benchmark) saves them on SIGTERM too; outside the main
    thread, or when SIGTERM has a handler of its own, it changes nothing."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def interrupt(signum, frame) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

"""Ctrl-C during training: the first one asks the loop to stop after the step in progress and save (so that a run
interrupted before its next checkpoint can still be resumed, and its latest model kept); a second one stops at once.

The loop polls :attr:`StopRequest.asked` between steps, where its state is whole: a KeyboardInterrupt raised inside
a step would leave the discriminator updated and the generator not, which no checkpoint may hold.
"""
from __future__ import annotations

import signal
import sys
import threading
from types import TracebackType
from typing import Optional


class StopRequest:
    """Context manager that turns the first SIGINT into ``asked = True`` (with one line on stderr) and restores the
    previous handler, so that the next SIGINT interrupts as usual. Outside the main thread, over any handler but
    Python's default one, or with ``enabled`` False (DDP ranks, which torchrun stops together), it changes nothing."""

    def __init__(self, what: str, enabled: bool = True):
        self.what, self.enabled, self.asked = what, enabled, False
        self._previous = None

    def _ask(self, signum, frame) -> None:
        self.asked = True
        signal.signal(signal.SIGINT, self._previous)
        print(f"\ninterrupted: {self.what} after this step (Ctrl-C again to stop at once)", file=sys.stderr, flush=True)

    def __enter__(self) -> "StopRequest":
        # only over Python's own Ctrl-C handler: a process started to ignore SIGINT (nohup, &) keeps ignoring it,
        # and a handler installed from C (None) could not be put back
        if self.enabled and threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._ask)
        return self

    def __exit__(self, kind: Optional[type], value: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        if self._previous is not None and not self.asked:
            signal.signal(signal.SIGINT, self._previous)
        self._previous = None

"""Interrupts: SIGTERM stops a command like Ctrl-C (a KeyboardInterrupt, so every ``finally`` and atomic
writer cleans up), and no interrupt is lost inside a finaliser."""

from __future__ import annotations

import signal
import sys

__all__ = ["install_interrupt_handlers"]


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _redeliver_swallowed_interrupt(unraisable: object) -> None:
    """A KeyboardInterrupt raised while a finaliser (``__del__``, a weakref callback) runs is printed
    and dropped by Python, and the command would go on to the end. Deliver it again 10 ms later,
    from a timer, so it lands outside the finaliser; print every other unraisable as Python does."""
    if isinstance(getattr(unraisable, "exc_value", None), KeyboardInterrupt):
        signal.setitimer(signal.ITIMER_REAL, 0.01)
        return
    sys.__unraisablehook__(unraisable)  # type: ignore[arg-type]


def install_interrupt_handlers() -> None:
    """SIGTERM cleans up like Ctrl-C, and no interrupt is lost in a finaliser."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGALRM, _raise_interrupt)
    sys.unraisablehook = _redeliver_swallowed_interrupt

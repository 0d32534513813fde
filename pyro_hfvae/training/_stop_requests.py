# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Stopping a training run cleanly on SIGINT (Ctrl-C) or SIGTERM (private: used by
:meth:`~pyro_hfvae.training.trainer.Trainer.train`).
"""
import logging
import signal
import threading
from typing import Any

logger = logging.getLogger(__name__)


class _StopRequests:
    """
    Turns SIGINT and SIGTERM into a request to stop after the current step; a second one stops at once.

    Signal handlers can only be set from the main thread: elsewhere the block changes nothing.

    Example::

        >>> with _StopRequests() as stop:
        ...     pass  # a training loop checks stop.received after every step
        >>> stop.received is None
        True
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum
        logger.warning("received %s: stopping after this step (send it again to stop at once)",
                       signal.Signals(signum).name)

    def __enter__(self) -> "_StopRequests":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

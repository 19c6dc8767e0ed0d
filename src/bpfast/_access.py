"""Who may use a Network at a given moment: many predicting threads, or one training thread.

Training and assigning parameters are exclusive: such a call made while another thread
trains or predicts with the same Network raises RuntimeError, never a torn result. The
thread that trains may re-enter (a fit callback may predict or assign). Predicting counts
itself as a reader, so that many threads may predict at once.
"""
import threading
from contextlib import contextmanager


class Access:
    """The locks of one Network: ``exclusive()`` for training, ``shared()`` for predicting."""

    __slots__ = ("lock", "gate", "readers")

    def __init__(self):
        self.lock = threading.RLock()       # held by the training thread (re-entrant)
        self.gate = threading.Lock()        # guards `readers`
        self.readers = 0

    @contextmanager
    def exclusive(self):
        """Training or assigning: no other thread may train or predict meanwhile."""
        self.acquire()
        try:
            yield
        finally:
            self.lock.release()

    def acquire(self):
        """Take the training lock, or raise RuntimeError if another thread uses the
        Network (the caller releases ``lock``)."""
        if not self.lock.acquire(blocking=False):
            raise busy()
        if self.readers:
            self.lock.release()
            raise busy()

    @contextmanager
    def shared(self):
        """Predicting: many threads at once, none while another thread trains."""
        self.start_reading()
        try:
            yield
        finally:
            self.stop_reading()

    # predict() calls these two directly: a generator-based context manager costs more
    # than a one-row forward.
    def start_reading(self):
        """Count one more reader; RuntimeError while another thread trains."""
        with self.gate:
            if not self.lock.acquire(False):
                raise busy()
            self.readers += 1
            self.lock.release()

    def stop_reading(self):
        with self.gate:
            self.readers -= 1


def busy():
    return RuntimeError("this Network is in use by another thread; use one Network per thread "
                        "(or a lock of your own)")

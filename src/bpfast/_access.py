"""Who may use a Network at a given moment: many predicting threads, or one training thread.

Training and assigning parameters are exclusive: such a call made while another thread
trains or predicts with the same Network raises RuntimeError, never a torn result. The
thread that trains may re-enter (a fit callback may predict or assign). Predicting counts
itself as a reader, so that many threads may predict at once.

``version`` changes whenever the parameters may have changed: when the training thread
leaves the training lock, and when a live array of them is handed out (``changed()``);
``writing`` says that the training thread holds the lock, writing them meanwhile.
``Network.predict`` keeps its packed copy of the weights only while it stays the same.
"""
import itertools
import threading
from contextlib import contextmanager

# Versions are drawn from one counter, so that none is ever given twice: a version a
# packed copy was made at cannot come back after the parameters change.
_versions = itertools.count(1)


class Access:
    """The locks of one Network: ``exclusive()`` for training, ``shared()`` for predicting."""

    __slots__ = ("lock", "gate", "readers", "version", "writing", "packing")

    def __init__(self):
        self.lock = threading.RLock()       # held by the training thread (re-entrant)
        self.gate = threading.Lock()        # guards `readers`
        self.readers = 0
        self.version = next(_versions)
        self.writing = 0                    # depth of the training thread's holds
        self.packing = threading.Lock()     # one predicting thread packs the weights

    def changed(self):
        """The parameters may change (or have changed): a new version."""
        self.version = next(_versions)

    @contextmanager
    def exclusive(self):
        """Training or assigning: no other thread may train or predict meanwhile."""
        self.acquire()
        try:
            yield
        finally:
            self.release()

    def acquire(self):
        """Take the training lock, or raise RuntimeError if another thread uses the
        Network (the caller calls ``release``)."""
        if not self.lock.acquire(blocking=False):
            raise busy()
        if self.readers:
            self.lock.release()
            raise busy()
        self.writing += 1

    def release(self):
        """Leave the training lock; what was done under it is a new version."""
        self.changed()
        self.writing -= 1
        self.lock.release()

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

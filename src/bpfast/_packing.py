"""predict's packed copy of the weights: when it is made, and when it may be read.

The kernel copies a wide layer's weights into column panels on every product
(``_smallgemm.h``); a copy kept between predictions saves that, at the memory of those
weights once more. The weights are live arrays a user may write in place at any time,
so the copy is read only while nothing can have written them since it was made:

- every call that may write them (training, assignment, ``set_parameters``) takes the
  training lock, and every live array handed out (``weights[i]``, ``biases[i]``) may be
  written later: each changes the access version (``_access.py``);
- while the training thread holds that lock (a ``fit`` callback predicting), it writes
  them between predictions without changing the version: nothing packed is read;
- an array a user still holds may be written at any moment, with no call at all: while
  any exists (more references to the parameters than the Network's own), nothing is
  packed. Every view of them, a view of a view too, holds their memory's owner.

The copy is made when two predictions in a row find the same version (a prediction
after each training step would pack in vain), and freed by the first prediction that
finds it stale. The packed product has the bits of the unpacked one, so either way
predict returns the same numbers.
"""
import sys


class PackedWeights:
    """The state of one Network's packed copy (its Engine holds the copy itself)."""

    def __init__(self, engine, access, params, packable):
        self._engine, self._access, self._params = engine, access, params
        self._packable = packable       # a layer wide enough to pack, on the compiled engine
        self.version = None             # the version packed, or None
        self._seen = None               # the version the last prediction found
        self.elements = 0               # elements packed
        self._own = None                # the Network's own references (settle())

    def settle(self):
        """Count the Network's own references to the parameters: call once it is built,
        with nothing else holding them (not even an argument of this call)."""
        self._own = self._references()

    def ready(self, rows):
        """Whether a prediction of `rows` rows may read the packed copy, packing it
        first if due (the caller holds the shared lock)."""
        if not self._packable:
            return False
        access = self._access
        version = access.version
        if access.writing:
            return False
        if self.version == version:
            return True
        if self._seen != version:
            self._seen = version
            if self.version is not None:    # stale: its memory back while weights change
                with access.packing:
                    self._engine.drop_packs()
                    self.version = None
            return False
        if self._references() != self._own:
            return False
        self.pack(version)
        return True

    def pack(self, version=None):
        """Pack now, for predictions at `version` (the current one by default); the
        number of elements packed."""
        if not self._packable:
            return 0
        with self._access.packing:      # one predicting thread packs
            version = self._access.version if version is None else version
            if self.version != version:
                self.elements = self._engine.pack_weights()
                self.version = version
        return self.elements

    def current(self):
        """Whether the packed copy is the parameters' current version."""
        return self.version == self._access.version

    def _references(self):
        params = self._params
        return sys.getrefcount(params), sys.getrefcount(params.base)

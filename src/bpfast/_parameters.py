"""The live weight and bias arrays of a Network, as a list that checks what is assigned."""
from collections.abc import Sequence

import numpy as np

from bpfast._validation import as_parameters


class ParameterList(Sequence):
    """The live weight (or bias) arrays of a Network.

    Indexing gives the live array; assigning ``params[i] = value`` copies value
    into it after checking the shape. The list itself cannot grow or shrink.
    """

    def __init__(self, arrays, name, exclusive=None, changed=None):
        self._arrays = tuple(arrays)
        self._name = name
        self._exclusive = exclusive     # the Network's: refused while another thread uses it
        self._changed = changed         # the Network's: a live array may be written from now on

    def __getitem__(self, i):
        if self._changed is not None:
            self._changed()
        # A fresh view each time: setting .shape on it cannot reshape the network's own.
        if isinstance(i, slice):
            return [a.view() for a in self._arrays[i]]
        return self._arrays[i].view()

    def __len__(self):
        return len(self._arrays)

    def __setitem__(self, i, value):
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"{self._name} indices must be integers; got {type(i).__name__} "
                            f"(the list cannot be resized)")
        target = self._arrays[i]
        arr = as_parameters(value, f"{self._name}[{i}]", target.dtype, target.shape)
        if self._exclusive is None:
            target[...] = arr
            return
        with self._exclusive():
            target[...] = arr

    def __repr__(self):
        return f"ParameterList({list(self._arrays)!r})"


def parameter_lists(layout, params, grads, access):
    """weights, biases, grad_weights and grad_biases of a Network: lists of views into its
    buffers, assigned under its training lock, telling its Access when a live array is
    handed out. They hold the Access, not the Network, which is then freed (buffers and
    all) as soon as it is dropped; a list that outlives it writes into buffers that no
    one else uses."""
    views = {"weights": [], "biases": [], "grad_weights": [], "grad_biases": []}
    for s in layout:
        views["weights"].append(params[s.w:s.b].reshape(s.n_in, s.n_out))
        views["biases"].append(params[s.b:s.end])
        views["grad_weights"].append(grads[s.w:s.b].reshape(s.n_in, s.n_out))
        views["grad_biases"].append(grads[s.b:s.end])
    return {name: ParameterList(arrays, name, access.exclusive, access.changed)
            for name, arrays in views.items()}

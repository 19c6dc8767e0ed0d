"""Names of activations and losses, and the integer codes the kernels use.

One table shared by both backends: ``reference.py`` looks functions up by name,
the Cython kernels switch on the code. The codes are defined once, in C (``_codes.h``);
tests/test_consistency.py ties these names to them.
"""

ACTIVATIONS = {"identity": 0, "sigmoid": 1, "tanh": 2, "relu": 3, "softmax": 4, "exp": 5}
HIDDEN_ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu")
OUTPUT_ACTIVATIONS = HIDDEN_ACTIVATIONS + ("softmax", "exp")
LOSSES = {"mse": 0, "sse": 1, "cross_entropy": 2, "binary_cross_entropy": 3, "poisson": 4}
# A loss whose gradient is fused with its output activation needs that activation, and
# 'exp' is only the link of the Poisson loss.
LOSS_OUTPUT = {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid", "poisson": "exp"}


def activation_code(name, *, output=False, argname="activation"):
    """Return the kernel code of activation ``name``, or raise a clear error."""
    allowed = OUTPUT_ACTIVATIONS if output else HIDDEN_ACTIVATIONS
    if not isinstance(name, str):
        raise TypeError(f"{argname} must be a string, one of {allowed}; got {type(name).__name__}")
    if name not in allowed:
        if name in ("softmax", "exp"):
            raise ValueError(f"{argname}={name!r} is only allowed for the output layer "
                             f"(output_activation); hidden layers take one of {HIDDEN_ACTIVATIONS}")
        raise ValueError(f"{argname} must be one of {allowed}; got {name!r}")
    return ACTIVATIONS[name]


def loss_code(name, output_activation):
    """Return the kernel code of loss ``name``; cross-entropy needs a softmax output."""
    from bpfast._validation import choice      # here: _validation imports the kernels
    choice(name, "loss", LOSSES)
    need = LOSS_OUTPUT.get(name)
    if need is not None and output_activation != need:
        raise ValueError(f"loss={name!r} needs output_activation={need!r}; "
                         f"got output_activation={output_activation!r}")
    if output_activation == "exp" and name != "poisson":
        raise ValueError(f"output_activation='exp' goes with loss='poisson'; got loss={name!r}")
    return LOSSES[name]

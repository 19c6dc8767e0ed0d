"""The three faces of every public kernel agree (the idea of thinc's ops consistency test):
``reference`` (pure Python), ``functional`` (validated) and the compiled ``_kernels`` def
twins export the same names with the same parameters in the same order, and the one
definition of the activation and loss codes (_codes.h) is the one activations.py names."""
import inspect

import pytest

from bpfast import _kernels, activations, functional, reference

KERNELS = functional.__all__


def parameters(fn):
    return [(p.name, p.default if p.default is not inspect.Parameter.empty else "required")
            for p in inspect.signature(fn).parameters.values()]


def test_the_public_kernels_are_the_ones_every_face_exports():
    assert set(KERNELS) == {"dense_forward", "backprop_error", "activation_backward",
                            "output_delta", "weight_gradients", "sgd_update", "sgd_fused_update",
                            "adam_update", "rprop_update"}
    for name in KERNELS:
        for module in (_kernels, reference):
            assert callable(getattr(module, name, None)), f"{module.__name__} lacks {name}"


@pytest.mark.parametrize("name", KERNELS)
def test_every_face_of_a_kernel_has_the_same_parameters(name):
    ref = parameters(getattr(reference, name))
    compiled = parameters(getattr(_kernels, name))
    public = parameters(getattr(functional, name))
    assert [p for p, _ in compiled] == [p for p, _ in ref] == [p for p, _ in public]
    # Defaults mean the same where the reference has them (0 == 0.0; functional may add
    # a convenience default, as dense_forward's activation='identity').
    for (p, want), (_, got_c), (_, got_f) in zip(ref, compiled, public):
        if want != "required":
            assert got_c == want and got_f == want, (name, p)


def test_the_activation_and_loss_codes_are_those_of_the_c_enum():
    assert _kernels.ACTIVATION_CODES == activations.ACTIVATIONS
    assert _kernels.LOSS_CODES == activations.LOSSES
    assert set(activations.OUTPUT_ACTIVATIONS) == set(activations.ACTIVATIONS)

"""A refactor keeps the bits: networks train to the parameters recorded before it.

tests/data/trained_bits.json was written by ``python tests/bits_fixture.py`` at commit
fd34b77 (before the engine was reorganised); every product there runs in bpfast's own
code, so the hashes hold on any CPU with AVX2 and FMA, at every SIMD level.
"""
import json
import os

import pytest

from bpfast import _kernels

import bits_fixture

RECORDED = json.load(open(os.path.join(os.path.dirname(__file__), "data", "trained_bits.json")))


@pytest.fixture(params=[0, 1, 2], ids=["baseline", "avx2", "avx512"])
def simd_level(request):
    previous = _kernels.simd_level()
    if _kernels.simd_level(request.param) != request.param:
        _kernels.simd_level(previous)
        pytest.skip(f"this CPU has no SIMD level {request.param}")
    yield request.param
    _kernels.simd_level(previous)


def test_every_recorded_network_trains_to_the_same_bits(simd_level):
    kernel_runs = _kernels.small_gemm(1)
    _kernels.small_gemm(-1)
    if not kernel_runs:
        pytest.skip("the register-tiled product kernel needs AVX2 and FMA")
    table = bits_fixture.table()
    assert table.keys() == RECORDED.keys()
    changed = [key for key in RECORDED if table[key] != RECORDED[key]]
    assert not changed, f"{len(changed)} of {len(RECORDED)} changed, e.g. {changed[:3]}"

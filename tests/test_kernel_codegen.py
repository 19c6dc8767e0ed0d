"""The product kernel's compiled loops keep their operands in registers.

A tile of the kernel holds 24 vector accumulators, two vectors of B and a broadcast of
A: 27 of the 32 AVX-512 registers. When the compiler keeps other values live through
its loop, it spills a vector of B to the stack, and every FMA of that vector reads
memory: the float64 packed path ran a quarter slower so (1024x784x1024: 20.3 ms
against 15.6). Timings on a shared machine cannot tell that apart reliably; the
machine code can. This reads it with objdump and fails on any FMA with a stack operand.
"""
import re
import shutil
import subprocess

import pytest

from bpfast import _kernels

KERNEL = re.compile(r"^[0-9a-f]+ <(bpf_sg(?:512)?_[df]_(?:gemm|rows_packed)[\w.]*)>:$")


@pytest.mark.skipif(shutil.which("objdump") is None, reason="needs objdump (binutils)")
def test_no_fma_reads_a_spilled_register():
    listing = subprocess.run(["objdump", "-d", "--no-show-raw-insn", _kernels.__file__],
                             capture_output=True, text=True, check=True).stdout
    function, fmas, spilled = None, {}, {}
    for line in listing.splitlines():
        match = KERNEL.match(line)
        if match:
            function = match.group(1)
            fmas[function] = spilled[function] = 0
        elif not line.strip():
            function = None
        elif function is not None and "vfmadd" in line:
            fmas[function] += 1
            if re.search(r"\(%r[bs]p\)", line):
                spilled[function] += 1
    assert fmas, "no kernel functions found in the listing: were they renamed?"
    assert sum(fmas.values()) > 100
    assert {f: n for f, n in spilled.items() if n} == {}

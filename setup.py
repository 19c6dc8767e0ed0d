"""Build the Cython extensions.

Compiler directives are set once for the whole build. ``BPFAST_DEBUG=1`` turns
bounds checking back on (and optimisation off) for a debug or sanitizer build.
The code is compiled for the baseline x86-64 instruction set so that a wheel
built here runs on any x86-64 CPU.
"""
import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("BPFAST_DEBUG", "") not in ("", "0")

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": False,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
}

# -ffp-contract=off: no fused multiply-adds behind our back, so the AVX2/AVX-512
# variants of a loop round exactly like the baseline one (and like reference.py).
compile_args = ["-O0", "-g"] if DEBUG else ["-O3", "-fno-math-errno", "-fno-trapping-math",
                                           "-ffp-contract=off"]
if os.environ.get("BPFAST_SANITIZE"):
    compile_args += ["-fsanitize=address", "-fno-omit-frame-pointer"]

extensions = [
    Extension(
        f"bpfast.{name}",
        [f"src/bpfast/{name}.pyx"],
        include_dirs=[numpy.get_include(), "src/bpfast"],
        depends=["src/bpfast/_codes.h", "src/bpfast/_vmath.h", "src/bpfast/_smallgemm.h",
                 "src/bpfast/_tiny.h", "src/bpfast/_team.h", "src/bpfast/_kernels.pxd"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=compile_args + ["-pthread"],
        extra_link_args=["-pthread"] + (["-fsanitize=address"] if os.environ.get("BPFAST_SANITIZE")
                                        else []),
        libraries=["dl"],
    )
    for name in ("_kernels", "_engine")
]

setup(ext_modules=cythonize(extensions, compiler_directives=directives))

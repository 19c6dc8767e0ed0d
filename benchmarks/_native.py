"""The set-up the benchmark scripts share: BLAS held to one thread, the native timing
module step_phases.pyx, compiled with pyximport, and how a report reaches its reader.

The scripts run as `python benchmarks/NAME.py`, so Python puts benchmarks/ on sys.path and
they import this module by its name.
"""
import contextlib
import functools
import os
import shlex
import sys

try:
    from threadpoolctl import threadpool_limits
except ImportError:                      # pragma: no cover
    threadpool_limits = None

HERE = os.path.dirname(os.path.abspath(__file__))


def one_blas_thread():
    """A context manager that holds the loaded BLAS libraries to one thread.

    Through threadpoolctl; without it, nothing is limited here (the scripts then rely on
    OPENBLAS_NUM_THREADS and friends, where they set them).
    """
    if threadpool_limits is None:
        return contextlib.nullcontext()
    return threadpool_limits(1)


def torch_one_thread(torch):
    """Hold PyTorch (the module, or None when it is absent) to one thread, as BLAS is."""
    if torch is None:
        return
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:            # already set by an earlier call in this process
        pass


@functools.cache
def load_step_phases():
    """The step_phases module: step_phases.pyx compiled by pyximport on first use.

    It times bpfast's kernels in native code, with no Python per call; compiling it needs
    Cython and a C compiler, as building bpfast does (pyximport builds under ~/.pyxbld).
    """
    import numpy as np
    import pyximport

    from bpfast import _kernels

    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    # bpfast's headers (_codes.h, ...) sit beside its installed extension modules.
    include = [np.get_include(), os.path.dirname(_kernels.__file__)]
    pyximport.install(language_level=3, setup_args={"include_dirs": include})
    import step_phases
    return step_phases


def command_line(script, argv=None):
    """The command that ran `script` (a path) with argv (default: this process's own), as
    the reports quote it: ``python benchmarks/NAME.py ARGS``, relative to the repository."""
    args = sys.argv[1:] if argv is None else list(argv)
    return "python " + shlex.join([os.path.relpath(os.path.abspath(script), os.path.dirname(HERE))]
                                  + args)


def publish(text, output=None):
    """Print a report, and write it to the file `output` too when one is named."""
    print(text)
    if output:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)

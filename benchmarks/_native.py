"""The set-up the benchmark scripts share: BLAS held to one thread, the native timing
module step_phases.pyx, compiled with pyximport, the clock of the timed blocks and the
timing options, and how a report reaches its reader (the command line it quotes, the text,
a matplotlib plot, the exit status). It imports nothing that starts a thread (no NumPy):
bench_jax.py parses its options before it pins its workers to a CPU.

The scripts run as `python benchmarks/NAME.py`, so Python puts benchmarks/ on sys.path and
they import this module by its name.
"""
import argparse
import contextlib
import functools
import os
import shlex
import sys
import time

try:
    from threadpoolctl import threadpool_limits
except ImportError:                      # pragma: no cover
    threadpool_limits = None

HERE = os.path.dirname(os.path.abspath(__file__))


# The timer of the timed blocks. Process CPU time by default: every implementation of
# bench.py runs on the calling thread only, so on an idle machine it equals wall time, and on
# a shared one it leaves out the time the process waits descheduled (--timer wall for
# wall-clock time). Scripts that time threads use the wall clock: CPU time adds up the time
# of every thread and would hide a multi-threaded speedup.
TIMERS = {"cpu": time.process_time, "wall": time.perf_counter}
_timer = [TIMERS["cpu"]]


def use_timer(name):
    """Time the blocks with TIMERS[name] from now on."""
    _timer[0] = TIMERS[name]


def clock():
    """The current time of the chosen timer, in seconds."""
    return _timer[0]()


def wall_clock():
    """Whether the chosen timer is the wall clock."""
    return _timer[0] is TIMERS["wall"]


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


def exit_status(all_ok, failure="A CORRECTNESS CHECK FAILED; see the report."):
    """The script's exit status: 0, or 1 (with `failure` said on stderr) when a check failed."""
    if not all_ok:
        print(failure, file=sys.stderr)
        return 1
    return 0


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend, or None without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save_figure(plt, fig, path):
    """Lay out the pyplot figure fig, write it to path as a PNG and close it."""
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def timing_parser(doc, quick_help, quick_block=0.01, timer=True):
    """The argument parser of a timing script: described by the first paragraph of its
    docstring `doc`, with --quick (helped by quick_help) and the timing options --repeats,
    --block (quick_block seconds under --quick) and, where `timer`, --timer. Parse with
    parse_timing_args."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--repeats", type=int,
                        help="timed blocks per implementation (default 11; quick 3)")
    parser.add_argument("--block", type=float,
                        help=f"seconds per timed block (default 0.2; quick {quick_block})")
    parser.set_defaults(quick_block=quick_block)
    if timer:
        parser.add_argument("--timer", choices=sorted(TIMERS), default="cpu",
                            help="cpu: process CPU time (default; robust on a shared machine); "
                                 "wall: perf_counter")
    return parser


def parse_timing_args(parser, argv):
    """argv parsed by a timing_parser: the timing defaults follow --quick, and the chosen
    timer is selected (the wall clock where the parser has no --timer)."""
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (3 if args.quick else 11)
    args.block = args.block or (args.quick_block if args.quick else 0.2)
    use_timer(getattr(args, "timer", "wall"))
    return args

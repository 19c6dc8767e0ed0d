#!/usr/bin/env python3
"""bpfast against JAX/XLA, on one CPU and on every CPU: µs per weight update, medians.

The cases are bench.py's softmax cases (cases.py: 64-64-10 b32 and 784-128-10 b64 in
float32 and float64, 784-1024-1024-10 b256 in float32; relu hidden layers, softmax output,
cross-entropy, plain SGD at lr 0.01, shuffle off). Implementations:

    JAX jit step      jax.jit of one SGD step (jax.grad of the loss), called per batch
    JAX epoch scan    one jax.jit per epoch: lax.scan of that step over the batches
    bpfast fit        Network.fit over the same data set

Each setting runs in its own subprocess, because XLA sizes its thread pool when JAX is
imported:

    one CPU           the process pins itself to its first CPU (os.sched_setaffinity)
                      before importing NumPy or JAX; bpfast runs with n_threads=1
    default threads   nothing pinned: JAX as it comes, bpfast at its default n_threads
                      (every CPU the process may use); bpfast at n_threads=1 beside it

Before timing, one step of each JAX variant must land on bpfast's weights (bench.py's
tolerances) and, in the default setting, one epoch of fit at the default n_threads must
give the bits of n_threads=1; the script exits with status 1 otherwise. Timing is wall
clock (time.perf_counter): CPU time would add up the threads. Without JAX installed,
its columns are skipped and the bpfast columns still run.

    python benchmarks/bench_jax.py                 # full run (a few minutes)
    python benchmarks/bench_jax.py --quick         # < 60 s (tests/CI)
    python benchmarks/bench_jax.py --cases 784-128-10:float64 --output /tmp/jax.md
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

# _native imports nothing that starts a thread: the worker pins its CPU after this import
from _native import command_line, exit_status, parse_timing_args, publish, timing_parser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SOFTMAX_CASES = ["64-64-10", "784-128-10", "784-1024-1024-10"]
QUICK_CASES = ["64-64-10:float32", "784-128-10:float32"]
# bpfast at its default n_threads against bpfast at n_threads=1: the speedup each
# case must reach (cases not listed have no speedup target).
SPEEDUP_TARGETS = {("784-1024-1024-10", "float32"): 1.6, ("784-128-10", "float32"): 1.5,
                   ("784-128-10", "float64"): 1.5}
SETTINGS = ("one-cpu", "default")
JAX_NAMES = ("JAX jit step", "JAX epoch scan")
BP_DEFAULT, BP_ONE = "bpfast fit", "bpfast fit, n_threads=1"


# ----------------------------------------------------------------------------- worker
def run_worker(args):
    """Time every case in this process's setting and write the results as JSON."""
    pinned = None
    if args.worker == "one-cpu":
        # before NumPy, OpenBLAS or XLA start any thread: they all see one CPU
        pinned = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {pinned})
    import warnings

    import bpfast
    from _timing import BpfastFit, interleaved_medians, load_average, log, same_bits
    from cases import CHECK_LR, initial_parameters, make_data, select_cases
    try:
        import peers_jax
        jax_why = None
    except ImportError as e:
        peers_jax, jax_why = None, f"JAX not installed ({e})"

    out = dict(setting=args.worker, pinned_cpu=pinned, cpus=len(os.sched_getaffinity(0)),
               jax_version=peers_jax and peers_jax.JAX_VERSION, jax_skipped=jax_why,
               bpfast_version=getattr(bpfast, "__version__", "?"), cases=[],
               load_start=load_average())
    threads = 1 if args.worker == "one-cpu" else None
    for case in select_cases(args.cases):
        log(f"[{args.worker}] {case.name}")
        data, init = make_data(case), initial_parameters(case)
        bp = BpfastFit(case, data, init, threads, name=BP_ONE if threads == 1 else BP_DEFAULT)
        resolved = bp.net.n_threads or bpfast.default_threads()
        row = dict(name=case.name, key=case.key, batch=case.batch, dtype=case.dtype,
                   bpfast_threads=resolved, checks=[], medians={})

        bp.net.train_step(data[0][:case.batch], data[1][:case.batch], CHECK_LR)
        if peers_jax is not None:
            row["checks"] = peers_jax.check_jax(case, data, init, bp.weights())
        bp.reset()
        impls = [bp]
        if threads is None:
            one = BpfastFit(case, data, init, 1, name=BP_ONE)
            for impl in (bp, one):                 # one epoch each: the same bits?
                impl.run(case.n_batches)
            row["same_bits"] = same_bits(bp.weights(), one.weights())
            bp.reset()
            one.reset()
            impls.append(one)
        if peers_jax is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                impls += [peers_jax.JaxStep(case, data, init), peers_jax.JaxScan(case, data, init)]
        row["busy"] = {}
        row["medians"] = interleaved_medians(impls, args.repeats, args.block, label=case.name,
                                             busy=row["busy"])
        out["cases"].append(row)
    out["load_end"] = load_average()
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump(out, f)


# ----------------------------------------------------------------------------- report
def _us(seconds):
    from _timing import fmt_us
    return fmt_us(seconds) if seconds is not None else "—"


def _ratio(a, b):
    return f"{a / b:.2f}x" if a is not None and b is not None else "—"


def case_table(res, head, align, cells):
    """Markdown lines: a row per case of one setting's results `res`, its network, batch and
    dtype, then the cells `cells(case, medians)` under the headings `head` (alignment row
    `align`)."""
    lines = ["| " + " | ".join(["network", "batch", "dtype", *head]) + " |", "|---|---:|---|" + align]
    for c in res["cases"]:
        row = [c["key"], str(c["batch"]), c["dtype"], *cells(c, c["medians"])]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def setting_table(res):
    """The markdown table of one setting: µs per update and JAX scan / bpfast."""
    bp_name = BP_ONE if res["setting"] == "one-cpu" else BP_DEFAULT

    def cells(c, m):
        step, scan, bp = m.get(JAX_NAMES[0]), m.get(JAX_NAMES[1]), m[bp_name]
        return [_us(step), _us(scan), _us(bp), _ratio(scan, bp)]
    return case_table(res, ["JAX jit step", "JAX epoch scan", "bpfast fit", "JAX scan / bpfast"],
                      "---:|---:|---:|---:|", cells)


def speedup_table(res):
    """bpfast at its default n_threads against n_threads=1 (default-threads setting)."""
    def cells(c, m):
        one, default, scan = m[BP_ONE], m[BP_DEFAULT], m.get(JAX_NAMES[1])
        target = SPEEDUP_TARGETS.get((c["key"], c["dtype"]))
        if target is None:
            t = "—"
        else:
            t = f">= {target}x: " + ("met" if one / default >= target else "**missed**")
        if scan is None:
            vs = "—"
        else:
            vs = "met" if default <= scan else "**missed**"
            vs += f" ({scan / default:.2f}x)"
        return [_us(one), _us(default), f"{one / default:.2f}x", f"{c['busy'][BP_DEFAULT]:.2f}", t,
                "yes" if c["same_bits"] else "**NO**", vs]
    return case_table(res, ["n_threads=1", "default", "speedup", "CPUs busy", "target", "same bits",
                            "default vs JAX scan"], "---:|---:|---:|---:|---|---|---|", cells)


def check_lines(results):
    """The one-step check of the JAX variants against bpfast, one row per setting and case."""
    lines = ["| setting | case | implementation | weights rel. err | update rel. err | agrees |",
             "|---|---|---|---:|---:|---|"]
    for res in results:
        for c in res["cases"]:
            for name, ew, eu, ok in c["checks"]:
                lines.append(f"| {res['setting']} | {c['name']} | {name} | {ew:.1e} | {eu:.1e} "
                             f"| {'yes' if ok else '**NO**'} |")
    return lines


def report(results, cmd):
    """The whole markdown report; (text, all checks agreed)."""
    one, default = results
    cpus = default["cpus"]
    lines = ["# bpfast against JAX/XLA", "",
             f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
             f"{cpus} usable by this process; Python {platform.python_version()}",
             f"- bpfast {default['bpfast_version']}, JAX {default['jax_version'] or 'not installed'}",
             "- µs per update, wall clock, medians of interleaved blocks; ratios above 1 "
             "mean bpfast is faster",
             "- load average (1 min) at the start and end of each run: one CPU "
             f"{one['load_start']} / {one['load_end']}, default threads {default['load_start']} "
             f"/ {default['load_end']}", ""]
    if default["jax_skipped"]:
        lines += [f"JAX columns skipped: {default['jax_skipped']}.", ""]
    lines += [f"## One CPU (pinned to CPU {one['pinned_cpu']} before import; bpfast "
              "n_threads=1)", ""] + setting_table(one) + [""]
    threads = {c["bpfast_threads"] for c in default["cases"]}
    lines += [f"## Default threads ({cpus} CPUs; JAX unpinned, bpfast n_threads="
              f"{'/'.join(map(str, sorted(threads, key=str)))})", ""]
    lines += setting_table(default) + [""]
    lines += ["## bpfast default n_threads against n_threads=1 (default-threads run)", ""]
    lines += speedup_table(default) + [""]
    ok = True
    if not default["jax_skipped"]:
        lines += ["## One step from the same weights: JAX against bpfast's train_step", ""]
        lines += check_lines(results) + [""]
        ok = all(chk[3] for res in results for c in res["cases"] for chk in c["checks"])
    ok = ok and all(c["same_bits"] for c in default["cases"])
    lines += [f"Command: `{cmd}`", ""]
    return "\n".join(lines), ok


# ----------------------------------------------------------------------------- main
def main(argv=None):
    p = timing_parser(__doc__, "short blocks, 3 repetitions, cases " + " ".join(QUICK_CASES)
                      + " (< 60 s)", quick_block=0.02, timer=False)
    p.add_argument("--cases", nargs="*", metavar="CASE",
                   help="e.g. 64-64-10 784-128-10:float64 (default: " + " ".join(SOFTMAX_CASES) + ")")
    p.add_argument("--output", help="also write the markdown report here")
    p.add_argument("--worker", choices=SETTINGS, help=argparse.SUPPRESS)
    p.add_argument("--json", help=argparse.SUPPRESS)
    args = parse_timing_args(p, argv)
    args.cases = args.cases or (QUICK_CASES if args.quick else SOFTMAX_CASES)
    if args.worker:
        run_worker(args)
        return 0

    from cases import select_cases
    select_cases(args.cases)                    # unknown cases stop here, not in a worker
    results = []
    with tempfile.TemporaryDirectory(prefix="bpfast_bench_jax_") as tmp:
        for setting in SETTINGS:
            path = os.path.join(tmp, setting + ".json")
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", setting, "--json", path,
                   "--repeats", str(args.repeats), "--block", str(args.block), "--cases", *args.cases]
            proc = subprocess.run(cmd, cwd=ROOT)
            if proc.returncode:
                print(f"the {setting} run failed (status {proc.returncode})", file=sys.stderr)
                return proc.returncode
            with open(path, encoding="utf-8") as f:
                results.append(json.load(f))
    text, ok = report(results, command_line(__file__, argv))
    publish(text, args.output)
    return exit_status(ok, "A CHECK FAILED: JAX and bpfast disagree, or n_threads changed the "
                           "bits; see the report.")

if __name__ == "__main__":
    sys.exit(main())

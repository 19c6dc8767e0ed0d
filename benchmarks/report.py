"""The report of a benchmark run: the tables, the targets, the plot and RESULTS.md.

bench.py measures; the functions here format what it measured (results[case.name] is the
dict measure_case returns, checks[case.name] the list check_case returns). One section is
measured here: digits_section runs examples/digits.py (bpfast.sklearn against scikit-learn).
"""
import datetime
import os
import platform
import re
import statistics
import subprocess
import sys

import numpy as np

import bpfast
from _native import pyplot, save_figure
from cases import BIG_WORK, CHECK_LR, LR, RATE_SIZE
from peers import FANN_NAME, RateBound, fann_compile_command, scipy, sklearn, torch

try:
    from threadpoolctl import threadpool_info
except ImportError:
    threadpool_info = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FANN_STEP_US = 0.12     # FANN's per-sample step as the target quotes it: used only when FANN
                        # is not measured in the run (not installed, or no 2-2-1 case)

ROWS = ["bpfast fit", "bpfast train_step", "reference (pure Python)", "NumPy", "PyTorch",
        "scikit-learn", FANN_NAME, RateBound.name, "GEMM lower bound", "GEMM lower bound (SciPy BLAS)"]


def fmt_us(sec):
    """Seconds as µs, with 3-4 significant digits."""
    us = sec * 1e6
    if us >= 1e5:
        return f"{us:,.0f}"
    for limit, digits in ((100, 1), (10, 2), (1, 3)):
        if us >= limit:
            return f"{us:.{digits}f}"
    return f"{us:.4f}"


def fmt_ratio(r):
    """A ratio as "2.50x", with fewer decimals the larger it is."""
    if r >= 1000:
        return f"{r:,.0f}x"
    if r >= 100:
        return f"{r:.0f}x"
    return f"{r:.2f}x" if r < 10 else f"{r:.1f}x"


PEER_RATIOS = [("bpfast train_step", "train_step / fit"), ("reference (pure Python)", "reference / fit"),
               ("NumPy", "NumPy / fit"), ("PyTorch", "PyTorch / fit"),
               ("scikit-learn", "scikit-learn / fit"), (FANN_NAME, "FANN / fit")]
BOUND_RATIOS = [(RateBound.name, "fit / GEMM bound (3 products/layer)"),
                ("GEMM lower bound", "fit / GEMM bound"),
                ("GEMM lower bound (SciPy BLAS)", "fit / GEMM bound (SciPy BLAS)")]


def _row(label, cells):
    return f"| {label} | " + " | ".join(cells) + " |"


def _measured_rows(cases, results, labelled, cell):
    """One row per (name, label) in labelled: cell(medians, name) per case, "—" where the case
    has no median of that name; a row with no value at all is left out."""
    rows = []
    for name, label in labelled:
        cells = [cell(m, name) if name in m else "—" for m in (results[c.name]["medians"] for c in cases)]
        if any(x != "—" for x in cells):
            rows.append(_row(label, cells))
    return rows


def tables(cases, results):
    """(the table of median µs per update, the table of ratios), in markdown."""
    head = _row("implementation", [c.name for c in cases])
    sep = "|---|" + "---:|" * len(cases)
    meta = [_row("params x batch", [f"{c.work:,}" for c in cases]),
            _row("fit data set (rows)", [f"{c.n_batches * c.batch:,}" for c in cases]),
            _row("activations / loss", [f"{c.activation}/{c.output_activation}/{c.loss}" for c in cases])]
    med = [head, sep] + meta + _measured_rows(cases, results, [(row, row) for row in ROWS],
                                              lambda m, name: fmt_us(m[name]))
    ratio = [head.replace("implementation", "ratio"), sep]
    ratio += _measured_rows(cases, results, PEER_RATIOS,
                            lambda m, name: fmt_ratio(m[name] / m["bpfast fit"]))
    ratio += _measured_rows(cases, results, BOUND_RATIOS,
                            lambda m, name: fmt_ratio(m["bpfast fit"] / m[name]))
    gf = []
    for c in cases:
        m = results[c.name]["medians"]
        gf.append(f"{c.flops / m['bpfast fit'] / 1e9:.1f} / {c.flops / m['GEMM lower bound'] / 1e9:.1f}")
    ratio.append(_row("GFLOP/s fit / GEMM bound", gf))
    return "\n".join(med), "\n".join(ratio)


def raw_table(cases, results):
    """Every implementation's per-block figures: updates per block, min/median/max µs."""
    lines = ["| case | implementation | updates per block | blocks | min µs | median µs | max µs "
             "| wall-clock median µs |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for c in cases:
        r = results[c.name]
        for name, v in r["samples"].items():
            lines.append(f"| {c.name} | {name} | {r['block_updates'][name]:,} | {len(v)} | "
                         f"{fmt_us(min(v))} | {fmt_us(statistics.median(v))} | {fmt_us(max(v))} "
                         f"| {fmt_us(statistics.median(r['walls'][name]))} |")
    return "\n".join(lines)


def verdict(ok, value=None, threshold=None):
    """met/missed, flagged when the value is within 5% of its threshold."""
    text = "**met**" if ok else "**missed**"
    if value is not None and abs(value / threshold - 1) < 0.05:
        text += " (within 5% of the threshold: run-to-run noise can flip it)"
    return text


#: The 64-64-10 targets against a peer: (peer's row, the claim, the ratio's name, its format,
#: the ratio peer/fit it must reach, what the report says when the peer was not measured --
#: nothing when None).
PEER_TARGETS = (
    ("NumPy", "fit ≥3x faster than NumPy", "NumPy/fit", ".2f", 3, None),
    ("PyTorch", "fit ≥10x faster than PyTorch", "PyTorch/fit", ".1f", 10, "torch not installed"),
    ("reference (pure Python)", "reference ≥1000x slower than fit", "reference/fit", ",.0f", 1000,
     None),
)


def targets(cases, results):
    """The project's speed targets, each met or missed on this run's medians (markdown list)."""
    by = {(c.key, c.dtype): results[c.name]["medians"] for c in cases}
    out = []

    m = by.get(("2-2-1", "float64"))
    if m:
        fit, ts = m["bpfast fit"], m["bpfast train_step"]
        if FANN_NAME in m:
            fann = m[FANN_NAME]
            out.append(f"- 2-2-1 batch 1, `fit` per update vs FANN's per-sample step (`fann_train`) "
                       f"measured in this run: {fmt_us(fit)} µs vs {fmt_us(fann)} µs = "
                       f"{fit / fann:.2f}x FANN's → {verdict(fit <= fann, fit, fann)}.")
        else:
            why = next(results[c.name]["skipped"][FANN_NAME] for c in cases
                       if (c.key, c.dtype) == ("2-2-1", "float64"))
            fann = FANN_STEP_US * 1e-6
            out.append(f"- 2-2-1 batch 1, `fit` per update vs FANN's ~{FANN_STEP_US} µs per-sample step "
                       f"(a fixed figure; FANN not measured in this run: {why}): {fmt_us(fit)} µs = "
                       f"{fit / fann:.2f}x FANN's → {verdict(fit <= fann, fit, fann)}.")
        out.append(f"- 2-2-1 batch 1, `train_step` from Python under 3 µs: {ts * 1e6:.2f} µs → "
                   f"{verdict(ts * 1e6 < 3)}.")
    else:
        out.append("- 2-2-1 targets: not measured in this run.")
    for dt in ("float32", "float64"):
        m = by.get(("64-64-10", dt))
        if not m:
            continue
        fit = m["bpfast fit"]
        for peer, claim, label, spec, bound, absent in PEER_TARGETS:
            if peer in m:
                r = m[peer] / fit
                out.append(f"- 64-64-10 b32 {dt}, {claim}: {label} = {r:{spec}}x → "
                           f"{verdict(r >= bound, r, bound)}.")
            elif absent:
                out.append(f"- 64-64-10 b32 {dt}, {claim}: not measured ({absent}).")
    big = [c for c in cases if c.work >= BIG_WORK]
    for c in big:
        m = results[c.name]["medians"]
        fit = m["bpfast fit"]
        r_i = fit / m[RateBound.name]
        r_g = fit / m["GEMM lower bound"]
        r_np = m["NumPy"] / fit
        extra = ""
        if "GEMM lower bound (SciPy BLAS)" in m:
            extra = f", the SciPy-BLAS one {fit / m['GEMM lower bound (SciPy BLAS)']:.3f}x"
        out.append(f"- {c.name}, fit within 1.15x of the GEMM lower bound (the targets' definition: 3 products per "
                   f"layer at the {RATE_SIZE}³ GEMM rate): fit/bound = {r_i:.3f}x → {verdict(r_i <= 1.15, r_i, 1.15)}. "
                   f"Against the stricter bound of the products a step needs, each timed on its "
                   f"own shape: {r_g:.3f}x ({verdict(r_g <= 1.15, r_g, 1.15)}{extra}). "
                   f"Never slower than NumPy: NumPy/fit = {r_np:.2f}x → {verdict(r_np >= 1, r_np, 1)}.")
    if not any(k == "64-64-10" for k, _ in by):
        out.append("- 64-64-10 targets: not measured in this run.")
    if not big:
        out.append("- 784-128-10 and larger: not measured in this run.")
    return "\n".join(out)


def machine_info():
    """CPU, OS, versions, BLAS libraries and their threads, as a markdown list."""
    info = []
    cpu, extra = "unknown", ""
    try:
        fields = {}
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break               # the first processor is enough
                k, _, v = line.partition(":")
                fields[k.strip()] = v.strip()
        cpu = fields.get("model name", cpu)
        flags = set(fields.get("flags", "").split())
        simd = [x for x in ("avx2", "fma", "avx512f", "avx512_bf16") if x in flags]
        extra = f", cache {fields.get('cache size', '?')}, SIMD: {' '.join(simd) or 'none of avx2/avx512'}"
    except OSError:
        cpu = platform.processor() or "unknown"
    try:
        n_avail = len(os.sched_getaffinity(0))
    except AttributeError:
        n_avail = os.cpu_count()
    info.append(f"- CPU: {cpu}{extra} ({os.cpu_count()} logical CPUs, {n_avail} available to this process); "
                f"load average at start {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    info.append(f"- OS: {platform.platform()}; Python {platform.python_version()}")
    vers = [f"bpfast {bpfast.__version__}", f"numpy {np.__version__}",
            f"scipy {scipy.__version__ if scipy else 'not installed'}",
            f"torch {torch.__version__ if torch else 'not installed'}",
            f"scikit-learn {sklearn.__version__ if sklearn else 'not installed'}"]
    try:
        import threadpoolctl
        vers.append(f"threadpoolctl {threadpoolctl.__version__}")
    except ImportError:
        vers.append("threadpoolctl not installed")
    info.append("- Versions: " + ", ".join(vers))
    try:
        rev = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        if rev:
            info.append(f"- bpfast source: git {rev}")
    except (OSError, subprocess.SubprocessError):
        pass
    if threadpool_info is not None:
        for p in threadpool_info():
            if p.get("user_api") != "blas":
                continue
            path = p.get("filepath", "")
            owner = "NumPy" if "numpy" in path else "SciPy (and bpfast's kernels, via scipy.linalg.cython_blas)" if "scipy" in path else "?"
            info.append(f"- BLAS for {owner}: {p.get('internal_api')} {p.get('version')}, "
                        f"architecture {p.get('architecture')}, {p.get('threading_layer')} threading, "
                        f"threads in this run: {p.get('num_threads')} ({os.path.basename(path)})")
    else:
        blas = "?"
        try:
            cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
            blas = f"{cfg.get('name')} {cfg.get('version')}"
        except Exception:       # older NumPy: no dict mode
            pass
        info.append(f"- BLAS: NumPy built with {blas}; threadpoolctl not installed, so the loaded "
                    "libraries are not listed (threads limited through OMP/OPENBLAS/MKL_NUM_THREADS=1)")
    if torch is not None:
        info.append(f"- torch threads: {torch.get_num_threads()} intra-op, "
                    f"{torch.get_num_interop_threads()} inter-op")
    info.append(f"- bpfast threads: {bpfast.default_threads()} (Network n_threads=None: every "
                f"CPU allowed, at most the BLAS thread limit)")
    env = {k: os.environ[k] for k in sorted(os.environ) if k.startswith(("OPENBLAS", "OMP_", "MKL_"))}
    info.append("- Thread environment: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    return "\n".join(info)


def plot(cases, results, path):
    """Median µs per update against parameters x batch, one panel per dtype, to path (PNG).

    Returns False, drawing nothing, when matplotlib is not installed.
    """
    plt = pyplot()
    if plt is None:
        return False
    style = {"bpfast fit": ("tab:red", "o", "-"), "bpfast train_step": ("tab:orange", "s", "-"),
             "reference (pure Python)": ("tab:brown", "x", ":"), "NumPy": ("tab:blue", "^", "-"),
             "PyTorch": ("tab:purple", "D", "-"), "scikit-learn": ("tab:green", "v", "-"),
             FANN_NAME: ("tab:gray", "P", "-"),
             "GEMM lower bound": ("black", "", "--")}
    dtypes = [dt for dt in ("float64", "float32") if any(c.dtype == dt for c in cases)]
    fig, axes = plt.subplots(1, len(dtypes), figsize=(6.5 * len(dtypes), 5.2), squeeze=False)
    for ax, dt in zip(axes[0], dtypes):
        cs = sorted((c for c in cases if c.dtype == dt), key=lambda c: c.work)
        for name, (color, marker, ls) in style.items():
            pts = [(c.work, results[c.name]["medians"][name] * 1e6) for c in cs
                   if name in results[c.name]["medians"]]
            if pts:
                ax.plot(*zip(*pts), color=color, marker=marker, linestyle=ls, label=name, lw=1.6, ms=6)
        for c in cs:
            ax.annotate(c.name.rsplit(" ", 1)[0], (c.work, results[c.name]["medians"]["bpfast fit"] * 1e6),
                        textcoords="offset points", xytext=(4, -12), fontsize=8, color="tab:red")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.margins(x=0.12, y=0.08)
        ax.set_xlabel("network size: parameters × batch")
        ax.set_ylabel("time per weight update (µs, median)")
        ax.set_title(f"{dt}, one thread")
        ax.grid(True, which="major", alpha=0.4)
        ax.grid(True, which="minor", alpha=0.12)
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("bpfast benchmark: time per SGD update vs network size (log-log)")
    save_figure(plt, fig, path)
    return True


def digits_section(repeats):
    """examples/digits.py's output: bpfast.sklearn vs scikit-learn's MLP on the digits."""
    script = os.path.join(ROOT, "examples", "digits.py")
    if not os.path.exists(script):
        return "(examples/digits.py not found)"
    run = subprocess.run([sys.executable, script, "--repeats", str(repeats)],
                         capture_output=True, text=True, timeout=600)
    text = "\n".join("    " + line for line in (run.stdout + run.stderr).strip().splitlines())
    acc = dict(re.findall(r"^(bpfast|scikit-learn)\s+test accuracy ([\d.]+)%", run.stdout, re.M))
    ratio = re.search(r"fit time\): ([\d.]+)x", run.stdout)
    if len(acc) == 2 and ratio:
        gap = float(acc["scikit-learn"]) - float(acc["bpfast"])
        r = float(ratio.group(1))
        text += (f"\n\nTargets: accuracy within one point of scikit-learn's: {gap:+.2f} points → "
                 f"{verdict(abs(gap) <= 1)}; fit at least 10x faster: {r:.1f}x → "
                 f"{verdict(r >= 10, r, 10)}.")
    return text


def check_table(cases, checks):
    """(the markdown table of the one-step correctness check, whether every row agreed)."""
    check_lines = ["| case | implementation | weights rel. err | update rel. err | agrees |",
                   "|---|---|---:|---:|---|"]
    all_ok = True
    for c in cases:
        for name, ew, eu, ok in checks[c.name]:
            all_ok &= ok
            check_lines.append(f"| {c.name} | {name} | {ew:.1e} | {eu:.1e} | {'yes' if ok else '**NO**'} |")
    return "\n".join(check_lines), all_ok


def write(args, cases, checks, results, info, digits, elapsed, cmd):
    """Draw the plot, write the markdown report to args.output and print its tables.

    args: bench.py's options (output, plot, timer, repeats, block); info: machine_info();
    digits: digits_section() or None; elapsed: seconds of the run; cmd: the command line
    that reproduces it. Returns whether every implementation passed the correctness check.
    """
    med_table, ratio_table = tables(cases, results)
    tgt = targets(cases, results)
    check_lines, all_ok = check_table(cases, checks)
    skipped = sorted({f"{name}: {why}" for c in cases for name, why in results[c.name]["skipped"].items()})
    unset = [v for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if v in os.environ]
    plotted = plot(cases, results, args.plot)
    text = markdown(args, info=info, digits=digits, elapsed=elapsed, cmd=cmd, unset=unset,
                    med_table=med_table, ratio_table=ratio_table, tgt=tgt, check_lines=check_lines,
                    all_ok=all_ok, skipped=skipped, raw=raw_table(cases, results), plotted=plotted)
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(text)
    print("## Median time per update (µs)\n\n" + med_table + "\n\n## Ratios\n\n" + ratio_table
          + "\n\n## Targets\n\n" + tgt + "\n")
    print(f"wrote {args.output}" + (f" and {args.plot}" if plotted else " (no plot: matplotlib missing)"))
    return all_ok


def markdown(args, *, info, digits, elapsed, cmd, unset, med_table, ratio_table, tgt,
             check_lines, all_ok, skipped, raw, plotted):
    """The text of RESULTS.md: the tables and how they were measured."""
    fann_cmd = fann_compile_command()
    return f"""# bpfast benchmark results

Time per weight update (one SGD step on one batch), **median** over repeated timed
blocks, in µs of {'process CPU time' if args.timer == 'cpu' else 'wall-clock time'}; one thread everywhere (threadpoolctl
`threadpool_limits(1)`, `torch.set_num_threads(1)`). Produced on
{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC in {elapsed:.0f} s; load average at the end
{', '.join(f'{x:.2f}' for x in os.getloadavg())} (other processes were {'competing for' if os.getloadavg()[0] > 1.2 else 'mostly quiet on'} the CPUs).

Reproduce (from the repository root{', with ' + ' and '.join(unset) + ' unset' if unset else ''}):

    {cmd}

## Machine

{info}

## Median time per update (µs)

{med_table}

## Ratios (median / median)

{ratio_table}

## Targets

{tgt}

On a shared machine the medians move by several percent from run to run (see the min/max
spread in the raw table): a verdict within ~5% of its threshold is not conclusive.

{'## Digits: bpfast.sklearn against scikit-learn' + chr(10) + chr(10) + 'scikit-learn' + chr(39) + 's bundled digits at the same settings (`python examples/digits.py --repeats 5`, one BLAS thread as above; fit time is the median of 5 fits each, the two estimators taking turns):' + chr(10) + chr(10) + digits + chr(10) + chr(10) if digits else ''}## How it was measured

- **bpfast fit**: `Network.fit(X, Y, epochs=k, batch_size=B, lr={LR}, shuffle=False)` over a data
  set of the row count above; time of the whole call (validation, per-epoch bookkeeping
  included) divided by `History.n_updates`.
- **bpfast train_step** / **reference**: `Network.train_step(x, y, lr)` called from a Python loop
  over pre-sliced batches (reference = `backend="reference"`, at most 3 blocks; not run for the
  784-input cases, where one step takes seconds).
- **NumPy**: a plain NumPy step: `Z = A @ W; Z += b`, in-place activation; the output delta
  (softmax + cross-entropy: `(A - Y) / B`; MSE: `2 (A - Y) f'(Z) / (B n_out)`); backward
  `E = delta @ W.T` through the old W, `dW = A.T @ delta`, `W -= lr dW`, `b -= lr delta.sum(0)`.
  It does not compute the loss value (bpfast does).
- **PyTorch**: `nn.Sequential(Linear, activation, ...)`, `torch.optim.SGD`,
  `zero_grad(); loss_fn(model(x), y).backward(); step()` per update; softmax + cross-entropy as
  `nn.CrossEntropyLoss` on the logits with class targets, MSE as `nn.MSELoss`.
- **scikit-learn**: `MLPClassifier`/`MLPRegressor(solver="sgd", momentum=0, alpha=0,
  batch_size=B)`, one `partial_fit` per batch (includes sklearn's input validation per call);
  the regressor's `learning_rate_init` is scaled by 2/n_out so its update equals bpfast's MSE
  update. Not applicable where sklearn lacks the network (sigmoid output with MSE).
- **FANN**: the C library's `fann_train(ann, x, y)`, one row per call cycling through the
  same rows, in a C program written and compiled at run time{' (`' + fann_cmd + '`)' if fann_cmd else ''} and started
  as a subprocess per block from the same initial weights; the loop is timed inside it with
  `clock_gettime(CLOCK_PROCESS_CPUTIME_ID)` (and `CLOCK_MONOTONIC` for the wall-clock column), so
  the process start is not counted. `fann_create_standard`, `FANN_SIGMOID` (steepness 0.5: the
  logistic function) for hidden and output layers, `FANN_ERRORFUNC_LINEAR`, no momentum, learning
  rate `2 lr / (B n_out)` (FANN's step has no factor 2). Only where FANN has the network: sigmoid
  layers, MSE, batch 1, float64 (needs libfann-dev and a C compiler; skipped otherwise).
- **GEMM bound (3 products/layer at the large-GEMM rate)**: the targets' definition, for the
  cases from 784-128-10 on: the flops of 3 products per layer (`2 * batch * n_in * n_out * 3`)
  at the single-thread rate of a {RATE_SIZE}³ `np.matmul` of the case's dtype, timed in
  the same interleaved blocks as the implementations.
- **GEMM lower bound**: per layer the products `X@W`, `A.T@delta` and (except the first layer)
  `delta@W.T`, each timed on its own with `np.matmul(..., out=...)` on the case's shapes; the
  bound is the sum of the per-product medians. For tiny networks it is dominated by NumPy's
  per-call overhead (~1 µs per product) and is not a meaningful bound there. The SciPy-BLAS
  row times the same products through `scipy.linalg.blas.?gemm` (the OpenBLAS build bpfast's
  kernels call through `scipy.linalg.cython_blas`), with ~2 µs of f2py call overhead each.
- Each implementation is reset to the same initial weights before each block; the order of
  the implementations rotates every repetition; {args.repeats} repetitions of ≈{args.block} s blocks
  (per-block update counts and min/max below). Garbage collection is off during a block.
- Timer: {'process CPU time (`time.process_time`). Everything runs on the calling thread, so on an idle machine this equals wall time; on a shared machine it leaves out the time spent descheduled. The wall-clock medians of the same blocks are in the raw table; `--timer wall` uses wall-clock time throughout.' if args.timer == 'cpu' else 'wall-clock time (`time.perf_counter`).'}

## Correctness check

Before timing, every implementation made one step (lr={CHECK_LR}) on the first batch from the
same initial weights as bpfast's `train_step`; shown is the relative (Frobenius) error of the
resulting parameters and of the update `W_after - W_before` against bpfast's. Tolerance:
weights 1e-6; update 1e-6 (float64) / 1e-4 (float32, where the subtraction cancels).
FANN keeps its learning rate as a C float, so its update differs from bpfast's by the float
rounding of the rate (1.5e-8 relative at lr {CHECK_LR}); otherwise doublefann agrees to ~1e-16.

{check_lines}

{'All implementations train the same network.' if all_ok else '**A CHECK FAILED: the comparison is not like for like.**'}

## Skipped

{chr(10).join('- ' + s for s in skipped) if skipped else '- nothing'}

## Raw timings

{raw}

{'![time per update vs network size](' + os.path.relpath(args.plot, os.path.dirname(os.path.abspath(args.output))) + ')' if plotted else '(no plot: matplotlib not installed)'}
"""

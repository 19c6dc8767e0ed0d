#!/usr/bin/env python3
"""bpfast's optimizers timed: fit's time per update with each, against PyTorch and FANN.

Prints four markdown tables, each measured side by side in one run, on one thread:

1. Time per update of ``Network.fit`` with plain SGD, SGD with momentum 0.9, Adam and AdamW,
   at 64-64-10 batch 32 and 784-128-10 batch 64, in float32 and float64 (relu hidden layer,
   softmax output, cross-entropy, 2048 random rows), and the ratio Adam / SGD (target: at
   most 1.25x).
2. Rprop follows the sign of the whole gradient, so it runs full batch: time per epoch (one
   update on all 2048 rows) of fit with Rprop and with plain SGD on the same networks.
3. fit with Adam against a ``torch.optim.Adam`` training loop (zero_grad, forward,
   CrossEntropyLoss, backward, step) at 64-64-10 batch 32, on the same batches from the same
   weights, with torch's default (for-loop) Adam and with ``fused=True`` (target: bpfast at
   least 10x faster than the faster of the two). Before the timing, five steps of each
   must land on bpfast's weights.
4. Full-batch Rprop on 2-2-1 (XOR, 4 rows) and 4-16-3 (150 random rows, 3 classes), sigmoid
   layers and MSE: time per epoch of ``fit(optimizer="rprop", batch_size=N)`` against FANN's
   ``fann_train_epoch`` with ``FANN_TRAIN_RPROP``, timed inside a C program (fann_rprop.c,
   compiled at run time against doublefann; skipped without libfann-dev or a C compiler).
   bpfast gets FANN's default Rprop parameters: lr (the initial step) 0.1, etas (0.5, 1.2),
   step_sizes (1e-12, 50): FANN's smallest step is 0, which bpfast does not take, so a tiny
   positive one stands in. Beside the times: the MSE of the first epoch of each, which
   must agree (it comes from the same initial weights and data), and after CHECK_EPOCHS
   epochs, to show that both train (the two Rprop variants differ: benchmarks/README.md).

Timing as in bench.py: every implementation of a case is timed in blocks of about --block
seconds, interleaved with the others (the order rotates every repetition), from the same
initial weights; the tables give medians over --repeats blocks, in process CPU time.

Run from the repository root:

    python benchmarks/bench_optimizers.py                # full run, about two minutes
    python benchmarks/bench_optimizers.py --quick        # a few seconds (tests/CI)
    python benchmarks/bench_optimizers.py --output benchmarks/RESULTS_optimizers.md
"""
import os

# One thread everywhere: set before NumPy/OpenBLAS load (threadpoolctl limits them again).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import math
import subprocess
import sys
import time

import numpy as np

import bpfast
from _native import (command_line, exit_status, one_blas_thread, parse_timing_args, publish,
                     timing_parser, torch_one_thread)
from _timing import BpfastFit, Impl, interleaved_medians
from bench import rel_err
from cases import CE, Case, initial_parameters, make_data
import peers
from peers import TorchMLP, fann_connections, torch
from report import fmt_ratio, fmt_us, machine_info

HERE = os.path.dirname(os.path.abspath(__file__))

ROWS = 2048                 # rows of the data set of tables 1-3
ADAM_TARGET = 1.25          # Adam's update at most this many times plain SGD's
TORCH_TARGET = 10.0         # bpfast's Adam fit at least this many times faster than torch's
FANN_RPROP = dict(lr=0.1, etas=(0.5, 1.2), step_sizes=(1e-12, 50.0))
CHECK_EPOCHS = 500          # epochs of the MSE comparison of table 4

# name: fit's keywords (the parameters are reset before every timed block)
OPTIMIZERS = {
    "SGD": dict(optimizer="sgd", lr=0.01),
    "SGD momentum 0.9": dict(optimizer="sgd", lr=0.01, momentum=0.9),
    "Adam": dict(optimizer="adam", lr=1e-3),
    "AdamW": dict(optimizer="adamw", lr=1e-3, weight_decay=1e-2),
}
FULL_BATCH = {
    "SGD": dict(optimizer="sgd", lr=0.01),
    "Rprop": dict(optimizer="rprop", lr=0.01),
}


# ----------------------------------------------------------------------------- implementations
class FitImpl(BpfastFit):
    """Network.fit over the data set with one optimizer's keywords and batch, shuffle off."""

    def __init__(self, name, case, data, init, batch, fit_kw):
        super().__init__(case, data, init, name=name)
        self.batch = batch
        self.fit_kw = fit_kw
        self.per_epoch = math.ceil(self.X.shape[0] / batch)


class TorchAdam(TorchMLP):
    """A torch.optim.Adam training loop on the case's batches (peers.TorchMLP's network,
    data and reset, with Adam in place of SGD); a fresh optimizer at every reset."""

    def __init__(self, case, data, init, lr, fused):
        self.lr, self.fused = lr, fused
        self.name = "torch.optim.Adam" + (" (fused=True)" if fused else " (default)")
        self.loss_fn = torch.nn.CrossEntropyLoss()
        super().__init__(case, data, init, lr)
        self.reset()        # TorchMLP.__init__ set an SGD step: replace it

    def reset(self):
        super().reset()
        model, loss_fn = self.model, self.loss_fn
        opt = torch.optim.Adam(model.parameters(), lr=self.lr, fused=True if self.fused else None)

        def step(x, y):
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
        self.step = step


# FANN's full-batch Rprop: the C program fann_rprop.c (its header says what it does),
# compiled once per run; skipped when there is no C compiler or no libfann-dev.
def fann_program():
    """(path of the compiled fann_rprop program, None), or (None, why there is none)."""
    return peers.fann_program("fann_rprop.c")


class FannRprop(Impl):
    """fann_train_epoch with FANN_TRAIN_RPROP over all rows, timed inside fann_rprop.c.

    Each run() starts the program from the initial weights (so reset() has nothing to do);
    the process start is outside the timed loop.
    """
    name = "FANN fann_train_epoch (RPROP)"

    def __init__(self, case, data, init, wall_clock=False):
        self.case, self.exe = case, fann_program()[0]
        self.wall_clock = wall_clock
        # FANN's connection order, which fann_step.c's check confirms (the first-epoch MSE
        # of table 4 confirms it again)
        self.rows = data[0].shape[0]
        self.stdin = peers.fann_stdin(init, data, fann_connections(case.sizes))
        self.mse = None         # the MSE of the last epoch of the last run

    def run(self, n):
        sizes = self.case.sizes
        proc = subprocess.run([self.exe, str(n), str(self.rows), str(len(sizes)),
                               *map(str, sizes)], input=self.stdin, capture_output=True,
                              timeout=600)
        if proc.returncode:
            raise RuntimeError(f"the FANN program failed: {proc.stderr.decode(errors='replace')}")
        cpu, wall, self.mse = map(float, proc.stdout.split()[:3])
        self.inner_wall = wall
        return (wall if self.wall_clock else cpu), n


def torch_check(case, data, init, torch_impls, n_steps=5):
    """Relative error of each torch loop's weights against bpfast's after n_steps Adam
    steps on the first batches from the same weights: the comparison is like for like."""
    rows = n_steps * case.batch
    net = bpfast.Network(list(case.sizes), case.activation, case.output_activation, case.loss,
                         dtype=case.dtype, seed=0)
    for W, b, W0, b0 in zip(net.weights, net.biases, *init):
        W[...] = W0
        b[...] = b0
    net.fit(data[0][:rows], data[1][:rows], epochs=1, batch_size=case.batch, shuffle=False,
            **OPTIMIZERS["Adam"])
    want = [np.asarray(a, np.float64) for W, b in zip(net.weights, net.biases) for a in (W, b)]
    errors = {}
    for impl in torch_impls:
        impl.reset()
        impl.run(n_steps)
        got = [np.asarray(a, np.float64) for W, b in impl.weights() for a in (W, b)]
        errors[impl.name] = rel_err(got, want)
        impl.reset()
    return errors


def minibatch_cases():
    """The cases of tables 1-3: relu hidden layer, softmax + cross-entropy, ROWS rows."""
    out = []
    for sizes, batch in (((64, 64, 10), 32), ((784, 128, 10), 64)):
        for dtype in ("float32", "float64"):
            out.append(Case(sizes, batch, dtype, *CE, ROWS // batch, False))
    return out


def measure_minibatch(case, args):
    """Tables 1-3 for one case: medians by implementation name, and the torch check."""
    data, init = make_data(case), initial_parameters(case)
    impls = [FitImpl(name, case, data, init, case.batch, kw) for name, kw in OPTIMIZERS.items()]
    impls += [FitImpl(f"full batch {name}", case, data, init, ROWS, kw)
              for name, kw in FULL_BATCH.items()]
    torch_impls, check = [], {}
    if torch is not None and case.sizes == (64, 64, 10):
        torch_impls = [TorchAdam(case, data, init, OPTIMIZERS["Adam"]["lr"], fused)
                       for fused in (False, True)]
        check = torch_check(case, data, init, torch_impls)
    return interleaved_medians(impls + torch_impls, args.repeats, args.block, case.name), check


def rprop_cases():
    """(case, data) of table 4: XOR on 2-2-1, 150 random rows in 3 classes on 4-16-3."""
    xor = Case((2, 2, 1), 4, "float64", "sigmoid", "sigmoid", "mse", 1, False)
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float64)
    Y = np.array([[0], [1], [1], [0]], np.float64)
    iris = Case((4, 16, 3), 150, "float64", "sigmoid", "sigmoid", "mse", 1, False)
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 3, size=150)
    # three clusters, like iris's four measurements
    Xi = rng.normal(size=(150, 4)) + labels[:, None] * np.array([1.0, -0.5, 1.5, 0.8])
    Yi = np.eye(3)[labels]
    return [(xor, (X, Y, None)), (iris, (Xi, Yi, labels))]


def measure_rprop(case, data, args):
    """Table 4 for one case: medians by name, and {implementation: (MSE of the first epoch,
    MSE of epoch CHECK_EPOCHS)}, each run from the initial weights."""
    init = initial_parameters(case)
    rows = data[0].shape[0]
    bp = FitImpl("bpfast fit (rprop)", case, data, init, rows, dict(optimizer="rprop", **FANN_RPROP))
    losses = bp.fit(CHECK_EPOCHS).loss
    mse = {bp.name: (losses[0], losses[-1])}
    bp.reset()
    impls = [bp]
    if fann_program()[1] is None:
        fann = FannRprop(case, data, init, wall_clock=args.timer == "wall")
        impls.append(fann)
        fann.run(1)
        first = fann.mse
        fann.run(CHECK_EPOCHS)
        mse[fann.name] = (first, fann.mse)
    return interleaved_medians(impls, args.repeats, args.block, case.name), mse


# ----------------------------------------------------------------------------- report
TORCH_TOL = {"float32": 1e-4, "float64": 1e-10}   # weights after 5 Adam steps, relative
FANN_TOL = 1e-5             # first-epoch MSE, relative (FANN sums squared errors in float)


def verdict(ok):
    return "met" if ok else "**missed**"


def agree(ok):
    return "yes" if ok else "**NO**"


def machine_section(args):
    return ["## Optimizers: time per update of `fit`", "",
            f"- Timed: medians of {args.repeats} interleaved blocks of about {args.block:g} s "
            f"each, {'process CPU' if args.timer == 'cpu' else 'wall-clock'} time, one thread "
            "(BLAS, torch); µs per update.", machine_info(), ""]


def minibatch_sections(mini):
    """Tables 1 and 2, in markdown lines."""
    out = [f"### 1. Mini-batch optimizers ({ROWS} random rows, relu + softmax + cross-entropy)", ""]
    head = ["network", "batch", "dtype", *OPTIMIZERS, "Adam / SGD", f"target Adam ≤ {ADAM_TARGET}x SGD"]
    out += ["| " + " | ".join(head) + " |", "|---|---:|---|" + "---:|" * (len(OPTIMIZERS) + 1) + "---|"]
    for case, (med, _) in mini:
        ratio = med["Adam"] / med["SGD"]
        out.append("| " + " | ".join([case.key, str(case.batch), case.dtype,
                                      *(fmt_us(med[n]) for n in OPTIMIZERS), fmt_ratio(ratio),
                                      verdict(ratio <= ADAM_TARGET)]) + " |")
    out += ["", "Learning rates: SGD 0.01, also with momentum 0.9; Adam 1e-3; AdamW 1e-3 "
                "with weight_decay 1e-2. Shuffle off.", ""]
    out += [f"### 2. Full batch ({ROWS} rows, one update per epoch)", "",
            "| network | dtype | SGD µs/epoch | Rprop µs/epoch | Rprop / SGD |",
            "|---|---|---:|---:|---:|"]
    for case, (med, _) in mini:
        sgd, rp = med["full batch SGD"], med["full batch Rprop"]
        out.append(f"| {case.key} | {case.dtype} | {fmt_us(sgd)} | {fmt_us(rp)} | {fmt_ratio(rp / sgd)} |")
    return out + [""]


def torch_section(mini):
    """Table 3 in markdown lines, and whether every torch loop agreed with bpfast."""
    out = ["### 3. Adam: bpfast `fit` against a `torch.optim.Adam` loop (64-64-10, batch 32)", ""]
    rows = [(case, med, check) for case, (med, check) in mini if check]
    if not rows:
        return out + ["Skipped: torch not installed.", ""], True
    names = list(rows[0][2])
    out += ["| dtype | bpfast fit (Adam) | " + " | ".join(names) + " | "
            + " | ".join(f"{n} / bpfast" for n in names)
            + f" | target: faster torch ≥ {TORCH_TARGET:g}x bpfast |",
            "|---|---:|" + "---:|" * (2 * len(names)) + "---|"]
    for case, med, _ in rows:
        ratios = [med[n] / med["Adam"] for n in names]
        out.append(f"| {case.dtype} | {fmt_us(med['Adam'])} | "
                   + " | ".join(fmt_us(med[n]) for n in names) + " | "
                   + " | ".join(fmt_ratio(r) for r in ratios)
                   + f" | {verdict(min(ratios) >= TORCH_TARGET)} |")
    out += ["", "Same network, loss, batches and initial weights. The check before the timing, "
            "5 Adam steps of each from the same weights:", "",
            "| dtype | implementation | weights rel. error vs bpfast | agrees |", "|---|---|---:|---|"]
    ok = True
    for case, _, check in rows:
        for name, err in check.items():
            good = err <= TORCH_TOL[case.dtype]
            ok &= good
            out.append(f"| {case.dtype} | {name} | {err:.1e} | {agree(good)} |")
    return out + [""], ok


def fann_section(rprop):
    """Table 4 in markdown lines, and whether FANN's first epoch agreed with bpfast's."""
    out = ["### 4. Full-batch Rprop: bpfast `fit` against FANN's `fann_train_epoch`", "",
           "| network | rows | bpfast µs/epoch | FANN µs/epoch | FANN / bpfast | MSE epoch 1: "
           f"bpfast | FANN | MSE epoch {CHECK_EPOCHS}: bpfast | FANN |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    ok = True
    bp_name = "bpfast fit (rprop)"
    for case, data, med, mse in rprop:
        bp_first, bp_last = mse[bp_name]
        if FannRprop.name in med:
            fann_first, fann_last = mse[FannRprop.name]
            ok &= abs(fann_first - bp_first) <= FANN_TOL * abs(bp_first)
            fann = [fmt_us(med[FannRprop.name]), fmt_ratio(med[FannRprop.name] / med[bp_name])]
            fann_mse = [f"{fann_first:.6g}", f"{fann_last:.4g}"]
        else:
            fann, fann_mse = ["—", "—"], ["—", "—"]
        out.append(f"| {case.key} | {data[0].shape[0]} | {fmt_us(med[bp_name])} | {fann[0]} | "
                   f"{fann[1]} | {bp_first:.6g} | {fann_mse[0]} | {bp_last:.4g} | {fann_mse[1]} |")
    out += ["", "Sigmoid hidden and output layers, MSE, float64, the same data and initial "
            "weights. Rprop parameters: FANN's defaults (initial step 0.1, etas (0.5, 1.2), "
            "largest step 50, smallest 0), in bpfast with smallest step 1e-12 (it must be > 0). "
            "The first epoch's MSE comes from the initial weights, so the two must agree (to "
            f"{FANN_TOL:g}: FANN sums in float): " + ("they do." if ok else "**they do NOT**.")
            + " Later epochs differ: FANN's Rprop variant is not torch's (see benchmarks/README.md)."]
    why = fann_program()[1]
    if why is not None:
        out += ["", f"FANN skipped: {why}."]
    return out + [""], ok


def report(mini, rprop, args, elapsed):
    """The markdown text of the run, and whether every check agreed."""
    torch_lines, torch_ok = torch_section(mini)
    fann_lines, fann_ok = fann_section(rprop)
    lines = (machine_section(args) + minibatch_sections(mini) + torch_lines + fann_lines
             + [f"Command: `{command_line(__file__)}`; took {elapsed:.0f} s.", ""])
    return "\n".join(lines), torch_ok and fann_ok


def main(argv=None):
    p = timing_parser(__doc__, "few, short repetitions (tests/CI)")
    p.add_argument("--output", help="also write the markdown to this file")
    args = parse_timing_args(p, argv)
    torch_one_thread(torch)
    started = time.time()
    with one_blas_thread():
        mini = [(case, measure_minibatch(case, args)) for case in minibatch_cases()]
        rprop = [(case, data, *measure_rprop(case, data, args)) for case, data in rprop_cases()]
    text, all_ok = report(mini, rprop, args, time.time() - started)
    publish(text, args.output)
    return exit_status(all_ok)


if __name__ == "__main__":
    sys.exit(main())

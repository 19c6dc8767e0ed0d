"""``bpfast demo``: XOR and two spirals trained by both backends, side by side.

Each problem is fitted once by the compiled backend and once by the pure-Python
reference, from the same initial weights and with the same batches, both without
a callback, so the timed work is the same ``fit`` call in both; the losses are
printed afterwards from the fits' histories.
"""
from __future__ import annotations

import time
from typing import Dict

import numpy as np


def _fit(backend: str, problem: Dict) -> Dict:
    """One timed fit of the problem's network on `backend`; returns what it measured."""
    import bpfast

    p = problem
    net = bpfast.Network(p["sizes"], activation=p["activation"],
                         output_activation=p["output_activation"], loss=p["loss"],
                         backend=backend, seed=0)
    settings = dict(batch_size=p["batch_size"], lr=p["lr"], momentum=p["momentum"],
                    shuffle=True, seed=1)
    # One untimed epoch on a copy: the first call's one-time costs are not the backend's speed.
    net.clone().fit(p["X"], p["Y"], epochs=1, **settings)
    start = time.perf_counter()
    history = net.fit(p["X"], p["Y"], epochs=p["epochs"], **settings)
    seconds = time.perf_counter() - start
    out = net.predict(p["X"])
    pred = (out[:, 0] > 0.5).astype(int) if out.shape[1] == 1 else out.argmax(axis=1)
    return {"history": history, "seconds": seconds, "correct": int((pred == p["y"]).sum())}


def _report(backend: str, run: Dict, problem: Dict) -> None:
    history, epochs, n = run["history"], problem["epochs"], len(problem["y"])
    every = max(1, epochs // 5)
    for epoch, loss in enumerate(history.loss):
        if epoch == 0 or (epoch + 1) % every == 0 or epoch + 1 == epochs:
            print(f"  {backend:<9} epoch {epoch + 1:>5}  loss {loss:.6f}")
    print(f"  {backend}: accuracy {100.0 * run['correct'] / n:.1f}% ({run['correct']}/{n}), "
          f"final loss {history.loss[-1]:.6f}, {history.n_updates} updates in "
          f"{_duration(run['seconds'])} ({_duration(run['seconds'] / history.n_updates)} per update)")


def _duration(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g} µs"
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.2f} s"


def problems(epochs=None, quick=False):
    """The demo's two problems: XOR, and two spirals of 100 points per class."""
    from bpfast._datasets import one_hot, two_spirals, xor

    X, y = xor()
    spiral_X, spiral_y = two_spirals(100, turns=1.5)
    return [
        dict(name="XOR", X=X, Y=y.reshape(-1, 1).astype(float), y=y, sizes=[2, 4, 1],
             activation="tanh", output_activation="sigmoid", loss="mse", batch_size=4, lr=0.5,
             momentum=0.9, epochs=epochs or (300 if quick else 1000)),
        dict(name="two spirals", X=spiral_X, Y=one_hot(spiral_y, 2), y=spiral_y,
             sizes=[2, 32, 32, 2], activation="relu", output_activation="softmax",
             loss="cross_entropy", batch_size=20, lr=0.1, momentum=0.9,
             epochs=epochs or (20 if quick else 100)),
    ]


def run_demo(epochs=None, quick=False) -> int:
    """Train both problems on both backends and print losses, accuracy and the speed ratio."""
    print("bpfast demo: the same network trained by the compiled (cython) and the pure-Python "
          "(reference) backend, from the same initial weights and batch order.")
    for p in problems(epochs, quick):
        print(f"\n{p['name']}: {len(p['y'])} samples, network {p['sizes']} ({p['activation']} "
              f"hidden, {p['output_activation']} output, {p['loss']} loss), lr {p['lr']}, "
              f"momentum {p['momentum']}, batch {p['batch_size']}, {p['epochs']} epochs")
        runs = {backend: _fit(backend, p) for backend in ("cython", "reference")}
        for backend, run in runs.items():
            _report(backend, run, p)
        diff = float(np.max(np.abs(np.subtract(runs["cython"]["history"].loss,
                                               runs["reference"]["history"].loss))))
        ratio = runs["reference"]["seconds"] / runs["cython"]["seconds"]
        print(f"  backends agree: max |loss difference| over the epochs {diff:.2e}")
        shown = f"{ratio:.0f}" if ratio >= 10 else f"{ratio:.1f}"
        print(f"  fit, compiled vs reference: {shown}x faster (one fit each, same weights "
              f"and batches)")
    return 0

"""Model files and CSV input: what bpfast.load and the command line cost.

    python benchmarks/bench_io.py            # all three parts (~1 min, writes ~250 MB in a temp dir)
    python benchmarks/bench_io.py --quick    # smaller files and fewer repetitions

1. ``bpfast.load`` of a small model against ``np.load`` of the same file, both
   lazily (``np.load`` returns without reading a single array: it opens the zip and
   reads its directory) and eagerly (every array read), medians of interleaved
   repetitions; and ``bpfast.load`` of the same model in the previous file format
   (bpfast-network-1: a field per setting), against ``np.load`` of that file.
2. A zip bomb: a model file whose ``params`` member inflates to 2 GiB (200 MiB with
   --quick) after a valid header; the time and peak RSS of ``bpfast.load`` refusing it.
3. CSV input: the peak RSS above the interpreter's of reading a CSV's columns
   (``CSVTable.read``) and of a whole ``bpfast train --epochs 1``, against the file's
   size, for a CSV of floats and one of small integers.
Parts 2 and 3 run each measurement in a fresh subprocess (``ru_maxrss``).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import bpfast

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from zipbomb import write_bomb  # noqa: E402

RSS_PROBE = r"""
import resource, sys, time
import numpy, bpfast, bpfast.__main__, bpfast._csvdata
kind, args = sys.argv[1], sys.argv[2:]
try:    # the resident size now (Linux); the high-water mark may sit above it after the imports
    with open("/proc/self/statm") as f:
        base = int(f.read().split()[1]) * resource.getpagesize() / 1024
except OSError:
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
if kind == "load":
    try:
        bpfast.load(args[0])
        outcome = "loaded"
    except ValueError as exc:
        outcome = "refused: " + str(exc)[-110:]
elif kind == "read":
    table = bpfast._csvdata.CSVTable(args[0])
    table.read(table.columns[:-1], table.columns[-1])
    outcome = "read"
else:
    outcome = "exit status %d" % bpfast.__main__.main(args)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(seconds, (peak - base) / 1024, outcome)
"""


def probe(kind, *args):
    """(seconds, MiB of peak RSS above the interpreter's with bpfast imported, outcome)."""
    out = subprocess.run([sys.executable, "-c", RSS_PROBE, kind, *map(str, args)],
                         capture_output=True, text=True, check=True).stdout.strip()
    seconds, mb, outcome = out.splitlines()[-1].split(" ", 2)
    return float(seconds), float(mb), outcome


def format_1_fields(net):
    """What the previous format (bpfast-network-1) stores for `net`: a field per setting."""
    return dict(format=np.array("bpfast-network-1"), sizes=np.array(net.sizes),
                activation=np.array(net.activation),
                output_activation=np.array(net.output_activation), loss=np.array(net.loss),
                dtype=np.array(net.dtype.name), params=net.get_parameters())


def format_2_fields(net):
    """What bpfast.save stores for `net` (no optimizer state): the JSON config, the parameters."""
    config = dict(format="bpfast-network-2", sizes=net.sizes, activation=net.activation,
                  output_activation=net.output_activation, loss=net.loss, dtype=net.dtype.name)
    return {"config": np.array(json.dumps(config)), "params": net.get_parameters()}


def load_timing(directory, sizes, rounds, repeats):
    net = bpfast.Network(sizes, seed=0)
    path = os.path.join(directory, "small.npz")
    bpfast.save(net, path)
    old_path = os.path.join(directory, "format1.npz")
    np.savez(old_path, **format_1_fields(net))

    def lazy():
        np.load(path).close()

    def eager():
        with np.load(path) as z:
            return [z[k] for k in z.files]

    def ours():
        return bpfast.load(path)

    def old_lazy():
        np.load(old_path).close()

    def old_ours():
        return bpfast.load(old_path)

    def median_call(fn):
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    functions = (lazy, eager, ours, old_lazy, old_ours)
    medians = {fn.__name__: [] for fn in functions}
    for fn in functions:
        median_call(fn)                       # warm-up
    for _ in range(rounds):                   # interleaved: drift hits all alike
        for fn in functions:
            medians[fn.__name__].append(median_call(fn))
    m = {k: statistics.median(v) * 1e6 for k, v in medians.items()}
    load_average = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(f"1. load of a {'-'.join(map(str, sizes))} model ({os.path.getsize(path)} bytes), "
          f"median of {rounds} rounds x {repeats} calls (load average {load_average}):")
    print(f"   np.load lazy (reads no array)    {m['lazy']:8.1f} us")
    print(f"   np.load + every array            {m['eager']:8.1f} us")
    print(f"   bpfast.load                      {m['ours']:8.1f} us   "
          f"({m['ours'] / m['lazy']:.2f}x lazy np.load, {m['ours'] / m['eager']:.2f}x eager)")
    print(f"   previous format ({os.path.getsize(old_path)} bytes, 7 fields): np.load lazy "
          f"{m['old_lazy']:.1f} us, bpfast.load {m['old_ours']:.1f} us "
          f"({m['old_ours'] / m['old_lazy']:.2f}x lazy)")


def zip_bomb(directory, inflated):
    net = bpfast.Network([2, 4, 1], seed=0)
    path = os.path.join(directory, "bomb.npz")
    write_bomb(path, format_2_fields(net), "params", inflated)
    seconds, mb, outcome = probe("load", path)
    print(f"2. zip bomb: {os.path.getsize(path) / 2 ** 20:.1f} MiB file, params inflating to "
          f"{inflated / 2 ** 30:.2f} GiB: {outcome}")
    print(f"   {seconds * 1e3:.1f} ms, peak RSS +{mb:.1f} MiB")


def csv_memory(directory, rows):
    rng = np.random.default_rng(0)
    floats = os.path.join(directory, "floats.csv")
    with open(floats, "w") as f:
        f.write(",".join(f"x{i}" for i in range(8)) + ",y\n")
        for start in range(0, rows, 10000):
            X = rng.normal(size=(min(10000, rows - start), 8))
            f.write("".join(",".join(map(repr, x.tolist())) + f",{float(x.sum())!r}\n" for x in X))
    ints = os.path.join(directory, "ints.csv")
    with open(ints, "w") as f:
        f.write(",".join(f"p{i}" for i in range(64)) + ",digit\n")
        for start in range(0, rows // 2, 10000):
            A = rng.integers(0, 17, size=(min(10000, rows // 2 - start), 64))
            f.write("".join(",".join(map(str, a)) + f",{a[0] % 10}\n" for a in A.tolist()))
    print("3. CSV input, peak RSS above the interpreter's:")
    for path, what in ((floats, "8 float columns + float target"),
                       (ints, "64 columns of 0-16 + class 0-9")):
        mb_file = os.path.getsize(path) / 2 ** 20
        _, read_mb, _ = probe("read", path)
        seconds, train_mb, outcome = probe("train", "train", path, "--epochs", "1", "--hidden",
                                           "4", "--no-progress", "--output",
                                           os.path.join(directory, "m.npz"))
        print(f"   {what}: {mb_file:.0f} MiB file; reading {read_mb:.0f} MiB "
              f"({read_mb / mb_file:.2f}x); train --epochs 1 {train_mb:.0f} MiB "
              f"({train_mb / mb_file:.2f}x, {seconds:.1f} s, {outcome})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller files, fewer repetitions")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        load_timing(directory, [2, 4, 1], rounds=3 if args.quick else 15,
                    repeats=100 if args.quick else 400)
        zip_bomb(directory, 200 * 2 ** 20 if args.quick else 2 ** 31)
        csv_memory(directory, 40000 if args.quick else 440000)


if __name__ == "__main__":
    main()

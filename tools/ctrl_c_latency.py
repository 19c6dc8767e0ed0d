"""How long Ctrl-C takes to stop Network.fit, measured in fresh processes.

    python tools/ctrl_c_latency.py [--tries 20]

Each try starts a process that fits a network for far longer than it will be allowed
to, sends itself SIGINT after a random 0.2-0.6 s, and reports the time from the signal
to the KeyboardInterrupt in fit's caller; the table gives the median and maximum over
the tries for each network size (docs/reliability.md keeps the figures).
"""
import argparse
import json
import subprocess
import sys
import textwrap

import numpy as np

CHILD = textwrap.dedent("""
    import json, os, signal, sys, threading, time
    import numpy as np
    import bpfast
    sizes, batch, dtype, delay = json.loads(sys.argv[1])
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, sizes[0])).astype(dtype)
    Y = rng.normal(size=(2000, sizes[-1])).astype(dtype)
    net = bpfast.Network(sizes, "relu", "identity", dtype=dtype, seed=0)
    sent = []
    def interrupt():
        time.sleep(delay)
        sent.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)
    threading.Thread(target=interrupt, daemon=True).start()
    try:
        net.fit(X, Y, epochs=10 ** 6, batch_size=batch, lr=1e-3, momentum=0.9)
        print(json.dumps({"error": "fit ended without an interrupt"}))
    except KeyboardInterrupt:
        latency = time.perf_counter() - sent[0]
        h = net.history_
        finite = bool(np.isfinite(net.get_parameters()).all())
        again = net.fit(X[:100], Y[:100], epochs=1, batch_size=batch, lr=1e-3)  # usable still
        print(json.dumps({"latency": latency, "epochs": len(h.loss), "updates": h.n_updates,
                          "finite": finite, "continued": len(again.loss) == 1}))
""")

CASES = [([2, 2, 1], 1, "float64"), ([64, 128, 8], 32, "float64"),
         ([784, 128, 10], 64, "float32"), ([784, 1024, 1024, 10], 256, "float32")]


def one_try(sizes, batch, dtype, delay):
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps([sizes, batch, dtype, delay])],
                         capture_output=True, text=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("| network | batch | dtype | tries | median ms | max ms |")
    print("|---|---:|---|---:|---:|---:|")
    for sizes, batch, dtype in CASES:
        results = [one_try(sizes, batch, dtype, float(rng.uniform(0.2, 0.6)))
                   for _ in range(args.tries)]
        assert all("latency" in r and r["finite"] for r in results), results
        ms = 1e3 * np.array([r["latency"] for r in results])
        print(f"| {'-'.join(map(str, sizes))} | {batch} | {dtype} | {len(ms)} | "
              f"{np.median(ms):.1f} | {ms.max():.1f} |")


if __name__ == "__main__":
    main()

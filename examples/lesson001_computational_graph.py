"""Lesson 001: one sigmoid neuron as a computational graph, backpropagated by hand.

The tutorial (after CS231n's lecture on backpropagation) draws the logistic
neuron ``f(w, x) = 1 / (1 + exp(-(w0*x0 + w1*x1 + b)))`` as a graph of primitive
gates, runs it forward, and then walks it backward: each gate multiplies the
upstream gradient arriving from its output by its local gradient (the chain
rule) and sends the product to its inputs. The numbers are the lecture's:
w = (2, -3), b = -3, x = (-1, -2).

Here the graph is written out gate by gate in plain Python floats. The result
is then checked against bpfast: a [2, 1] ``Network`` with a sigmoid output holds
the same neuron (weights as a (2, 1) matrix), and after a squared-error loss
node ``L = (f - y)^2`` is put on top of the graph, the hand-made gradients of L
equal ``Network.backward``'s ``grad_weights`` / ``grad_biases``; the gradient
of L with respect to the inputs equals ``bpfast.backprop_error(delta, W)``.

Run:  python examples/lesson001_computational_graph.py
"""
import math

import numpy as np

import bpfast
from bpfast.functional import output_delta

w0, w1, b = 2.0, -3.0, -3.0
x0, x1 = -1.0, -2.0


def forward_backward(upstream_at_f: float):
    """Forward through the gates, then backward with dOut/df = upstream_at_f.

    Returns (f, gradients dict, rows of the printed table).
    """
    # ---- forward: every gate's output value
    a = w0 * x0                 # mul gate
    c = w1 * x1                 # mul gate
    s = a + c                   # add gate
    z = s + b                   # add gate
    n = -1.0 * z                # *(-1) gate
    e = math.exp(n)             # exp gate
    d = 1.0 + e                 # +1 gate
    f = 1.0 / d                 # 1/x gate

    # ---- backward: downstream = local gradient * upstream, gate by gate
    # rows: (gate, output value, local gradient(s), upstream, downstream gradient(s))
    rows = []
    g_f = upstream_at_f
    local = -1.0 / d ** 2                      # d(1/d)/dd
    g_d = local * g_f
    rows.append(("1/x", f, f"{local:.5f}", g_f, f"{g_d:.5f}"))
    g_e = 1.0 * g_d                            # d(1+e)/de = 1
    rows.append(("+1", d, "1", g_d, f"{g_e:.5f}"))
    local = math.exp(n)                        # d(exp n)/dn = exp n
    g_n = local * g_e
    rows.append(("exp", e, f"{local:.5f}", g_e, f"{g_n:.5f}"))
    g_z = -1.0 * g_n                           # d(-z)/dz = -1
    rows.append(("*(-1)", n, "-1", g_n, f"{g_z:.5f}"))
    g_s = g_b = 1.0 * g_z                      # an add gate hands the gradient to both inputs
    rows.append(("s+b", z, "1, 1", g_z, f"s: {g_s:.5f}, b: {g_b:.5f}"))
    g_a = g_c = 1.0 * g_s
    rows.append(("a+c", s, "1, 1", g_s, f"a: {g_a:.5f}, c: {g_c:.5f}"))
    # a mul gate swaps its inputs: d(w*x)/dw = x, d(w*x)/dx = w
    g_w0, g_x0 = x0 * g_a, w0 * g_a
    rows.append(("w0*x0", a, f"{x0:g}, {w0:g}", g_a, f"w0: {g_w0:.5f}, x0: {g_x0:.5f}"))
    g_w1, g_x1 = x1 * g_c, w1 * g_c
    rows.append(("w1*x1", c, f"{x1:g}, {w1:g}", g_c, f"w1: {g_w1:.5f}, x1: {g_x1:.5f}"))
    grads = {"w0": g_w0, "x0": g_x0, "w1": g_w1, "x1": g_x1, "b": g_b}
    return f, grads, rows


def print_table(rows) -> None:
    print(f"  {'gate':<6} {'output':>8}  {'local':<8} {'upstream':>9}  downstream")
    for gate, out, local, up, down in rows:
        print(f"  {gate:<6} {out:8.5f}  {local:<8} {up:9.5f}  {down}")


def main() -> None:
    # 1. The neuron alone: start the backward pass with df/df = 1.
    f, grads, rows = forward_backward(1.0)
    print(f"forward: f = sigmoid(w0*x0 + w1*x1 + b) = {f:.5f}")
    print("backward (downstream = local * upstream):")
    print_table(rows)
    print("gradients of f: " + ", ".join(f"d{k} = {v:.5f}" for k, v in grads.items()))
    # the sigmoid gate in one step: df/dz = f * (1 - f)
    print(f"shortcut: df/dz = f * (1 - f) = {f * (1 - f):.5f} (= d(b) above)")

    # 2. With a loss node L = (f - y)^2 on top, upstream at f is dL/df = 2 (f - y).
    y = 1.0
    upstream = 2.0 * (f - y)
    _, lgrads, _ = forward_backward(upstream)
    L = (f - y) ** 2
    print(f"\nwith L = (f - y)^2, y = {y}: L = {L:.6f}, dL/df = {upstream:.6f}")
    print("hand-made dL/d(w0, w1, b) = " + " ".join(f"{lgrads[k]:.10f}" for k in ("w0", "w1", "b")))

    net = bpfast.Network([2, 1], activation="identity", output_activation="sigmoid", loss="sse",
                         seed=0)
    net.weights[0] = [[w0], [w1]]
    net.biases[0] = [b]
    X = np.array([[x0, x1]])
    out = net.forward(X)
    loss = net.backward(np.array([[y]]))
    gw = net.grad_weights[0][:, 0]
    gb = net.grad_biases[0][0]
    print(f"Network.backward: L = {loss:.6f}, grad_weights = {gw[0]:.10f} {gw[1]:.10f}, "
          f"grad_biases = {gb:.10f}")
    _, delta = output_delta(out, [[y]], "sse", "sigmoid")
    gx = bpfast.backprop_error(delta, net.weights[0])[0]
    print(f"backprop_error(delta, W) = dL/dx = {gx[0]:.10f} {gx[1]:.10f} "
          f"(by hand {lgrads['x0']:.10f} {lgrads['x1']:.10f})")
    diff = max(abs(gw[0] - lgrads["w0"]), abs(gw[1] - lgrads["w1"]), abs(gb - lgrads["b"]),
               abs(gx[0] - lgrads["x0"]), abs(gx[1] - lgrads["x1"]), abs(loss - L))
    print(f"max |hand - bpfast| = {diff:.3e}")
    assert diff < 1e-12


if __name__ == "__main__":
    main()

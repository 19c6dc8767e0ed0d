"""Lesson 004: epochs, batches and the number of weight updates.

The tutorial's question: with 100 samples, batch_size 50 and 100 epochs, how
many times are the weights updated? One epoch is 100 / 50 = 2 iterations, so
(100 / 50) * 100 = 200 updates. ``Network.fit`` counts them in
``History.n_updates``; when the batch size does not divide the data, the last
batch of each epoch is smaller and an epoch makes ceil(N / B) updates.

Run:  python examples/lesson004_epochs_batches.py
"""
import math

import numpy as np

import bpfast


def main() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 3))
    Y = (X.sum(axis=1, keepdims=True) > 0).astype(float)
    for batch_size, epochs in [(50, 100), (30, 100), (100, 10), (1, 3)]:
        net = bpfast.Network([3, 4, 1], activation="sigmoid", loss="mse", seed=0)
        per_epoch = []

        def count(epoch, history, per_epoch=per_epoch):
            per_epoch.append(history.n_updates)

        hist = net.fit(X, Y, epochs=epochs, batch_size=batch_size, lr=0.5, callback=count)
        expected = math.ceil(len(X) / batch_size) * epochs
        print(f"N={len(X)}, batch_size={batch_size}, epochs={epochs}: "
              f"ceil({len(X)}/{batch_size}) * {epochs} = {expected}; "
              f"History.n_updates = {hist.n_updates} (after epoch 1: {per_epoch[0]}); "
              f"final loss {hist.loss[-1]:.4f}")
        assert hist.n_updates == expected and len(hist.loss) == epochs


if __name__ == "__main__":
    main()

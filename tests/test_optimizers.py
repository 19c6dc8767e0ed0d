"""The optimizers against torch.optim step for step, against the reference backend, against
bpfast.optim loops bit for bit; sample weights, gradient clipping, early stopping."""
import numpy as np
import pytest

import bpfast
from bpfast import optim

BACKENDS = ["cython", "reference"]
# Each problem: sizes, hidden, output, loss.
PROBLEMS = [([4, 7, 3], "tanh", "identity", "mse"),
            ([5, 6, 4, 3], "sigmoid", "softmax", "cross_entropy"),
            ([3, 8, 2], "relu", "sigmoid", "sse"),
            ([6, 5, 4], "identity", "tanh", "mse")]
SETTINGS = {"sgd": dict(momentum=0.9, nesterov=True, weight_decay=1e-3, lr=0.05),
            "adam": dict(betas=(0.8, 0.99), eps=1e-7, weight_decay=1e-2, lr=0.01),
            "adamw": dict(betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1, lr=0.01),
            "rprop": dict(etas=(0.4, 1.3), step_sizes=(1e-5, 0.5), lr=0.02)}


def first_problem():
    """PROBLEMS[0] and its data: (sizes, hidden, out, loss, X, Y)."""
    sizes, hidden, out, loss = PROBLEMS[0]
    return (sizes, hidden, out, loss, *problem(sizes, out))


def problem(sizes, out, n=24, seed=0, dtype="float64"):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, sizes[0])).astype(dtype)
    if out == "softmax":
        Y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], n)]
    elif out == "sigmoid":
        Y = rng.uniform(0.1, 0.9, size=(n, sizes[-1]))
    else:
        Y = rng.normal(scale=0.5, size=(n, sizes[-1]))
    return X, Y.astype(dtype)


def torch_fit(net0, X, Y, optimizer, settings, epochs, batch_size, clip_norm=None):
    """The same network, batches and update in PyTorch; returns its flat parameters."""
    torch = pytest.importorskip("torch")
    dtype = torch.float64 if net0.dtype == np.float64 else torch.float32
    acts = {"identity": lambda z: z, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
            "relu": torch.relu, "softmax": lambda z: torch.softmax(z, dim=1)}
    Ws = [torch.tensor(W.copy(), dtype=dtype, requires_grad=True) for W in net0.weights]
    bs = [torch.tensor(b.copy(), dtype=dtype, requires_grad=True) for b in net0.biases]
    decay = settings.get("weight_decay", 0.0)
    groups = [{"params": Ws, "weight_decay": decay}, {"params": bs, "weight_decay": 0.0}]
    lr = settings["lr"]
    if optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=lr, momentum=settings["momentum"],
                              nesterov=settings["nesterov"])
    elif optimizer in ("adam", "adamw"):
        cls = torch.optim.Adam if optimizer == "adam" else torch.optim.AdamW
        opt = cls(groups, lr=lr, betas=settings["betas"], eps=settings["eps"])
    else:
        opt = torch.optim.Rprop(Ws + bs, lr=lr, etas=settings["etas"],
                                step_sizes=settings["step_sizes"])
    Xt, Yt = torch.tensor(X, dtype=dtype), torch.tensor(Y, dtype=dtype)
    L = len(Ws)
    for _ in range(epochs):
        for start in range(0, X.shape[0], batch_size):
            xb, yb = Xt[start:start + batch_size], Yt[start:start + batch_size]
            a = xb
            for l in range(L):
                z = a @ Ws[l] + bs[l]
                act = net0.output_activation if l == L - 1 else net0.activation
                if act == "softmax" and net0.loss == "cross_entropy":
                    a = torch.log_softmax(z, dim=1)
                elif l == L - 1 and net0.loss == "binary_cross_entropy":
                    a = z                           # the logits
                else:
                    a = acts[act](z)
            if net0.loss == "cross_entropy":
                loss = -(yb * a).sum(dim=1).mean()
            elif net0.loss == "binary_cross_entropy":
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    a, yb, reduction="sum") / a.shape[0]
            elif net0.loss == "mse":
                loss = ((a - yb) ** 2).mean()
            else:
                loss = ((a - yb) ** 2).sum()
            opt.zero_grad()
            loss.backward()
            if clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(Ws + bs, clip_norm)
            opt.step()
    return np.concatenate([np.concatenate([W.detach().numpy().ravel(), b.detach().numpy()])
                           for W, b in zip(Ws, bs)])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("problem_index", range(len(PROBLEMS)))
@pytest.mark.parametrize("optimizer", list(SETTINGS))
def test_every_optimizer_matches_torch_step_for_step(optimizer, problem_index, dtype):
    pytest.importorskip("torch")
    sizes, hidden, out, loss = PROBLEMS[problem_index]
    X, Y = problem(sizes, out, seed=problem_index, dtype=dtype)
    # Rprop is a full-batch method; the others take batches that do not divide the data.
    batch_size = X.shape[0] if optimizer == "rprop" else 7
    net = bpfast.Network(sizes, hidden, out, loss, dtype=dtype, seed=problem_index)
    start = net.clone()
    settings = SETTINGS[optimizer]
    net.fit(X, Y, epochs=4, batch_size=batch_size, shuffle=False, optimizer=optimizer, **settings)
    want = torch_fit(start, X, Y, optimizer, settings, 4, batch_size)
    tol = dict(rtol=1e-11, atol=1e-12) if dtype == "float64" else dict(rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net.get_parameters(), want, **tol)


@pytest.mark.parametrize("optimizer", list(SETTINGS))
def test_clip_norm_matches_torch_clip_grad_norm(optimizer):
    sizes, hidden, out, loss, X, Y = first_problem()
    X *= 20                                             # gradients far above the clip
    net = bpfast.Network(sizes, hidden, out, loss, seed=3)
    start = net.clone()
    settings = SETTINGS[optimizer]
    bs = X.shape[0] if optimizer == "rprop" else 8
    net.fit(X, Y, epochs=3, batch_size=bs, shuffle=False, optimizer=optimizer, clip_norm=0.5,
            **settings)
    want = torch_fit(start, X, Y, optimizer, settings, 3, bs, clip_norm=0.5)
    np.testing.assert_allclose(net.get_parameters(), want, rtol=1e-11, atol=1e-12)
    unclipped = start.clone()
    unclipped.fit(X, Y, epochs=3, batch_size=bs, shuffle=False, optimizer=optimizer, **settings)
    if optimizer != "rprop":            # Rprop follows signs: scaling the gradient is no change
        assert not np.allclose(unclipped.get_parameters(), want, rtol=1e-6)


@pytest.mark.parametrize("optimizer", list(SETTINGS))
@pytest.mark.parametrize("problem_index", range(len(PROBLEMS)))
def test_every_optimizer_agrees_with_the_reference_backend(optimizer, problem_index):
    sizes, hidden, out, loss = PROBLEMS[problem_index]
    X, Y = problem(sizes, out, seed=problem_index)
    w = np.random.default_rng(9).uniform(0.2, 3.0, X.shape[0])
    kw = dict(epochs=3, batch_size=X.shape[0] if optimizer == "rprop" else 5, seed=4,
              optimizer=optimizer, sample_weight=w, **SETTINGS[optimizer])
    results = []
    for backend in BACKENDS:
        net = bpfast.Network(sizes, hidden, out, loss, backend=backend, seed=problem_index)
        h = net.fit(X, Y, **kw)
        results.append((net.get_parameters(), net._state.copy(), net._state_step, h.loss))
    (p1, s1, t1, l1), (p2, s2, t2, l2) = results
    np.testing.assert_allclose(p1, p2, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(s1, s2, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(l1, l2, rtol=1e-9)
    assert t1 == t2 == 3 * -(-X.shape[0] // kw["batch_size"])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("optimizer", list(SETTINGS))
def test_fit_and_a_loop_of_optim_steps_give_the_same_bits(optimizer, backend):
    sizes, hidden, out, loss = PROBLEMS[1]
    X, Y = problem(sizes, out, n=20)
    settings = dict(SETTINGS[optimizer])
    bs = 20 if optimizer == "rprop" else 6
    fitted = bpfast.Network(sizes, hidden, out, loss, backend=backend, seed=5)
    looped = fitted.clone()
    opt = optim.CLASSES[optimizer](fitted, **settings)
    fitted.fit(X, Y, epochs=3, batch_size=bs, shuffle=False, optimizer=opt)
    opt_loop = optim.CLASSES[optimizer](looped, **settings)
    for _ in range(3):
        for start in range(0, 20, bs):
            looped.forward(X[start:start + bs])
            looped.backward(Y[start:start + bs])
            opt_loop.step()
    assert np.array_equal(fitted.get_parameters(), looped.get_parameters())
    assert np.array_equal(fitted._state, looped._state)
    assert fitted._state_step == looped._state_step


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_fit_by_name_continues_as_one_longer_fit_with_keep_state(optimizer):
    sizes, hidden, out, loss, X, Y = first_problem()
    kw = dict(batch_size=5, shuffle=False, optimizer=optimizer, **SETTINGS[optimizer])
    whole = bpfast.Network(sizes, hidden, out, loss, seed=1)
    parts = whole.clone()
    whole.fit(X, Y, epochs=4, **kw)
    parts.fit(X, Y, epochs=1, **kw)
    parts.fit(X, Y, epochs=3, keep_state=True, **kw)
    assert np.array_equal(whole.get_parameters(), parts.get_parameters())
    fresh = whole.clone()
    fresh.set_parameters(parts.get_parameters())
    with pytest.raises(ValueError, match="keep_state=True, but the optimizer state is"):
        parts.fit(X, Y, epochs=1, keep_state=True, optimizer="rprop")


@pytest.mark.parametrize("loss, out", [("mse", "identity"), ("sse", "sigmoid"),
                                       ("cross_entropy", "softmax")])
@pytest.mark.parametrize("backend", BACKENDS)
def test_integer_sample_weights_on_a_full_batch_equal_repeated_rows(loss, out, backend):
    sizes = [4, 6, 3]
    X, Y = problem(sizes, out, n=10)
    w = np.array([1, 2, 0, 3, 1, 1, 2, 1, 4, 1])
    weighted = bpfast.Network(sizes, "tanh", out, loss, backend=backend, seed=2)
    repeated = weighted.clone()
    hw = weighted.fit(X, Y, epochs=3, batch_size=10, shuffle=False, sample_weight=w, lr=0.05,
                      optimizer="adam")
    Xr, Yr = np.repeat(X, w, axis=0), np.repeat(Y, w, axis=0)
    hr = repeated.fit(Xr, Yr, epochs=3, batch_size=len(Xr), shuffle=False, lr=0.05,
                      optimizer="adam")
    np.testing.assert_allclose(weighted.get_parameters(), repeated.get_parameters(),
                               rtol=1e-12, atol=1e-14)
    if loss != "sse":       # an epoch's loss is over the rows it has
        np.testing.assert_allclose(hw.loss, hr.loss, rtol=1e-12)


def test_sample_weights_are_validated():
    net = bpfast.Network([2, 1])
    X, Y = np.ones((3, 2)), np.ones((3, 1))
    for w, exc, message in [([1, 2], ValueError, "shape"), ([1, -1, 1], ValueError, ">= 0"),
                            ([0, 0, 0], ValueError, "all zeros"),
                            ([1, np.nan, 1], ValueError, "NaN"), ("abc", TypeError, "")]:
        with pytest.raises(exc, match=message):
            net.fit(X, Y, sample_weight=w)


def test_shuffled_sample_weights_follow_their_rows():
    """Shuffling gathers each batch's weights with its rows: a weight of 0 drops the row."""
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(12, 3)), rng.normal(size=(12, 2))
    w = np.ones(12)
    w[5] = 0
    a = bpfast.Network([3, 4, 2], output_activation="identity", seed=0)
    b = a.clone()
    a.fit(X, Y, epochs=2, batch_size=12, sample_weight=w, seed=1)
    b.fit(np.delete(X, 5, 0), np.delete(Y, 5, 0), epochs=2, batch_size=11, seed=1)
    np.testing.assert_allclose(a.get_parameters(), b.get_parameters(), rtol=1e-12)


@pytest.mark.parametrize("monitor", ["loss", "val_loss"])
def test_early_stopping_stops_and_restores_the_best_epoch(monitor):
    sizes, hidden, out, loss, X, Y = first_problem()
    Xv, Yv = problem(sizes, out, seed=7)
    net = bpfast.Network(sizes, hidden, out, loss, seed=0)
    snapshots = []
    # A learning rate so large that the loss soon rises again.
    h = net.fit(X, Y, epochs=60, batch_size=24, lr=3.0, shuffle=False, early_stopping=True,
                patience=3, validation_data=(Xv, Yv) if monitor == "val_loss" else None,
                callback=lambda e, h: snapshots.append(net.get_parameters()))
    watched = h.val_loss if monitor == "val_loss" else h.loss
    best = int(np.argmin(watched))
    assert h.best_epoch == best and len(watched) == best + 4 < 60
    assert np.array_equal(net.get_parameters(), snapshots[best])


def test_integer_labels_are_one_hot_for_cross_entropy():
    X, Y = problem([5, 6, 4, 3], "softmax", n=12)
    labels = Y.argmax(axis=1)
    a = bpfast.Network([5, 6, 3], "relu", "softmax", "cross_entropy", seed=0)
    b = a.clone()
    a.fit(X, Y, epochs=2, batch_size=4, seed=1)
    b.fit(X, labels, epochs=2, batch_size=4, seed=1, validation_data=(X, labels))
    assert np.array_equal(a.get_parameters(), b.get_parameters())
    with pytest.raises(ValueError, match="class label 3"):
        b.fit(X, np.full(12, 3), epochs=1)


def test_optimizer_arguments_are_validated():
    net = bpfast.Network([2, 1])
    X, Y = np.ones((3, 2)), np.ones((3, 1))
    for kw, exc, message in [(dict(optimizer="lbfgs"), ValueError, "optimizer must be"),
                             (dict(optimizer=3), TypeError, "optimizer must be"),
                             (dict(optimizer="adam", betas=(0.9,)), TypeError, "betas"),
                             (dict(optimizer="adam", betas=(0.9, 1.5)), ValueError, "betas"),
                             (dict(optimizer="adam", eps=0), ValueError, "eps"),
                             (dict(optimizer="rprop", etas=(1.5, 1.2)), ValueError, "etas"),
                             (dict(optimizer="rprop", step_sizes=(1, 0.1)), ValueError, "step_sizes"),
                             (dict(clip_norm=-1), ValueError, "clip_norm"),
                             (dict(optimizer=optim.Adam(bpfast.Network([2, 1]))), ValueError,
                              "another Network")]:
        with pytest.raises(exc, match=message):
            net.fit(X, Y, **kw)


def test_an_optimizer_step_that_would_overflow_keeps_parameters_and_state():
    net = bpfast.Network([2, 3, 1], seed=0)
    opt = optim.SGD(net, lr=1e308, momentum=0.5)
    net.forward(np.ones((2, 2)))
    net.backward(np.full((2, 1), 1e3))
    before = net.get_parameters(), net._state.copy()
    with pytest.raises(FloatingPointError, match="left as they were"):
        opt.step()
    assert np.array_equal(net.get_parameters(), before[0])
    assert np.array_equal(net._state, before[1])


@pytest.mark.parametrize("optimizer", list(SETTINGS))
def test_random_networks_match_torch(optimizer):
    """hypothesis draws the shape, activations, loss, batch size and weight decay."""
    pytest.importorskip("torch")
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    outputs = [("identity", "mse"), ("sigmoid", "sse"), ("softmax", "cross_entropy"),
               ("sigmoid", "binary_cross_entropy"), ("tanh", "mse")]

    @hypothesis.settings(max_examples=15, deadline=None, derandomize=True)
    @hypothesis.given(sizes=st.lists(st.integers(1, 9), min_size=2, max_size=4),
                      hidden=st.sampled_from(["tanh", "sigmoid", "relu", "identity"]),
                      output=st.sampled_from(outputs), n=st.integers(4, 30),
                      batch=st.integers(1, 12), decay=st.sampled_from([0.0, 1e-3, 0.05]),
                      seed=st.integers(0, 2 ** 16))
    def check(sizes, hidden, output, n, batch, decay, seed):
        out, loss = output
        if out == "softmax" and sizes[-1] < 2:
            sizes = sizes[:-1] + [2]
        X, Y = problem(sizes, out if loss != "binary_cross_entropy" else "sigmoid", n=n,
                       seed=seed)
        if loss == "binary_cross_entropy":
            Y = (Y > 0.5).astype(float)
        settings = dict(SETTINGS[optimizer])
        if optimizer != "rprop":
            settings["weight_decay"] = decay
        bs = n if optimizer == "rprop" else batch
        net = bpfast.Network(sizes, hidden, out, loss, seed=seed)
        start = net.clone()
        net.fit(X, Y, epochs=3, batch_size=bs, shuffle=False, optimizer=optimizer, **settings)
        want = torch_fit(start, X, Y, optimizer, settings, 3, bs)
        np.testing.assert_allclose(net.get_parameters(), want, rtol=1e-10, atol=1e-11)

    check()


@pytest.mark.parametrize("folded", [False, True])
@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.8, 0.99), (0.5, 0.9999), (0.9, 0.9)])
def test_float32_adam_steps_are_float64_adams_to_rounding(betas, folded):
    """float32 moments decay by the betas rounded to float (b) with weights 1 - b: their
    bias corrections must be those of b too. With the double betas' corrections every
    early step was off by a fixed factor, sqrt((1 - beta2) / (1 - b2)): 1 + 6.4e-6 for
    0.999 (-8.3e-5 for 0.9999), a drift in one direction that no rounding makes, which
    kept scikit-learn's float32-vs-float64 test from passing. Here the float32 weights
    after 50 steps are the float64 ones to rounding: no common scale between them."""
    from bpfast.functional import adam_update
    n, steps, lr = 4096, 50, 1e-3
    grads = np.random.default_rng(0).normal(size=(steps, n))
    W64, m64, v64 = np.zeros(n), np.zeros(n), np.zeros(n)
    W32, m32, v32 = (np.zeros(n, np.float32) for _ in range(3))
    for t, g in enumerate(grads, 1):
        adam_update(W64, g, m64, v64, t, lr, betas, 1e-8, folded=folded)
        adam_update(W32, g.astype(np.float32), m32, v32, t, lr, betas, 1e-8, folded=folded)
    diff = W32 - W64
    scale = float(diff @ W64 / (W64 @ W64))     # W32 = (1 + scale) W64 + noise
    assert abs(scale) < 2e-7, scale             # was 6.5e-6, 4.5e-7, -8.3e-5 (and 4e-8)
    # each weight moved by about lr a step: 50 steps' rounding, not a drift
    assert np.abs(diff).max() < 1e-6 * steps * lr

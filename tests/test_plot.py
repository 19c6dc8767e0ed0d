"""History.plot(): a PNG of the loss curves and the learning rate."""
import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
from matplotlib import image  # noqa: E402

import bpfast  # noqa: E402
from bpfast import History  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def history():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 4))
    Y = np.tanh(X @ rng.normal(size=(4, 2)))
    net = bpfast.Network([4, 16, 2], activation="tanh", output_activation="identity", seed=0)
    return net.fit(X, Y, epochs=30, batch_size=8, lr=0.05, momentum=0.9, lr_schedule="step",
                   step_size=10, gamma=0.5, validation_data=(X[:16], Y[:16]))


def test_saves_a_png_of_the_expected_size(tmp_path, history, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)          # no display: drawn off-screen
    path = tmp_path / "history.png"
    ax = history.plot(path)
    with open(path, "rb") as f:
        assert f.read(8) == PNG_MAGIC
    pixels = image.imread(path)
    assert pixels.shape == (450, 800, 4)
    assert pixels[..., :3].std() > 0.05                    # not a blank canvas
    import matplotlib.pyplot as plt
    assert ax.figure not in [plt.figure(n) for n in plt.get_fignums()]   # off pyplot's list


def test_the_curves_are_the_history(tmp_path, history):
    ax = history.plot(tmp_path / "h.png")
    loss, val_loss = ax.get_lines()
    assert loss.get_label() == "loss" and val_loss.get_label() == "val_loss"
    assert list(loss.get_xdata()) == list(range(1, 31))
    np.testing.assert_array_equal(loss.get_ydata(), history.loss)
    np.testing.assert_array_equal(val_loss.get_ydata(), history.val_loss)
    (lr,) = ax.right_ax.get_lines()
    np.testing.assert_array_equal(lr.get_ydata(), history.lr)
    assert history.lr[0] == 0.05 and history.lr[-1] == 0.0125
    assert ax.get_yscale() == "log"
    assert ax.get_xlabel() == "epoch" and ax.right_ax.get_ylabel() == "learning rate"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["loss", "val_loss",
                                                                   "learning rate"]


def test_without_path_a_pyplot_figure(history):
    import matplotlib.pyplot as plt
    ax = history.plot()
    try:
        assert ax.figure in [plt.figure(n) for n in plt.get_fignums()]
        assert len(ax.get_lines()) == 2
    finally:
        plt.close(ax.figure)


def test_zero_loss_is_linear_and_no_validation(tmp_path):
    h = History(loss=[1.0, 0.5, 0.0], lr=[0.1, 0.1, 0.1], n_updates=3)
    ax = h.plot(tmp_path / "h.png")
    assert ax.get_yscale() == "linear" and len(ax.get_lines()) == 1


def test_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="no epochs"):
        History().plot(tmp_path / "h.png")
    with pytest.raises(TypeError, match="path must be"):
        History(loss=[1.0]).plot(3)
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r'pip install "bpfast\[peers\]"'):
        History(loss=[1.0]).plot(tmp_path / "h.png")
    assert not list(tmp_path.iterdir())

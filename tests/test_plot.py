"""pynn.utils.plot_history and the outputs of python -m pynn (model file, history.png).
The picture's exact size in pixels depends on matplotlib's rendering: that check is marked
slow (not in the default run)."""
import struct
import subprocess
import sys

import numpy as np
import pytest

import pynn
from pynn import layers


def png_size(path):
    data = open(path, "rb").read(32)
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def trained_history(epochs=6, monitor=False):
    (x, y), _ = pynn.datasets.digits.load_data()
    x = x.reshape(len(x), -1).astype(np.float32) / 16
    pynn.utils.set_random_seed(0)
    model = pynn.Sequential([layers.Input((64,)), layers.Dense(32, activation="tanh"),
                             layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy", "mae"])
    cbs = [pynn.callbacks.ActivationMonitor(x[:128])] if monitor else []
    return model.fit(x, y, epochs=epochs, validation_split=0.2, verbose=0, callbacks=cbs)


def test_plot_history_writes_a_png_with_a_panel_per_metric(tmp_path):
    pytest.importorskip("matplotlib")
    hist = trained_history(monitor=True)
    path = pynn.utils.plot_history(hist, tmp_path / "sub" / "h.png")
    assert str(path).endswith("h.png")
    w, h = png_size(path)
    assert w > 2 * h                                   # loss, accuracy, mae: one row of three
    w2, h2 = png_size(pynn.utils.plot_history(hist.history, tmp_path / "d.png", layers=True))
    assert h2 > h                                      # per-layer panels add rows
    from pynn.plotting import _panels
    assert _panels(hist.history) == [("loss", ["loss", "val_loss"]),
                                     ("accuracy", ["accuracy", "val_accuracy"]),
                                     ("mae", ["mae", "val_mae"])] + \
        [(k, [k]) for k in hist.history if "/" in k]


@pytest.mark.slow
def test_plot_history_picture_size_in_pixels(tmp_path):
    pytest.importorskip("matplotlib")
    path = pynn.utils.plot_history(trained_history(epochs=2), tmp_path / "h.png")
    assert png_size(path) == (1380, 340)


def test_plot_history_refuses_what_it_cannot_draw(tmp_path):
    pytest.importorskip("matplotlib")
    with pytest.raises(TypeError, match="History"):
        pynn.utils.plot_history([1, 2], tmp_path / "x.png")
    with pytest.raises(ValueError, match="nothing to plot"):
        pynn.utils.plot_history({}, tmp_path / "x.png")


def test_missing_matplotlib_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)      # import matplotlib -> ImportError
    with pytest.raises(ImportError, match=r'pip install "pynn\[plot\]"'):
        pynn.utils.plot_history({"loss": [1.0, 0.5]}, tmp_path / "x.png")


def test_main_job_saves_model_and_plot_and_says_where(tmp_path):
    pytest.importorskip("matplotlib")
    out = subprocess.run([sys.executable, "-m", "pynn", "--epochs", "3", "--verbose", "0",
                          "--output", str(tmp_path / "run")], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    model_path, plot_path = tmp_path / "run" / "digits_mlp.pynn", tmp_path / "run" / "history.png"
    assert f"Saved the trained model to {model_path}" in out.stdout
    assert f"Saved the plot of the training history to {plot_path}" in out.stdout
    png_size(plot_path)
    model = pynn.load_model(model_path)
    (_, _), (xs, ys) = pynn.datasets.digits.load_data()
    acc = model.evaluate(xs.reshape(-1, 64) / 16.0, ys, verbose=0)[1]
    line = [l for l in out.stdout.splitlines() if l.startswith("Test accuracy:")][0]
    assert acc == pytest.approx(float(line.split()[2]), abs=1e-4)


def test_main_job_without_matplotlib_says_how_to_get_the_plot(tmp_path):
    (tmp_path / "matplotlib.py").write_text("raise ImportError('no matplotlib here')\n")
    code = ("import sys; sys.path.insert(0, %r); from pynn.__main__ import main; "
            "sys.exit(main(['--epochs', '1', '--verbose', '0', '--output', 'o']))" % str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert 'pip install "pynn[plot]"' in out.stdout
    assert (tmp_path / "o" / "digits_mlp.pynn").exists() and not (tmp_path / "o" / "history.png").exists()


def test_help_documents_the_options():
    out = subprocess.run([sys.executable, "-m", "pynn", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0
    for option in ("--epochs", "--batch-size", "--backend", "--model", "--output", "mlp",
                   "history.png", "pynn.load_model"):
        assert option in out.stdout, option

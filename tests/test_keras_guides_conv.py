"""Real Keras code with SeparableConv2D, run with `import pynn as keras`: the Xception-style
`make_model` of the keras.io example "Image classification from scratch"
(https://keras.io/examples/vision/image_classification_from_scratch/, source
examples/vision/image_classification_from_scratch.py of github.com/keras-team/keras-io),
with its compile and fit calls; only the data loading is changed (small random images and
labels, as arrays, instead of the Cats vs Dogs download), and the epochs are 1.

The example's code is read from a keras-io checkout at run time (PYNN_KERAS_IO: the
repository root) and executed unchanged: its model-building function and its compile /
fit statements are picked out of the file by the Python parser, so the code that runs is
keras.io's own, not a copy of ours.
"""
import ast
import os

import numpy as np
import pytest

import pynn as keras
from pynn import layers

EXAMPLE = "examples/vision/image_classification_from_scratch.py"
ROOT = os.environ.get("PYNN_KERAS_IO")


def _statements(source):
    """make_model, `model = make_model(...)`, the callbacks, model.compile and model.fit,
    as the example writes them (plot_model is left out: it draws a picture)."""
    keep = []
    for node in ast.parse(source).body:
        text = ast.get_source_segment(source, node)
        if isinstance(node, ast.FunctionDef) and node.name == "make_model":
            keep.append(text)
        elif text.startswith(("model = make_model", "callbacks = [", "model.compile(",
                              "model.fit(")):
            keep.append(text)
    return keep


@pytest.mark.skipif(not ROOT, reason="PYNN_KERAS_IO (a keras-io checkout) not set")
def test_image_classification_from_scratch_xception_blocks(tmp_path, monkeypatch):
    with open(os.path.join(ROOT, EXAMPLE)) as f:
        code = _statements(f.read())
    assert len(code) == 5, "make_model, its call, the callbacks, compile and fit"
    monkeypatch.chdir(tmp_path)            # ModelCheckpoint("save_at_{epoch}.keras")
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(0)
    image_size = (32, 32)                  # the example's (180, 180), smaller
    x = rng.uniform(0, 255, size=(8,) + image_size + (3,)).astype(np.float32)
    y = rng.integers(0, 2, size=(8, 1)).astype(np.float32)
    scope = {"keras": keras, "layers": layers, "image_size": image_size, "epochs": 1,
             "train_ds": None, "val_ds": None}
    for stmt in code[:3]:
        exec(stmt, scope)
    model = scope["model"]
    kinds = [type(l).__name__ for l in model.layers]
    assert kinds.count("SeparableConv2D") == 9 and kinds.count("Add") == 4
    assert model.output_shape == (None, 1)
    for stmt in code[3:]:
        if stmt.startswith("model.fit("):
            # the data loading changed: arrays instead of the tf.data pipelines
            stmt = stmt.replace("train_ds,", "x, y, batch_size=4,").replace(
                "validation_data=val_ds", "validation_data=(x, y)").replace("epochs=epochs",
                                                                          "epochs=1")
            scope.update(x=x, y=y)
        exec(stmt, scope)
    history = model.history.history
    assert set(history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert np.isfinite(history["loss"][0])
    assert os.path.exists(tmp_path / "save_at_1.keras")
    back = keras.saving.load_model(str(tmp_path / "save_at_1.keras"))
    np.testing.assert_allclose(back.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)

"""model.export(path, format="onnx"): ONNX Runtime's outputs match model.predict to 1e-5
relative (batch 1 and 37: the batch dimension is dynamic), onnx.checker passes with full
checking, the names are the model's, and a layer with no ONNX form is refused by name
with no file left behind."""
import os
import subprocess
import sys

import numpy as np
import pytest

import pynn
from pynn import layers as L

onnx = pytest.importorskip("onnx", reason='the ONNX tests need onnx: pip install "pynn[onnx]"')
ort = pytest.importorskip("onnxruntime", reason="the ONNX tests need onnxruntime (pynn[test])")


def _mlp():
    return pynn.Sequential([L.Input((20,), name="features"), L.Dense(32, activation="relu"),
                            L.Dense(16, activation="tanh"), L.Dense(5, activation="softmax")],
                           name="mlp")


def _lenet():
    return pynn.Sequential([
        L.Input((28, 28, 1), name="image"),
        L.Rescaling(1 / 255.0),
        L.Conv2D(6, 5, padding="same", activation="relu"), L.AveragePooling2D(2),
        L.Conv2D(16, 5, activation="relu"), L.MaxPooling2D(2),
        L.Flatten(), L.Dense(120, activation="relu"), L.Dropout(0.3),
        L.Dense(84, activation="gelu"), L.Dense(10, activation="softmax")], name="lenet")


def _vgg():
    return pynn.Sequential([
        L.Input((16, 16, 3)),
        L.Conv2D(8, 3, padding="same", activation="relu"),
        L.Conv2D(8, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(16, 3, padding="same", activation="relu"),
        L.Conv2D(16, 3, padding="same", strides=2), L.LeakyReLU(0.1),
        L.MaxPooling2D(2, strides=1, padding="same"),
        L.Flatten(), L.Dense(32, activation="sigmoid"), L.Dense(4)], name="vgg")


def _resnet():
    inputs = L.Input((12, 12, 3), name="pixels")
    x = L.Normalization(mean=[0.5, 0.4, 0.3], variance=[0.2, 0.3, 0.4])(inputs)
    x = L.Conv2D(8, 3, padding="same")(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    for _ in range(2):
        y = L.Conv2D(8, 3, padding="same")(x)
        y = L.BatchNormalization()(y)
        y = L.Activation("relu")(y)
        y = L.Conv2D(8, 3, padding="same")(y)
        y = L.BatchNormalization()(y)
        x = L.ReLU()(L.Add()([x, y]))
    x = L.GlobalAveragePooling2D()(x)
    outputs = L.Dense(3, activation="softmax", name="probabilities")(x)
    return pynn.Model(inputs, outputs, name="resnet")


def _two_inputs():
    a = L.Input((6,), name="left")
    b = L.Input((4, 4, 2), name="right")
    inner = pynn.Sequential([L.Input((6,)), L.Dense(8, activation="relu")], name="inner")
    fa = inner(a)
    fb = L.Dense(8)(L.Reshape((16, 2))(b))
    fb = L.Flatten()(fb)
    fb = L.Dense(8)(fb)
    merged = L.Concatenate()([L.Subtract()([fa, fb]), L.Multiply()([fa, fb]),
                              L.Average()([fa, fb]), L.Maximum()([fa, fb]),
                              L.Minimum()([fa, fb])])
    out1 = L.Dense(2, name="score")(merged)
    out2 = L.Softmax(name="classes")(L.Dense(3)(merged))
    return pynn.Model([a, b], [out1, out2], name="two_inputs")


def _randomize(model, seed):
    """Non-trivial weights, BatchNormalization statistics included (a fresh layer's are
    zeros and ones, which would not test the inference form)."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0.3 if "variance" in v.path else 0.0, 0.3, v.shape)
                       .astype(np.float32) ** (2 if "variance" in v.path else 1) +
                       (0.5 if "variance" in v.path else 0.0) for v in model.weights])


def _inputs(model, batch, rng):
    return [rng.uniform(0, 255 if model.name == "lenet" else 1, (batch,) + tuple(t.shape[1:]))
            .astype(np.float32) for t in model.inputs]


def _close(onnx_out, pynn_out):
    np.testing.assert_allclose(onnx_out, pynn_out, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("build", [_mlp, _lenet, _vgg, _resnet, _two_inputs],
                         ids=["mlp", "lenet", "vgg", "resnet", "two_inputs"])
def test_onnx_runtime_matches_predict(build, tmp_path):
    pynn.utils.set_random_seed(1)
    model = build()
    _randomize(model, 2)
    path = tmp_path / f"{model.name}.onnx"
    model.export(path)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    graph_inputs = [i.name for i in proto.graph.input]
    assert graph_inputs == model.input_names
    assert [o.name for o in proto.graph.output] == model.output_names
    for i, t in zip(proto.graph.input, model.inputs):     # NHWC kept, batch dynamic
        dims = i.type.tensor_type.shape.dim
        assert dims[0].dim_param == "batch"
        assert [d.dim_value for d in dims[1:]] == list(t.shape[1:])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(3)
    for batch in (1, 37):
        xs = _inputs(model, batch, rng)
        expected = model.predict(xs if len(xs) > 1 else xs[0], verbose=0)
        got = session.run(None, dict(zip(graph_inputs, xs)))
        expected = expected if isinstance(expected, list) else [expected]
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            assert g.shape == e.shape
            _close(g, e)


def test_bn_after_training_uses_moving_statistics(tmp_path):
    pynn.utils.set_random_seed(0)
    model = pynn.Sequential([L.Input((5,)), L.Dense(7), L.BatchNormalization(),
                             L.Dropout(0.5), L.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(0)
    x = rng.normal(2, 3, (64, 5)).astype(np.float32)
    model.fit(x, rng.normal(size=(64, 2)).astype(np.float32), epochs=2, verbose=0)
    model.export(tmp_path / "bn.onnx")
    got = ort.InferenceSession(str(tmp_path / "bn.onnx")).run(None, {model.input_names[0]: x})[0]
    _close(got, model.predict(x, verbose=0))


def test_preprocessing_layers(tmp_path):
    pynn.utils.set_random_seed(0)
    norm = L.Normalization()
    rng = np.random.default_rng(5)
    data = rng.normal(3, 2, (50, 10, 12, 3)).astype(np.float32)
    norm.adapt(data)
    model = pynn.Sequential([L.Input((10, 12, 3)), norm, L.RandomFlip(), L.RandomRotation(0.1),
                             L.RandomZoom(0.1), L.RandomContrast(0.2),
                             L.CenterCrop(8, 8), L.Resizing(6, 6), L.Rescaling(2.0, -1.0),
                             L.Conv2D(2, 3), L.Flatten()])
    model.export(tmp_path / "pre.onnx")
    got = ort.InferenceSession(str(tmp_path / "pre.onnx")).run(None, {model.input_names[0]:
                                                                     data[:7]})[0]
    _close(got, model.predict(data[:7], verbose=0))


def test_unsupported_layer_is_named_and_no_file_is_left(tmp_path):
    class Twice(L.Dense):
        pass

    model = pynn.Sequential([L.Input((3,)), L.Dense(2), Twice(2, name="twice")])
    path = tmp_path / "m.onnx"
    with pytest.raises(ValueError, match="'twice' \\(Twice\\)"):
        model.export(path)
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match="format"):
        model.export(tmp_path / "m.pb", format="tf_saved_model")
    with pytest.raises(ValueError, match="opset"):
        _mlp().export(path, opset=3)
    assert os.listdir(tmp_path) == []


def test_opset_and_input_signature(tmp_path):
    model = _resnet()
    _randomize(model, 4)
    model.export(tmp_path / "m18.onnx", opset=18, input_signature=[(5, 12, 12, 3)])
    proto = onnx.load(str(tmp_path / "m18.onnx"))
    assert proto.opset_import[0].version == 18
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 5
    x = np.random.default_rng(0).random((5, 12, 12, 3), np.float32)
    got = ort.InferenceSession(str(tmp_path / "m18.onnx")).run(None, {"pixels": x})[0]
    _close(got, model.predict(x, verbose=0))
    with pytest.raises(ValueError, match="input_signature"):
        model.export(tmp_path / "bad.onnx", input_signature=[(None, 9, 12, 3)])
    # Keras 3's spelling of the opset, as a Keras script passes it
    model.export(tmp_path / "k17.onnx", format="onnx", opset_version=17)
    assert onnx.load(str(tmp_path / "k17.onnx")).opset_import[0].version == 17
    with pytest.raises(ValueError, match="not both"):
        model.export(tmp_path / "both.onnx", opset=17, opset_version=18)
    assert not (tmp_path / "both.onnx").exists()


def test_command_line_export(tmp_path):
    model = _mlp()
    _randomize(model, 6)
    model.save(tmp_path / "mlp.pynn")
    out = tmp_path / "mlp.onnx"
    run = subprocess.run([sys.executable, "-m", "pynn", "export", str(tmp_path / "mlp.pynn"),
                          str(out)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(
                             os.path.abspath(pynn.__file__)))})
    assert run.returncode == 0, run.stderr
    assert "mlp.onnx" in run.stdout
    x = np.random.default_rng(1).random((37, 20), np.float32)
    got = ort.InferenceSession(str(out)).run(None, {"features": x})[0]
    _close(got, model.predict(x, verbose=0))
    bad = subprocess.run([sys.executable, "-m", "pynn", "export", str(tmp_path / "none.pynn"),
                          str(tmp_path / "x.onnx")], capture_output=True, text=True)
    assert bad.returncode != 0 and "none.pynn" in bad.stderr
    assert not (tmp_path / "x.onnx").exists()

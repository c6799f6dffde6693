"""Convolution variants (engineer B, issue #16): Conv2D's dilation_rate, groups and
channels_first, DepthwiseConv2D, SeparableConv2D and Permute.

  * one SGD step of a small model around each variant, on cpu, numpy and cuda (the
    simulator), against torch autograd in float64 (tests/torch_mirror.py, which documents
    the Keras -> torch weight conversions); dilation, groups, channels_first, strides and
    same/valid padding are covered pairwise by the MODELS table;
  * bitwise the same weights on 1 and 2 OpenMP threads, and whole-epoch fit against op by op;
  * get_config round trips, .keras and pynn's own files;
  * refused arguments name the argument and the value, and leave the model unchanged;
  * the outputs equal Keras's own for the same weights (with the Keras venv, when present).
"""
import json
import os
import subprocess

import numpy as np
import pytest

import pynn
from pynn import layers as L

from conftest import assert_bitwise, assert_close

torch_mirror = pytest.importorskip("torch_mirror")
RTOL = 1e-4


# name -> (input shape without the batch axis, layers); pairwise over (dilation, groups /
# depthwise, data format, strides, padding)
MODELS = {
    "conv_dilated_grouped_same": ((7, 6, 4), lambda: [
        L.Conv2D(4, 3, padding="same", dilation_rate=2, groups=2, activation="relu")]),
    "conv_grouped_strided_valid_channels_first": ((6, 7, 5), lambda: [
        L.Conv2D(6, (2, 3), strides=2, groups=3, data_format="channels_first",
                 activation="tanh")]),
    "conv_dilated_valid_channels_first": ((2, 7, 6), lambda: [
        L.Conv2D(3, 2, dilation_rate=(2, 3), data_format="channels_first")]),
    "depthwise_strided_same": ((7, 6, 3), lambda: [
        L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2)]),
    "depthwise_dilated_valid_channels_first": ((3, 7, 6), lambda: [
        L.DepthwiseConv2D((2, 3), dilation_rate=(1, 2), data_format="channels_first",
                          activation="relu")]),
    "separable_dilated_same": ((6, 6, 3), lambda: [
        L.SeparableConv2D(4, 3, padding="same", dilation_rate=2, activation="relu")]),
    "separable_strided_valid_channels_first_dm2": ((2, 7, 6), lambda: [
        L.SeparableConv2D(3, 2, strides=2, depth_multiplier=2, data_format="channels_first",
                          use_bias=False)]),
    "channels_first_chain_and_permute": ((3, 6, 5), lambda: [
        L.Conv2D(4, 3, padding="same", data_format="channels_first", activation="relu"),
        L.DepthwiseConv2D(3, data_format="channels_first"),
        L.Permute((2, 3, 1))]),
}


def _model(name, seed=3):
    pynn.utils.set_random_seed(seed)
    shape, make = MODELS[name]
    return pynn.Sequential([L.Input(shape)] + make() + [L.Flatten(), L.Dense(2)]), shape


def _data(shape, n=3, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n,) + shape).astype(np.float32),
            rng.normal(size=(n, 2)).astype(np.float32))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_one_step_matches_torch_autograd(name, backend_name):
    model, shape = _model(name)
    w0 = {id(v): v.numpy().astype(np.float64) for v in model.weights}
    lr = 0.1
    model.compile(optimizer=pynn.optimizers.SGD(lr), loss="mse", backend=backend_name)
    x, y = _data(shape)
    losses = [o.loss for o in model.engine.losses.outputs]
    total, grads = torch_mirror.gradients(model, [x], [y], losses, [1.0])
    loss = model.train_on_batch(x, y)
    assert abs(loss - total) <= RTOL * abs(total), (loss, total)
    for v in model.trainable_weights:
        step = v.numpy().astype(np.float64) - w0[id(v)]
        want = -lr * grads[id(v)]
        assert np.abs(want).max() > 0, f"{v.path}: a gradient reaches every weight"
        slack = 4 * np.finfo(np.float32).eps * np.abs(w0[id(v)]).max()
        np.testing.assert_allclose(step, want, rtol=0,
                                   atol=RTOL * np.abs(want).max() + slack,
                                   err_msg=f"{name} {backend_name} {v.path}")


def test_predict_matches_torch_forward(backend_name):
    """Inference too (the predict plan has no backward ops), the whole chain at once."""
    import torch
    name = "channels_first_chain_and_permute"
    model, shape = _model(name)
    model.compile(loss="mse", backend=backend_name)
    x, _ = _data(shape, n=4)
    params = {id(v): torch.tensor(v.numpy().astype(np.float64)) for v in model.weights}
    want = torch_mirror.forward(model, [torch.tensor(x.astype(np.float64))], params,
                                training=False)[0].numpy()
    assert_close(model.predict(x, verbose=0), want, rtol=RTOL)


def _fit(name, threads, path):
    before = pynn.get_num_threads()
    pynn.set_num_threads(threads)
    try:
        model, shape = _model(name)
        model.compile(optimizer="adam", loss="mse", backend="cpu")
        model.engine.force_python = path == "op by op"
        x, y = _data(shape, n=37, seed=1)
        model.fit(x, y, batch_size=16, epochs=2, verbose=0)
        return model.get_weights()
    finally:
        pynn.set_num_threads(before)


@pytest.mark.parametrize("name", ["conv_dilated_grouped_same", "separable_dilated_same",
                                  "channels_first_chain_and_permute"])
def test_training_repeats_bitwise_on_threads_and_paths(name):
    """The dw partial sums are per fixed part of the batch, added in part order; dx and the
    forward write each element from one thread: 1 or 2 threads, whole-epoch C or op by op
    through the backend's methods, the same bits."""
    ref = _fit(name, 2, "whole epoch")
    for threads, path in [(1, "whole epoch"), (2, "op by op")]:
        for a, b in zip(_fit(name, threads, path), ref):
            assert_bitwise(a, b, err_msg=f"{name} {threads} threads {path}")


def test_channels_first_transposes_at_the_layer_edges():
    """NCHW -> NHWC before the op, back after; the backward transposes the output gradient
    only (the model's input needs none)."""
    model, shape = _model("conv_dilated_valid_channels_first")
    model.compile(loss="mse", optimizer="sgd", backend="numpy")
    names = [op.name for op in model.plan.ops]
    assert names[:3] == ["transpose", "conv2d", "transpose"]
    assert names.count("transpose") == 3
    conv = model.plan.ops[1]
    assert list(conv.ints[13:]) == [2, 3, 1]       # dilation_h, dilation_w, groups


def test_consecutive_channels_first_layers_do_not_transpose_back_and_forth():
    """Conv2D -> DepthwiseConv2D (both channels_first) -> Permute: the depthwise layer
    reads the convolution's NHWC output; forward: the input, the two NCHW outputs (the
    convolution's is left unread) and the Permute; backward: the Permute's and the depthwise
    output's only."""
    model, shape = _model("channels_first_chain_and_permute")
    model.compile(loss="mse", optimizer="sgd", backend="numpy")
    names = [op.name for op in model.plan.ops]
    first_backward = names.index("loss")
    assert names[:first_backward].count("transpose") == 4
    assert names[first_backward:].count("transpose") == 2


# ---- saving -----------------------------------------------------------------------------

def test_config_round_trip_and_files(tmp_path):
    model, shape = _model("channels_first_chain_and_permute")
    extra = pynn.Sequential([L.Input((6, 6, 3)),
                             L.SeparableConv2D(4, 3, depth_multiplier=2, dilation_rate=2,
                                               padding="same"),
                             L.DepthwiseConv2D(2, strides=2, use_bias=False),
                             L.Conv2D(4, 3, groups=2, padding="same"), L.Flatten(),
                             L.Dense(2)])
    for m, shp in ((model, shape), (extra, (6, 6, 3))):
        x, _ = _data(shp)
        m.compile(loss="mse", backend="cpu")
        want = m.predict(x, verbose=0)
        for layer in m.layers:
            config = json.loads(json.dumps(layer.get_config()))
            again = type(layer).from_config(config)
            assert again.get_config() == config
        for fname in ("m.keras", "m.pynn"):
            m.save(str(tmp_path / fname))
            back = pynn.load_model(str(tmp_path / fname))
            assert [l.get_config() for l in back.layers] == [l.get_config() for l in m.layers]
            assert_bitwise(back.predict(x, verbose=0), want, err_msg=fname)


def test_keras_config_keys():
    c = L.DepthwiseConv2D(3).get_config()
    for key in ("depth_multiplier", "kernel_size", "strides", "padding", "data_format",
                "dilation_rate", "activation", "use_bias", "depthwise_initializer",
                "bias_initializer"):
        assert key in c, key
    s = L.SeparableConv2D(2, 3).get_config()
    assert {"filters", "pointwise_initializer", "depth_multiplier"} <= set(s)
    assert L.Conv2D(4, 3, groups=2, dilation_rate=2).get_config()["groups"] == 2
    assert L.Conv2D(4, 3, dilation_rate=2).get_config()["dilation_rate"] == [2, 2]
    assert L.Permute((2, 1)).get_config()["dims"] == [2, 1]


# ---- refused arguments ------------------------------------------------------------------

@pytest.mark.parametrize("make, words", [
    (lambda: L.Conv2D(4, 3, strides=2, dilation_rate=2), ["strides=(2, 2)",
                                                         "dilation_rate=(2, 2)"]),
    (lambda: L.Conv2D(5, 3, groups=2), ["groups=2", "filters=5", "groups that do not divide"]),
    (lambda: L.Conv2D(4, 3, groups=0), ["groups", "0"]),
    (lambda: L.Conv2D(4, 3, data_format="nchw"), ["data_format", "nchw"]),
    (lambda: L.Conv2D(4, 3, dilation_rate=(1, 0)), ["dilation_rate", "(1, 0)"]),
    (lambda: L.DepthwiseConv2D(3, depth_multiplier=0), ["depth_multiplier", "0"]),
    (lambda: L.DepthwiseConv2D(3, strides=2, dilation_rate=2), ["strides", "dilation_rate"]),
    (lambda: L.DepthwiseConv2D(3, depthwise_regularizer="l3"), ["depthwise_regularizer", "l3"]),
    (lambda: L.SeparableConv2D(0, 3), ["filters", "0"]),
    (lambda: L.SeparableConv2D(2, 3, pointwise_constraint="non_negative"),
     ["pointwise_constraint", "non_negative"]),
    (lambda: L.SeparableConv2D(2, 3, padding="causal"), ["padding", "causal"]),
    (lambda: L.Permute((1, 3)), ["dims", "(1, 3)"]),
    (lambda: L.Permute("12"), ["dims", "12"]),
])
def test_bad_arguments_name_the_argument_and_value(make, words):
    with pytest.raises((ValueError, TypeError)) as info:
        make()
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_groups_that_do_not_divide_the_input_channels_leave_the_model_unchanged():
    inputs = L.Input((5, 5, 3))
    layer = L.Conv2D(4, 3, groups=2)
    with pytest.raises(ValueError, match=r"groups that do not divide the channels.*groups=2.*3 "
                                         r"channels"):
        layer(inputs)
    assert not layer.built and layer.weights == []
    with pytest.raises(ValueError, match="expected inputs of rank 4"):
        L.Permute((2, 1, 3))(L.Input((4, 4)))


# ---- Keras itself -----------------------------------------------------------------------

KERAS_PYTHON = os.environ.get("PYNN_KERAS_PYTHON")


@pytest.mark.skipif(not KERAS_PYTHON, reason="PYNN_KERAS_PYTHON (a Python with Keras 3) not set")
def test_outputs_equal_keras_for_the_same_weights(tmp_path):
    """A .keras file of pynn's, loaded by Keras 3: Keras's predict equals pynn's; and a
    .keras file Keras 3 writes, loaded by pynn: pynn's predict equals Keras's."""
    model, shape = _model("channels_first_chain_and_permute")
    extra = [L.SeparableConv2D(4, 3, depth_multiplier=2, dilation_rate=2, padding="same"),
             L.Conv2D(4, 3, groups=2, padding="same", dilation_rate=(1, 2)),
             L.DepthwiseConv2D(2, strides=2, use_bias=False)]
    pynn.utils.set_random_seed(1)
    m2 = pynn.Sequential([L.Input((6, 6, 4))] + extra + [L.Flatten(), L.Dense(2)])
    script = "import numpy as np, keras\n"     # one Keras process for both models
    cases = []
    for i, (m, shp) in enumerate(((model, shape), (m2, (6, 6, 4)))):
        x, _ = _data(shp)
        m.compile(loss="mse", backend="cpu")
        path = tmp_path / f"m{i}.keras"
        m.save(str(path))
        np.save(tmp_path / f"x{i}.npy", x)
        script += (f"m = keras.saving.load_model(r'{path}')\n"
                   f"np.save(r'{tmp_path / f'k{i}.npy'}', "
                   f"m.predict(np.load(r'{tmp_path / f'x{i}.npy'}'), verbose=0))\n")
        cases.append((m, x, tmp_path / f"k{i}.npy"))
    # and the other way: a model Keras builds and saves, read by pynn
    x3, _ = _data((6, 7, 4))
    np.save(tmp_path / "x3.npy", x3)
    script += f"""
from keras import layers as L
inp = keras.Input((6, 7, 4))
x = L.Conv2D(4, 3, padding="same", dilation_rate=2, groups=2, activation="relu")(inp)
x = L.DepthwiseConv2D(3, strides=2, depth_multiplier=2, padding="same")(x)
x = L.SeparableConv2D(5, 2, depth_multiplier=2, use_bias=False)(x)
x = L.Permute((3, 1, 2))(x)
x = L.Conv2D(3, 2, data_format="channels_first")(x)
m = keras.Model(inp, L.Dense(2)(L.Flatten()(x)))
np.save(r'{tmp_path / "k3.npy"}', m.predict(np.load(r'{tmp_path / "x3.npy"}'), verbose=0))
m.save(r'{tmp_path / "k3.keras"}')
"""
    subprocess.run([KERAS_PYTHON, "-c", script], check=True, capture_output=True,
                   env={**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"})
    for m, x, keras_out in cases:
        assert_close(m.predict(x, verbose=0), np.load(keras_out), rtol=1e-4)
    from_keras = pynn.load_model(str(tmp_path / "k3.keras"))
    assert [type(l).__name__ for l in from_keras.layers][1:6] == [
        "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Permute", "Conv2D"]
    assert_close(from_keras.predict(x3, verbose=0), np.load(tmp_path / "k3.npy"), rtol=1e-4)

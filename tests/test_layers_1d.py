"""Engineer D's part of #16: Conv1D, MaxPooling1D, AveragePooling1D, GlobalMaxPooling1D/2D,
GlobalAveragePooling1D (with Keras's masked mean) and RepeatVector.

  kernels        the three new op families (global max pooling, masked mean, RepeatVector)
                 forward and backward on every backend against torch autograd (float64), on
                 awkward shapes; ties go to the first maximum (deterministic routing);
  torch step     one SGD step of small models around each layer on every backend against
                 torch autograd (tests/torch_mirror.py): Conv1D against F.conv1d with the
                 kernel (K, C, F) -> (F, C, K), causal padding included; the poolings
                 against F.max_pool1d / avg_pool1d; the global poolings against amax / mean;
  mask           GlobalAveragePooling1D given a plan mask: the masked_mean op, its step
                 against torch, in C (whole epoch) and op by op;
  determinism    whole-epoch C, step by step and op by op, 1 and 2 threads: bitwise equal;
  saving         pynn's format and .keras round trips, and the ONNX graph against predict;
  bad arguments  ValueError / TypeError naming the argument and the value, model unchanged;
  dilation, groups  (run once Conv2D takes them: engineer B's part of #16).
"""
import json

import numpy as np
import pytest

import pynn
from pynn import backend as backends
from pynn import layers as L
from pynn.models import plan as plan_module

from conftest import assert_bitwise, assert_close

torch = pytest.importorskip("torch")
torch_mirror = pytest.importorskip("torch_mirror")
F = torch.nn.functional

RTOL = 2e-4          # tests/test_graph_parity.py's bound for a step through a few layers


# ---- kernels ------------------------------------------------------------------------------------

def _run(be, method, *arrays, out_shape):
    dev = [be.from_host(np.ascontiguousarray(a, np.float32)) for a in arrays]
    out = be.zeros(out_shape)
    getattr(be, method)(*dev, out)
    return be.to_host(out)


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 7, 5), (2, 1, 4), (4, 13, 1)])
def test_global_maxpool_kernel_matches_torch(backend_name, shape):
    be = backends.get(backend_name)
    rng = np.random.default_rng(sum(shape))
    x = np.round(rng.normal(size=shape) * 2) / 2        # quantised: ties are common
    dy = rng.normal(size=(shape[0], shape[2]))
    y = _run(be, "global_maxpool_forward", x, out_shape=(shape[0], shape[2]))
    assert_bitwise(y, x.max(axis=1).astype(np.float32))
    dx = _run(be, "global_maxpool_backward", x, dy, out_shape=shape)
    # torch's max(dim) returns the index of the first maximum: the gradient goes there only
    xt = torch.tensor(x, requires_grad=True)
    xt.max(dim=1).values.backward(torch.tensor(dy))
    first = np.zeros(shape)
    idx = x.argmax(axis=1)
    for n in range(shape[0]):
        for c in range(shape[2]):
            first[n, idx[n, c], c] = dy[n, c]
    assert_bitwise(dx, first.astype(np.float32))
    assert_close(dx.sum(axis=1), xt.grad.numpy().sum(axis=1))


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 6, 5), (2, 9, 3)])
def test_masked_mean_kernel_matches_torch(backend_name, shape):
    be = backends.get(backend_name)
    n, s, c = shape
    rng = np.random.default_rng(s)
    x = rng.normal(size=shape)
    mask = (rng.random((n, s)) < 0.6).astype(np.float64)
    mask[:, 0] = 1.0                                    # at least one valid step
    if n > 1:
        mask[1] = 1.0                                   # a sample with no step masked
    dy = rng.normal(size=(n, c))
    xt = torch.tensor(x, requires_grad=True)
    mt = torch.tensor(mask)[:, :, None]
    yt = (xt * mt).sum(dim=1) / mt.sum(dim=1)
    yt.backward(torch.tensor(dy))
    y = _run(be, "masked_mean_forward", x, mask, out_shape=(n, c))
    assert_close(y, yt.detach().numpy())
    dx = _run(be, "masked_mean_backward", dy, mask, out_shape=shape)
    assert_close(dx, xt.grad.numpy())
    assert np.all(dx[np.broadcast_to(mask[:, :, None] == 0, shape)] == 0)


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 4, 5), (2, 7, 1)])
def test_repeat_vector_kernel_matches_torch(backend_name, shape):
    be = backends.get(backend_name)
    n, times, f = shape
    rng = np.random.default_rng(times)
    x = rng.normal(size=(n, f))
    dy = rng.normal(size=shape)
    y = _run(be, "repeat_vector_forward", x, out_shape=shape)
    assert_bitwise(y, np.repeat(x[:, None, :], times, axis=1).astype(np.float32))
    dx = _run(be, "repeat_vector_backward", dy, out_shape=(n, f))
    xt = torch.tensor(x, requires_grad=True)
    xt[:, None, :].expand(-1, times, -1).backward(torch.tensor(dy))
    assert_close(dx, xt.grad.numpy())
    # the fixed order: copy 0, then + copy 1, + copy 2, ... in float32
    want = dy[:, 0].astype(np.float32)
    for t in range(1, times):
        want = want + dy[:, t].astype(np.float32)
    assert_bitwise(dx, want)


# ---- one training step against torch autograd -----------------------------------------------

def _causal_convs():
    inp = pynn.Input((7, 3))
    x = L.Conv1D(4, 3, padding="causal", activation="relu")(inp)
    x = L.Conv1D(3, 2, strides=2, padding="causal")(x)
    x = L.Conv1D(2, 2, strides=2, padding="same", activation="tanh", use_bias=False)(x)
    x = L.MaxPooling1D(2, padding="same")(x)
    return pynn.Model(inp, L.Dense(2)(L.Flatten()(x))), (7, 3), 2


def _poolings():
    inp = pynn.Input((8, 3))
    x = L.Dense(3, activation="tanh")(inp)
    a = L.AveragePooling1D(3, strides=2, padding="same")(x)
    a = L.MaxPooling1D(2, strides=1)(a)
    b = L.AveragePooling1D(2)(L.Conv1D(3, 1)(x))
    b = L.MaxPooling1D(3, strides=1, padding="same")(b)
    x = L.Concatenate(axis=1)([a, b])
    x = L.Add()([L.GlobalMaxPooling1D()(x), L.GlobalAveragePooling1D()(x)])
    return pynn.Model(inp, L.Dense(2)(x)), (8, 3), 2


def _globals_and_repeat():
    inp = pynn.Input((4, 3, 2))
    x = L.Conv2D(3, 2, padding="same", activation="relu")(inp)
    g = L.GlobalMaxPooling2D(keepdims=True)(x)
    x = L.Flatten()(g)
    x = L.RepeatVector(5)(x)
    x = L.Conv1D(4, 2, activation="tanh")(x)
    a = L.Flatten()(L.GlobalMaxPooling1D(keepdims=True)(x))
    b = L.Flatten()(L.GlobalAveragePooling1D(keepdims=True)(x))
    x = L.Concatenate()([a, b, L.GlobalMaxPooling2D()(inp)])
    return pynn.Model(inp, L.Dense(1)(x)), (4, 3, 2), 1


MODELS = {"causal_convs": _causal_convs, "poolings": _poolings,
          "globals_and_repeat": _globals_and_repeat}


def _data(shape, outputs, n=4, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n,) + shape).astype(np.float32),
            rng.normal(size=(n, outputs)).astype(np.float32))


def _step_against_torch(model, x, y, backend_name, lr=0.1):
    w0 = {id(v): v.numpy().astype(np.float64) for v in model.weights}
    model.compile(optimizer=pynn.optimizers.SGD(lr), loss="mse", backend=backend_name)
    losses = [o.loss for o in model.engine.losses.outputs]
    total, grads = torch_mirror.gradients(model, [x], [y], losses, [1.0])
    loss = model.train_on_batch(x, y)
    assert abs(loss - total) <= RTOL * abs(total), (loss, total)
    for v in model.trainable_weights:
        step = v.numpy().astype(np.float64) - w0[id(v)]
        want = -lr * grads[id(v)]
        assert np.abs(want).max() > 0, f"{v.path}: the model must move every weight"
        slack = 4 * np.finfo(np.float32).eps * np.abs(w0[id(v)]).max()
        np.testing.assert_allclose(step, want, rtol=0,
                                   atol=RTOL * np.abs(want).max() + slack,
                                   err_msg=f"{backend_name} {v.path}")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_one_step_matches_torch(name, backend_name):
    pynn.utils.set_random_seed(5)
    model, shape, outputs = MODELS[name]()
    x, y = _data(shape, outputs)
    _step_against_torch(model, x, y, backend_name)


def test_causal_conv1d_sees_no_future_step():
    """Keras's causal rule: output step t depends on inputs 0..t only."""
    pynn.utils.set_random_seed(0)
    layer = L.Conv1D(2, 3, padding="causal")
    x = np.random.default_rng(0).normal(size=(1, 6, 2)).astype(np.float32)
    y = layer(x)
    later = x.copy()
    later[:, 4:] += 5.0
    y2 = layer(later)
    assert y.shape == (1, 6, 2)
    assert_bitwise(y[:, :4], y2[:, :4])
    assert not np.allclose(y[:, 4:], y2[:, 4:])
    assert L.Conv1D(2, 3, strides=2, padding="causal").compute_output_shape((None, 7, 2)) == \
        (None, 4, 2)


# ---- the mask: GlobalAveragePooling1D's masked mean ------------------------------------------

class _MaskedTensor(plan_module.Tensor):
    __slots__ = ("mask",)


class _AttachMask(L.Layer):
    """Test helper until the mask interface lands (engineer G): [x, mask] -> x carrying
    mask, as Embedding(mask_zero=True) will hand it on."""
    _single_input = False

    def check_input_shape(self, input_shape):
        pass

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def plan_forward(self, b, inputs, training, logits=False):
        x, mask = inputs
        out = _MaskedTensor(x.buf, x.shape, x.requires_grad)
        out.mask = mask
        b.differentiate([x], [out], lambda b, dys, need: [dys[0]])
        return out


def _masked_model():
    seq, mask = pynn.Input((6, 3)), pynn.Input((6,))
    h = L.Dense(4, activation="tanh")(seq)
    pooled = L.GlobalAveragePooling1D()(_AttachMask()([h, mask]))
    return pynn.Model([seq, mask], L.Dense(2)(pooled))


def _masked_data(n=5):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(n, 6, 3)).astype(np.float32)
    lengths = np.array([6, 1, 3, 5, 2][:n])
    mask = (np.arange(6)[None, :] < lengths[:, None]).astype(np.float32)
    return x, mask, rng.normal(size=(n, 2)).astype(np.float32)


def _torch_masked_step(model, x, mask, y):
    params = {id(v): torch.tensor(v.numpy().astype(np.float64), requires_grad=True)
              for v in model.weights}
    dense, head = [la for la in model.layers if isinstance(la, L.Dense)]
    k1, b1 = (params[id(v)] for v in dense.weights)
    k2, b2 = (params[id(v)] for v in head.weights)
    h = torch.tanh(torch.tensor(x, dtype=torch.float64) @ k1 + b1)
    m = torch.tensor(mask, dtype=torch.float64)[:, :, None]
    out = ((h * m).sum(dim=1) / m.sum(dim=1)) @ k2 + b2
    loss = ((out - torch.tensor(y, dtype=torch.float64)) ** 2).mean()
    loss.backward()
    return float(loss.detach()), {k: p.grad.numpy() for k, p in params.items()}


def test_masked_global_average_pooling_step_matches_torch(backend_name):
    pynn.utils.set_random_seed(2)
    model = _masked_model()
    x, mask, y = _masked_data()
    model.compile(optimizer=pynn.optimizers.SGD(0.1), loss="mse", backend=backend_name)
    plan = model.plan
    assert plan.count("masked_mean") == plan.count("masked_mean_backward") == 1
    assert plan.count("global_avgpool2d") == 0
    w0 = {id(v): v.numpy().astype(np.float64) for v in model.weights}
    total, grads = _torch_masked_step(model, x, mask, y)
    loss = model.train_on_batch([x, mask], y)
    assert abs(loss - total) <= RTOL * abs(total), (loss, total)
    for v in model.trainable_weights:
        want = -0.1 * grads[id(v)]
        np.testing.assert_allclose(v.numpy() - w0[id(v)], want, rtol=0,
                                   atol=RTOL * np.abs(want).max() + 1e-7, err_msg=v.path)
    # the masked steps change nothing: predictions ignore what lies under the mask
    noisy = x + (1 - mask)[:, :, None] * 100.0
    assert_close(model.predict([noisy, mask], verbose=0), model.predict([x, mask], verbose=0))


def test_masked_mean_op_is_in_the_plan_and_whole_epoch_c_equals_op_by_op():
    x, mask, y = _masked_data()
    weights = []
    for force_python in (False, True):
        pynn.utils.set_random_seed(2)
        model = _masked_model()
        model.compile(optimizer=pynn.optimizers.SGD(0.1), loss="mse", backend="cpu")
        model.engine.force_python = force_python
        model.fit([x, mask], y, batch_size=2, epochs=2, shuffle=False, verbose=0)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        assert_bitwise(a, b)


# ---- determinism: paths and thread counts -----------------------------------------------------

def test_every_path_and_thread_count_gives_bitwise_the_same_weights():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 12, 3)).astype(np.float32)
    y = rng.normal(size=(40, 2)).astype(np.float32)

    class EveryBatch(pynn.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            pass

    runs = []
    before = pynn.get_num_threads()
    try:
        for threads, path in [(2, "epoch"), (2, "step"), (2, "ops"), (1, "epoch")]:
            pynn.set_num_threads(threads)
            pynn.utils.set_random_seed(3)
            inp = pynn.Input((12, 3))
            h = L.Conv1D(8, 3, padding="causal", activation="relu")(inp)
            h = L.MaxPooling1D(2)(h)
            h = L.AveragePooling1D(2, padding="same")(h)
            a = L.GlobalMaxPooling1D()(h)
            b = L.GlobalAveragePooling1D()(h)
            h = L.RepeatVector(4)(L.Add()([a, b]))
            out = L.Dense(2)(L.Flatten()(h))
            model = pynn.Model(inp, out)
            model.compile(optimizer="adam", loss="mse", backend="cpu")
            model.engine.force_python = path == "ops"
            model.fit(x, y, batch_size=8, epochs=2, verbose=0,
                      callbacks=[EveryBatch()] if path == "step" else [])
            runs.append(model.get_weights())
    finally:
        pynn.set_num_threads(before)
    for run in runs[1:]:
        for a, b in zip(run, runs[0]):
            assert_bitwise(a, b)


# ---- saving -----------------------------------------------------------------------------------

def _saving_model():
    pynn.utils.set_random_seed(8)
    inp = pynn.Input((9, 2), name="series")
    h = L.Conv1D(4, 3, padding="causal", activation="relu")(inp)
    h = L.MaxPooling1D(2, padding="same")(h)
    h = L.Conv1D(4, 2, strides=2, padding="same")(h)
    h = L.AveragePooling1D(2, strides=1)(h)
    a = L.GlobalMaxPooling1D()(h)
    b = L.GlobalAveragePooling1D(keepdims=True)(h)
    h = L.Concatenate()([a, L.Flatten()(b)])
    h = L.RepeatVector(2)(h)
    h = L.Conv1D(3, 2, use_bias=False)(h)
    out = L.Dense(2)(L.Flatten()(h))
    model = pynn.Model(inp, out, name="seq_net")
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 9, 2)).astype(np.float32)
    model.fit(x, rng.normal(size=(16, 2)).astype(np.float32), epochs=1, batch_size=4, verbose=0)
    return model, x


@pytest.mark.parametrize("suffix", ["m.pynn", "m.keras"])
def test_save_and_load_round_trip(suffix, tmp_path):
    if suffix.endswith(".keras"):
        pytest.importorskip("h5py")
    model, x = _saving_model()
    model.save(tmp_path / suffix)
    loaded = pynn.load_model(tmp_path / suffix)
    assert [type(la).__name__ for la in loaded.layers] == \
        [type(la).__name__ for la in model.layers]
    for a, b in zip(loaded.layers, model.layers):
        assert a.get_config() == b.get_config()
    assert_bitwise(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    conv = [la for la in loaded.layers if isinstance(la, L.Conv1D)][0]
    assert conv.kernel.shape == (3, 2, 4) and conv.padding == "causal"


def test_keras_configs_of_the_layers():
    """get_config keys and values as Keras 3 writes them (kernel_size etc. as 1-tuples)."""
    conv = L.Conv1D(4, 3, padding="causal", name="c").get_config()
    assert conv["kernel_size"] == [3] and conv["strides"] == [1] and conv["dilation_rate"] == [1]
    assert conv["padding"] == "causal" and conv["groups"] == 1
    assert conv["data_format"] == "channels_last"
    pool = L.MaxPooling1D().get_config()
    assert pool["pool_size"] == [2] and pool["strides"] == [2] and pool["padding"] == "valid"
    assert L.AveragePooling1D(3, strides=1).get_config()["strides"] == [1]
    for cls in (L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalAveragePooling1D):
        config = cls(keepdims=True).get_config()
        assert config["keepdims"] is True and config["data_format"] == "channels_last"
        json.dumps(config)
    assert L.RepeatVector(3).get_config()["n"] == 3
    assert L.GlobalAveragePooling1D().supports_masking
    assert L.GlobalAveragePooling1D().compute_mask(None, np.ones((2, 3))) is None


@pytest.mark.parametrize("opset", [13, 17, 18])
def test_onnx_export_matches_predict(opset, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model, x = _saving_model()
    inp = pynn.Input((5, 4, 2))
    g = L.GlobalMaxPooling2D(keepdims=True)(inp)
    image_model = pynn.Model(inp, L.Dense(2)(L.Flatten()(g)))
    rng = np.random.default_rng(1)
    for m, xs in ((model, x), (image_model, rng.normal(size=(3, 5, 4, 2)).astype(np.float32))):
        path = tmp_path / f"{m.name}.onnx"
        m.export(path, opset=opset)
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto, full_check=True)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for batch in (1, len(xs)):
            got = session.run(None, {proto.graph.input[0].name: xs[:batch]})[0]
            np.testing.assert_allclose(got, m.predict(xs[:batch], verbose=0), rtol=1e-5,
                                       atol=1e-6)
    ops = {node.op_type for node in onnx.load(str(tmp_path / "seq_net.onnx")).graph.node}
    assert {"Conv", "MaxPool", "AveragePool", "ReduceMax", "ReduceMean", "Tile"} <= ops


# ---- bad arguments ------------------------------------------------------------------------------

@pytest.mark.parametrize("make, exc, words", [
    (lambda: L.Conv2D(2, 3, padding="causal"), ValueError, ["padding", "'causal'"]),
    (lambda: L.MaxPooling2D(padding="causal"), ValueError, ["padding", "'causal'"]),
    (lambda: L.MaxPooling1D(padding="causal"), ValueError, ["padding", "'causal'"]),
    (lambda: L.AveragePooling1D(2, padding="causal"), ValueError, ["padding", "'causal'"]),
    (lambda: L.Conv1D(2, 3, padding="full"), ValueError, ["padding", "'full'"]),
    (lambda: L.Conv1D(2, (3, 3)), ValueError, ["kernel_size", "(3, 3)"]),
    (lambda: L.Conv1D(2, 0), ValueError, ["kernel_size", "0"]),
    (lambda: L.Conv1D(0, 3), ValueError, ["filters", "0"]),
    (lambda: L.Conv1D(2, 3, strides=-1), ValueError, ["strides", "-1"]),
    (lambda: L.Conv1D(2, 3, data_format="channels_first"), ValueError,
     ["data_format", "channels_first"]),
    (lambda: L.MaxPooling1D(0), ValueError, ["pool_size", "0"]),
    (lambda: L.MaxPooling1D(2, strides=2.5), ValueError, ["strides", "2.5"]),
    (lambda: L.GlobalMaxPooling1D(keepdims="yes"), ValueError, ["keepdims", "'yes'"]),
    (lambda: L.GlobalMaxPooling2D(data_format="channels_first"), ValueError,
     ["data_format", "channels_first"]),
    (lambda: L.RepeatVector(0), ValueError, ["n", "0"]),
    (lambda: L.RepeatVector(-2), ValueError, ["n", "-2"]),
    (lambda: L.RepeatVector(2.5), TypeError, ["n", "2.5"]),
])
def test_bad_arguments_are_refused_naming_them(make, exc, words):
    with pytest.raises(exc) as info:
        make()
    for word in words:
        assert word in str(info.value), (word, str(info.value))


@pytest.mark.parametrize("make, shape, words", [
    (lambda: L.MaxPooling1D(5), (3, 2), ["pool_size=5", "length 3"]),
    (lambda: L.AveragePooling1D(4, strides=1), (3, 2), ["pool_size=4", "length 3"]),
    (lambda: L.Conv1D(2, 5), (3, 2), ["kernel_size=5", "length 3"]),
    (lambda: L.Conv1D(2, 3), (4, 3, 2), ["ndim=3", "(None, 4, 3, 2)"]),
    (lambda: L.GlobalMaxPooling1D(), (4,), ["ndim=3"]),
    (lambda: L.GlobalMaxPooling2D(), (4, 2), ["ndim=4"]),
    (lambda: L.GlobalAveragePooling1D(), (4, 3, 2), ["ndim=3"]),
    (lambda: L.RepeatVector(3), (4, 2), ["ndim=2"]),
])
def test_inputs_a_layer_cannot_take_leave_the_model_unchanged(make, shape, words):
    layer = make()
    inp = pynn.Input(shape)
    model = pynn.Sequential([pynn.Input(shape), L.Dense(shape[-1])])
    layers_before = list(model.layers)
    with pytest.raises(ValueError) as info:
        layer(inp)
    for word in words:
        assert word in str(info.value), (word, str(info.value))
    assert not layer.built and layer.weights == [] and not layer.inbound_nodes
    with pytest.raises(ValueError):
        model.add(layer)
    assert model.layers == layers_before


def test_a_refused_conv1d_call_keeps_the_built_layer():
    layer = L.Conv1D(2, 3)
    layer(pynn.Input((6, 4)))
    kernel = layer.get_weights()[0]
    with pytest.raises(ValueError, match="axis -1"):
        layer(pynn.Input((6, 5)))
    assert_bitwise(layer.get_weights()[0], kernel)
    assert len(layer.inbound_nodes) == 1


# ---- dilation and groups (through the 2-D convolution: engineer B's part) ---------------------

@pytest.mark.parametrize("padding", ["valid", "same", "causal"])
def test_dilated_conv1d_step_matches_torch(padding, backend_name):
    pynn.utils.set_random_seed(6)
    inp = pynn.Input((9, 2))
    x = L.Conv1D(3, 3, dilation_rate=2, padding=padding, activation="tanh")(inp)
    model = pynn.Model(inp, L.Dense(2)(L.Flatten()(x)))
    assert model.layers[1].kernel.shape == (3, 2, 3)
    x, y = _data((9, 2), 2)
    _step_against_torch(model, x, y, backend_name)


def test_grouped_conv1d_step_matches_torch(backend_name):
    pynn.utils.set_random_seed(6)
    inp = pynn.Input((7, 4))
    x = L.Conv1D(6, 2, groups=2, padding="causal")(inp)
    model = pynn.Model(inp, L.Dense(2)(L.Flatten()(x)))
    assert model.layers[1].kernel.shape == (2, 2, 6)
    x, y = _data((7, 4), 2)
    _step_against_torch(model, x, y, backend_name)


def test_dilation_and_groups_configs_and_shapes():
    layer = L.Conv1D(4, 3, dilation_rate=2, groups=2, padding="causal")
    assert layer.compute_output_shape((None, 10, 4)) == (None, 10, 4)
    assert L.Conv1D(4, 3, dilation_rate=3).compute_output_shape((None, 10, 2)) == (None, 4, 4)
    config = layer.get_config()
    assert config["dilation_rate"] == [2] and config["groups"] == 2
    assert L.Conv1D.from_config(config).get_config() == config


# ---- Keras 3 itself reads and writes these layers' .keras files ---------------------------------

def _keras_python():
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.setdefault("KERAS_BACKEND", "jax")
    for python in (os.environ.get("PYNN_KERAS_PYTHON"), sys.executable):
        if python and subprocess.run([python, "-c", "import keras"], capture_output=True,
                                     env=env, timeout=120).returncode == 0:
            return python, env
    pytest.skip("Keras 3 is not installed: set PYNN_KERAS_PYTHON to the python of a venv with "
                "`pip install keras jax[cpu] h5py` to run the Keras cross-checks")


def test_keras_files_both_ways(tmp_path):
    """A pynn model of every new layer saved as .keras loads in Keras 3 and predicts the
    same; Keras 3's own model of them (trained) loads in pynn and predicts the same."""
    import subprocess
    import textwrap
    pytest.importorskip("h5py")
    python, env = _keras_python()
    model, x = _saving_model()
    model.save(tmp_path / "pynn.keras")
    np.save(tmp_path / "x.npy", x)
    code = textwrap.dedent("""
        import numpy as np, keras
        L = keras.layers
        x = np.load("x.npy")
        m = keras.saving.load_model("pynn.keras")
        np.save("keras_pred.npy", np.asarray(m.predict(x, verbose=0)))
        keras.utils.set_random_seed(0)
        inp = keras.Input((10, 3))
        h = L.Conv1D(4, 3, padding="causal", activation="relu")(inp)
        h = L.Conv1D(4, 2, strides=2, padding="same", use_bias=False)(h)
        h = L.MaxPooling1D(2, padding="same")(h)
        h = L.AveragePooling1D(2, strides=1)(h)
        a = L.GlobalMaxPooling1D()(h)
        b = L.GlobalAveragePooling1D()(h)
        h = L.RepeatVector(3)(L.Add()([a, b]))
        out = L.Dense(2)(L.Flatten()(h))
        k = keras.Model(inp, out)
        k.compile(optimizer="adam", loss="mse")
        rng = np.random.default_rng(1)
        xk = rng.normal(size=(16, 10, 3)).astype("float32")
        k.fit(xk, rng.normal(size=(16, 2)).astype("float32"), epochs=2, batch_size=4, verbose=0)
        np.save("xk.npy", xk)
        np.save("k_pred.npy", np.asarray(k.predict(xk, verbose=0)))
        k.save("keras.keras")
        """)
    run = subprocess.run([python, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    np.testing.assert_allclose(np.load(tmp_path / "keras_pred.npy"), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    loaded = pynn.load_model(tmp_path / "keras.keras")
    np.testing.assert_allclose(loaded.predict(np.load(tmp_path / "xk.npy"), verbose=0),
                               np.load(tmp_path / "k_pred.npy"), rtol=1e-5, atol=1e-6)
    loaded.fit(np.load(tmp_path / "xk.npy"), np.zeros((16, 2), np.float32), epochs=1,
               verbose=0)                                   # and it trains on in pynn


KERAS_CASES = [
    ("Conv1D", {"filters": 3, "kernel_size": 3}, (9, 2)),
    ("Conv1D", {"filters": 3, "kernel_size": 4, "strides": 3, "padding": "same"}, (10, 2)),
    ("Conv1D", {"filters": 2, "kernel_size": 3, "strides": 2, "padding": "causal"}, (8, 2)),
    ("Conv1D", {"filters": 2, "kernel_size": [2], "strides": [1], "padding": "CAUSAL",
                "use_bias": False, "activation": "relu"}, (5, 3)),
    ("MaxPooling1D", {}, (7, 3)),
    ("MaxPooling1D", {"pool_size": 3, "strides": 2, "padding": "same"}, (8, 2)),
    ("AveragePooling1D", {"pool_size": 2, "strides": 1}, (5, 2)),
    ("AveragePooling1D", {"pool_size": 4, "padding": "same"}, (9, 1)),
    ("GlobalMaxPooling1D", {}, (5, 3)),
    ("GlobalMaxPooling1D", {"keepdims": True}, (5, 3)),
    ("GlobalMaxPooling2D", {}, (4, 5, 3)),
    ("GlobalMaxPooling2D", {"keepdims": True}, (4, 5, 3)),
    ("GlobalAveragePooling1D", {"keepdims": True}, (6, 2)),
    ("RepeatVector", {"n": 4}, (3,)),
]
CONFIG_KEYS = ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate",
               "groups", "activation", "use_bias", "pool_size", "keepdims", "n")


def test_output_shapes_weights_and_configs_match_keras(tmp_path):
    """Each case built in Keras 3 and in pynn: the same output shape, weight shapes, default
    name and config values."""
    import subprocess
    python, env = _keras_python()
    code = ("import json, keras\nout = []\n"
            f"for cls, kw, shape in {KERAS_CASES!r}:\n"
            "    layer = getattr(keras.layers, cls)(**kw)\n"
            "    y = layer(keras.Input(shape))\n"
            "    cfg = {k: (list(v) if isinstance(v, tuple) else v)\n"
            f"           for k, v in layer.get_config().items() if k in {CONFIG_KEYS!r}}}\n"
            "    out.append([list(y.shape[1:]), [list(w.shape) for w in layer.weights],\n"
            "                layer.name.rsplit('_', 1)[0] if layer.name[-1].isdigit() and\n"
            "                '_' in layer.name and layer.name.rsplit('_', 1)[1].isdigit()\n"
            "                else layer.name, cfg])\n"
            "print(json.dumps(out))\n")
    run = subprocess.run([python, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    want = json.loads(run.stdout.strip().splitlines()[-1])
    for (cls, kw, shape), (k_shape, k_weights, k_name, k_cfg) in zip(KERAS_CASES, want):
        layer = getattr(L, cls)(**kw)
        y = layer(pynn.Input(shape))
        label = f"{cls}({kw})"
        assert list(y.shape[1:]) == k_shape, label
        assert [list(w.shape) for w in layer.weights] == k_weights, label
        assert layer.name == k_name or layer.name.startswith(k_name + "_"), (label, layer.name)
        cfg = {k: v for k, v in layer.get_config().items() if k in CONFIG_KEYS}
        assert cfg == k_cfg, label

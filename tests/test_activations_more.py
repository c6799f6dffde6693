"""Engineer A's part of #16: the activations elu, selu, softplus, softsign, silu (swish),
hard_sigmoid, hard_silu (hard_swish), relu6, mish, exponential and log_softmax, and the
layers ReLU(max_value, negative_slope, threshold), Softmax(axis), ELU and PReLU.

  kernels       the cpu (C) and cuda (simulator) kernels against the NumPy reference on
                awkward shapes, the reference against torch float64 autograd;
  training      one SGD step of a model around each activation (Conv2D and Dense with the
                activation fused, and the Activation layer) and each layer, on cpu, numpy
                and cuda, against torch autograd (tests/torch_mirror.py);
  determinism   whole-epoch C fit = step by step = the plan walked op by op, 1 thread =
                2 threads, bitwise;
  saving        get_config round trips, .keras and pynn's own format, and the .keras file
                loaded by real Keras (PYNN_KERAS_PYTHON) predicting the same;
  ONNX          the exported graph through onnxruntime against predict;
  arguments     bad values refused with their name and value, the model unchanged;
  masks         Keras's masked Softmax (where(mask, softmax(where(mask, x, -1e9)), 0)) from
                a plan mask attached by a test layer (the interface Embedding(mask_zero=True)
                will feed), kernels and one training step against torch.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import pynn
from pynn import _core, ids
from pynn import layers as L
from pynn.backend import get as get_backend
from pynn.backend import reference as ref
from pynn.models import plan as plan_module

from conftest import assert_bitwise, assert_close, usable_backend

torch = pytest.importorskip("torch")
torch_mirror = pytest.importorskip("torch_mirror")

NEW = ("elu", "selu", "softplus", "softsign", "silu", "hard_sigmoid", "hard_silu", "relu6",
       "mish", "exponential", "log_softmax")
RTOL = 2e-5


def _x(shape, seed=0, scale=3.0):
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype(np.float32)


# ---- the reference against torch float64 --------------------------------------------------

TORCH = {
    "elu": lambda z: torch.nn.functional.elu(z, 0.7), "selu": torch.nn.functional.selu,
    "softplus": torch.nn.functional.softplus, "softsign": torch.nn.functional.softsign,
    "silu": torch.nn.functional.silu, "hard_sigmoid": torch.nn.functional.hardsigmoid,
    "hard_silu": torch.nn.functional.hardswish, "relu6": torch.nn.functional.relu6,
    "mish": torch.nn.functional.mish, "exponential": torch.exp,
    "log_softmax": lambda z: torch.log_softmax(z, dim=-1),
}


@pytest.mark.parametrize("name", NEW)
def test_reference_matches_torch_autograd(name):
    x = _x((6, 9), 1).astype(np.float64)
    x[0, :4] = [-40.0, 40.0, -3.5, 6.5]            # saturated tails and past the kinks
    dy = _x((6, 9), 2, 1.0).astype(np.float64)
    t = torch.tensor(x, requires_grad=True)
    out = TORCH[name](t)
    out.backward(torch.tensor(dy))
    y = ref.activation_forward(x, name, 0.7)
    # torch's hardsigmoid/hardswish kernels hold 1/6 as a float32 constant (1.0f / 6.0f)
    rtol = 1e-7 if name.startswith("hard_") else 1e-12
    assert_close(y, out.detach().numpy(), rtol=rtol)
    assert_close(ref.activation_backward(x, y, dy, name, 0.7), t.grad.numpy(), rtol=rtol)


# ---- the kernels against the reference ------------------------------------------------------

@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("shape", [(1, 1), (3, 17), (2, 1031)])
def test_activation_kernels_match_the_reference(kernel_backend, name, shape):
    if kernel_backend.name == "cuda" and shape[1] > 100:
        shape = (2, 37)                             # the simulator: small
    x = _x(shape, 3)
    dy = _x(shape, 4, 1.0)
    be = kernel_backend
    want_y = ref.activation_forward(x, name, 0.7)
    want_dx = ref.activation_backward(x, want_y, dy, name, 0.7)
    y, dx = be.zeros(shape), be.zeros(shape)
    xd, dyd = be.from_host(x), be.from_host(dy)
    be.activation_forward(xd, name, 0.7, y)
    be.activation_backward(xd, y, dyd, name, 0.7, dx)
    assert_close(be.to_host(y), want_y, rtol=RTOL, err_msg=name)
    assert_close(be.to_host(dx), want_dx, rtol=RTOL, err_msg=name)


def test_c_forward_and_backward_run_in_place():
    x = _x((4, 33), 5)
    for name in NEW:
        act = ids.ACTIVATIONS[name]
        y = np.empty_like(x)
        _core.activation_forward(y, x, act, 1.0)
        inplace = x.copy()
        _core.activation_forward(inplace, inplace, act, 1.0)
        assert_bitwise(inplace, y, err_msg=name)
        dy = _x((4, 33), 6, 1.0)
        dx = np.empty_like(x)
        _core.activation_backward(dx, x, y, dy, act, 1.0)
        _core.activation_backward(dy, x, y, dy, act, 1.0)
        assert_bitwise(dy, dx, err_msg=name)


RELU_CASES = [(0.0, 0.0, 1.5), (0.2, 0.5, None), (0.3, 1.0, 2.0), (0.0, 0.7, None),
              (0.1, 0.0, 6.0)]


@pytest.mark.parametrize("slope,threshold,max_value", RELU_CASES)
def test_relu_op_kernels_match_the_reference(kernel_backend, slope, threshold, max_value):
    x = _x((3, 41), 7, 2.0)
    dy = _x((3, 41), 8, 1.0)
    be = kernel_backend
    y, dx = be.zeros(x.shape), be.zeros(x.shape)
    be.relu_forward(be.from_host(x), slope, threshold, max_value, y)
    be.relu_backward(be.from_host(x), be.from_host(dy), slope, threshold, max_value, dx)
    assert_close(be.to_host(y), ref.relu_forward(x, slope, threshold, max_value))
    assert_close(be.to_host(dx), ref.relu_backward(x, dy, slope, threshold, max_value))
    # against torch: the layer's formula, Keras's
    t = torch.tensor(x.astype(np.float64), requires_grad=True)
    layer = L.ReLU(max_value=max_value, negative_slope=slope, threshold=threshold)
    torch_mirror.apply_layer(layer, [t], [], True).backward(torch.tensor(dy.astype(np.float64)))
    assert_close(be.to_host(dx), t.grad.numpy())


@pytest.mark.parametrize("geometry", [(1, 5, 1), (3, 4, 7), (2, 1, 3), (5, 13, 2)])
def test_softmax_axis_kernels_match_the_reference(kernel_backend, geometry):
    outer, length, inner = geometry
    x = _x((outer, length, inner), 9)
    dy = _x((outer, length, inner), 10, 1.0)
    be = kernel_backend
    y, dx = be.zeros(x.shape), be.zeros(x.shape)
    be.softmax_axis_forward(be.from_host(x), outer, length, inner, y)
    be.softmax_axis_backward(y, be.from_host(dy), outer, length, inner, dx)
    assert_close(be.to_host(y), ref.softmax_axis_forward(x, outer, length, inner))
    assert_close(be.to_host(dx), ref.softmax_axis_backward(be.to_host(y), dy, outer, length,
                                                           inner))
    assert_close(be.to_host(y).sum(axis=1), np.ones((outer, inner)))


@pytest.mark.parametrize("geometry", [(3, 5, 1), (2, 4, 3)])
def test_masked_softmax_kernels_match_keras(kernel_backend, geometry):
    """Keras's Softmax(mask=): where(mask, softmax(where(mask, x, -1e9)), 0); a row masked
    everywhere gives zeros."""
    outer, length, inner = geometry
    x = _x((outer, length, inner), 14)
    mask = (np.random.default_rng(15).random(x.shape) > 0.4).astype(np.float32)
    mask[0] = 0.0                                   # all masked
    mask[-1] = 1.0                                  # none masked
    dy = _x(x.shape, 16, 1.0)
    be = kernel_backend
    y, dx = be.zeros(x.shape), be.zeros(x.shape)
    be.softmax_axis_forward(be.from_host(x), outer, length, inner, y, be.from_host(mask))
    be.softmax_axis_backward(y, be.from_host(dy), outer, length, inner, dx)
    t = torch.tensor(x.astype(np.float64), requires_grad=True)
    keep = torch.tensor(mask > 0.5)
    s = torch.softmax(torch.where(keep, t, torch.tensor(-1e9, dtype=torch.float64)), dim=1)
    out = torch.where(keep, s, torch.zeros_like(s))
    out.backward(torch.tensor(dy.astype(np.float64)))
    assert_close(be.to_host(y), out.detach().numpy())
    assert_close(be.to_host(y), ref.softmax_axis_forward(x, outer, length, inner, mask))
    assert_close(be.to_host(dx), t.grad.numpy())
    assert not be.to_host(y)[0].any() and not be.to_host(dx)[0].any()


@pytest.mark.parametrize("dims,shared", [((5,), (0,)), ((3, 4, 2), (1, 1, 0)),
                                         ((3, 4, 2), (0, 1, 0)), ((2, 3), (1, 1))])
def test_prelu_kernels_match_the_reference(kernel_backend, dims, shared):
    rows = 3
    x = _x((rows,) + dims, 11)
    dy = _x((rows,) + dims, 12, 1.0)
    alpha = _x(tuple(1 if s else d for d, s in zip(dims, shared)), 13, 0.5).reshape(-1)
    be = kernel_backend
    y, dx, da = be.zeros(x.size), be.zeros(x.size), be.zeros(alpha.size)
    xd = be.from_host(x.reshape(-1))
    ad = be.from_host(alpha)
    be.prelu_forward(xd, ad, list(dims), [bool(s) for s in shared], y)
    be.prelu_backward(xd, ad, be.from_host(dy.reshape(-1)), list(dims),
                      [bool(s) for s in shared], da, dx)
    want_dx, want_da = ref.prelu_backward(x.reshape(-1), alpha, dy.reshape(-1), dims, shared)
    assert_close(be.to_host(y), ref.prelu_forward(x.reshape(-1), alpha, dims, shared))
    assert_close(be.to_host(dx), want_dx)
    assert_close(be.to_host(da), want_da, rtol=1e-4)
    # and torch's gradient of Keras's formula relu(x) - alpha relu(-x)
    tx = torch.tensor(x.astype(np.float64), requires_grad=True)
    ta = torch.tensor(alpha.astype(np.float64).reshape(
        tuple(1 if s else d for d, s in zip(dims, shared))), requires_grad=True)
    out = torch.relu(tx) - ta * torch.relu(-tx)
    out.backward(torch.tensor(dy.astype(np.float64)))
    assert_close(be.to_host(da), ta.grad.numpy().reshape(-1), rtol=1e-4)
    assert_close(be.to_host(dx), tx.grad.numpy().reshape(-1))


def test_c_kernels_refuse_bad_geometry():
    x = np.ones(6, np.float32)
    with pytest.raises(ValueError, match="prelu_forward"):
        _core.prelu_forward(x.copy(), x, np.ones(4, np.float32), [6], [0])
    with pytest.raises(ValueError, match="relu_forward"):
        _core.relu_forward(x.copy(), x, -1.0, 0.0, float("inf"))
    with pytest.raises(ValueError, match="softmax_axis_forward"):
        _core.softmax_axis_forward(x.copy(), x, 1, 4, 2)


# ---- one training step against torch autograd -----------------------------------------------

def _activation_model(name):
    """Conv2D and Dense with the activation fused, then the Activation layer."""
    pynn.utils.set_random_seed(5)
    return pynn.Sequential([
        L.Input((4, 4, 2)), L.Conv2D(3, 2, activation=name), L.Flatten(),
        L.Dense(5, activation=name), L.Activation(name), L.Dense(2)])


LAYER_MODELS = {
    "relu_clip_threshold": lambda: [L.ReLU(max_value=0.8, negative_slope=0.2, threshold=0.1)],
    "relu_max_only": lambda: [L.ReLU(max_value=0.5)],
    "relu6_layer": lambda: [L.ReLU(max_value=6.0)],
    "softmax_axis1": lambda: [L.Softmax(axis=1)],
    "softmax_axes_1_2": lambda: [L.Softmax(axis=(1, 2))],
    "softmax_last": lambda: [L.Softmax()],
    "elu": lambda: [L.ELU(alpha=0.6)],
    "prelu_shared": lambda: [L.PReLU(alpha_initializer="ones", shared_axes=[1])],
    "prelu_full": lambda: [L.PReLU()],
}


def _layer_model(key):
    pynn.utils.set_random_seed(6)
    return pynn.Sequential([L.Input((3, 4)), L.Dense(4)] + LAYER_MODELS[key]() +
                           [L.Flatten(), L.Dense(2)])


def _randomize(model, seed, scale=0.5):
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, scale, v.shape).astype(np.float32) for v in model.weights])


def _step_against_torch(model, backend, x, y, lr=0.1):
    model.compile(optimizer=pynn.optimizers.SGD(lr), loss="mse", backend=backend)
    w0 = {id(v): v.numpy().astype(np.float64) for v in model.weights}
    losses = [o.loss for o in model.engine.losses.outputs]
    total, grads = torch_mirror.gradients(model, [x], [y], losses, [1.0])
    loss = model.train_on_batch(x, y)
    assert abs(loss - total) <= 1e-5 * abs(total) + 1e-7, (loss, total)
    for v in model.trainable_weights:
        step = v.numpy().astype(np.float64) - w0[id(v)]
        want = -lr * grads[id(v)]
        slack = 4 * np.finfo(np.float32).eps * np.abs(w0[id(v)]).max()
        scale = max(np.abs(want).max(), 1e-12)
        np.testing.assert_allclose(step, want, rtol=0, atol=1e-4 * scale + slack,
                                   err_msg=f"{backend} {v.path}")
        assert np.abs(want).max() > 0 or v.path.endswith("bias"), v.path


@pytest.mark.parametrize("name", NEW)
def test_activation_step_matches_torch(name, backend_name):
    model = _activation_model(name)
    _randomize(model, 1, 0.2 if name == "exponential" else 0.5)   # exp of exp of exp
    x = _x((3, 4, 4, 2), 2, 1.0)
    y = _x((3, 2), 3, 1.0)
    _step_against_torch(model, backend_name, x, y)


@pytest.mark.parametrize("key", sorted(LAYER_MODELS))
def test_layer_step_matches_torch(key, backend_name):
    model = _layer_model(key)
    _randomize(model, 2)
    if key == "prelu_shared":
        model.layers[1].set_weights([np.array([[0.3, -0.2, 0.5, 0.1]], np.float32)])
    x = _x((4, 3, 4), 4, 1.0)
    y = _x((4, 2), 5, 1.0)
    _step_against_torch(model, backend_name, x, y)


class _MaskedTensor(plan_module.Tensor):
    __slots__ = ("mask",)


class _AttachMask(L.Layer):
    """Test-only: passes its first input on with its second as the plan mask (the interface
    Embedding(mask_zero=True) feeds, pynn.models.plan)."""
    _single_input = False

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def plan_forward(self, b, inputs, training, logits=False):
        x, m = inputs
        y = _MaskedTensor(b._alias_buffer(x.buf, x.shape[1:]), x.shape)
        y.mask = m
        b.differentiate([x], [y], lambda b, dys, need: [b._alias_buffer(dys[0], x.shape[1:])])
        return y


def test_masked_softmax_step_matches_torch(backend_name):
    pynn.utils.set_random_seed(8)
    x_in, m_in = L.Input((6,)), L.Input((6,))
    dense = L.Dense(6)
    h = dense(x_in)
    y = L.Softmax()(_AttachMask()([h, m_in]))
    head = L.Dense(2)
    model = pynn.Model([x_in, m_in], head(y))
    _randomize(model, 3)
    model.compile(optimizer=pynn.optimizers.SGD(0.5), loss="mse", backend=backend_name)
    rng = np.random.default_rng(4)
    x = rng.normal(size=(5, 6)).astype(np.float32)
    m = (rng.random((5, 6)) > 0.3).astype(np.float32)
    m[1] = 0.0
    target = rng.normal(size=(5, 2)).astype(np.float32)
    params = {id(v): v.numpy().astype(np.float64) for v in model.weights}
    tw = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    hh = torch.tensor(x.astype(np.float64)) @ tw[id(dense.kernel)] + tw[id(dense.bias)]
    keep = torch.tensor(m > 0.5)
    s = torch.softmax(torch.where(keep, hh, torch.tensor(-1e9, dtype=torch.float64)), dim=-1)
    out = torch.where(keep, s, torch.zeros_like(s)) @ tw[id(head.kernel)] + tw[id(head.bias)]
    loss_t = ((out - torch.tensor(target.astype(np.float64))) ** 2).mean()
    loss_t.backward()
    loss = model.train_on_batch([x, m], target)
    assert abs(loss - float(loss_t.detach())) <= 1e-5 * float(loss_t.detach())
    for v in model.trainable_weights:
        want = params[id(v)] - 0.5 * tw[id(v)].grad.numpy()
        np.testing.assert_allclose(v.numpy(), want, rtol=0, atol=1e-5, err_msg=v.path)
    assert not np.array_equal(dense.kernel.numpy(), params[id(dense.kernel)])
    # a mask of another shape than the inputs is refused, naming both shapes
    a, b = L.Input((6,)), L.Input((5,))
    bad = pynn.Model([a, b], L.Softmax()(_AttachMask()([a, b])))
    with pytest.raises(ValueError, match=r"mask.*\(None, 6\).*\(None, 5\)"):
        bad.compile(optimizer="sgd", loss="mse", backend=backend_name)
        bad.train_on_batch([x, m[:, :5]], x)


# ---- determinism: whole epoch = op by op, 1 thread = 2 threads --------------------------------

class _StepByStep(pynn.callbacks.Callback):
    """Overriding on_train_batch_end makes fit run one C call per step."""

    def __init__(self):
        super().__init__()
        self.steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1


def _fit_weights(force_python=False, threads=None, epochs=1, callbacks=None):
    pynn.utils.set_random_seed(9)
    model = pynn.Sequential([
        L.Input((6, 6, 3)), L.Conv2D(8, 3, padding="same", activation="mish"),
        L.PReLU(shared_axes=[1, 2]), L.Softmax(axis=1), L.Flatten(),
        L.Dense(64, activation="selu"), L.ReLU(max_value=1.0, threshold=0.05,
                                               negative_slope=0.1),
        L.ELU(), L.Dense(10, activation="log_softmax")])
    model.compile(optimizer=pynn.optimizers.Adam(0.01), loss="mse")
    model.engine.force_python = force_python
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 6, 6, 3)).astype(np.float32)
    y = rng.normal(size=(256, 10)).astype(np.float32)
    previous = _core.get_num_threads()
    if threads is not None:
        _core.set_num_threads(threads)
    try:
        model.fit(x, y, batch_size=128, epochs=epochs, verbose=0, callbacks=callbacks)
    finally:
        _core.set_num_threads(previous)
    return model.get_weights()


def test_whole_epoch_step_by_step_op_by_op_and_thread_counts_agree_bitwise():
    whole = _fit_weights()
    steps = _StepByStep()
    for got in (_fit_weights(callbacks=[steps]), _fit_weights(force_python=True),
                _fit_weights(threads=1), _fit_weights(threads=2)):
        for a, b in zip(got, whole):
            assert_bitwise(a, b)
    assert steps.steps == 2


# ---- configuration and saving --------------------------------------------------------------

def _saving_model():
    pynn.utils.set_random_seed(4)
    inputs = L.Input((3, 4), name="seq")
    x = L.Dense(4, activation="swish")(inputs)
    x = L.PReLU(shared_axes=[1])(x)
    x = L.ReLU(max_value=2.0, negative_slope=0.1, threshold=0.2)(x)
    x = L.Softmax(axis=1)(x)
    x = L.ELU(alpha=0.5)(x)
    x = L.Flatten()(x)
    x = L.Dense(6, activation="hard_swish")(x)
    for name in ("elu", "selu", "softplus", "softsign", "hard_sigmoid", "relu6", "mish"):
        x = L.Dense(6, activation=name)(x)
    x = L.Dense(3, activation="exponential")(x)
    out = L.Activation("log_softmax")(x)
    model = pynn.Model(inputs, out, name="acts")
    rng = np.random.default_rng(1)
    model.set_weights([rng.normal(0, 0.4, v.shape).astype(np.float32) for v in model.weights])
    return model


def test_layer_configs_round_trip():
    for layer in (L.ReLU(max_value=2.0, negative_slope=0.1, threshold=0.2), L.ReLU(),
                  L.Softmax(axis=[1, 2]), L.Softmax(axis=2), L.ELU(alpha=0.5),
                  L.PReLU(alpha_initializer="ones", shared_axes=2), L.Activation("swish"),
                  L.Dense(3, activation="hard_swish")):
        config = layer.get_config()
        assert json.loads(json.dumps(config)) == config
        clone = type(layer).from_config(json.loads(json.dumps(config)))
        assert clone.get_config() == config
    assert L.Activation("swish").get_config()["activation"] == "silu"
    assert L.PReLU(shared_axes=2).get_config()["shared_axes"] == [2]
    plain = L.ReLU().get_config()
    assert plain == {**plain, "max_value": None, "negative_slope": 0.0, "threshold": 0.0}


def test_keras_file_and_pynn_format_round_trip(tmp_path):
    model = _saving_model()
    x = _x((5, 3, 4), 7, 1.0)
    want = model.predict(x, verbose=0)
    for path in (tmp_path / "m.keras", tmp_path / "m.pynn"):
        model.save(path)
        back = pynn.load_model(path)
        assert_bitwise(back.predict(x, verbose=0), want, err_msg=str(path))
        assert [type(l).__name__ for l in back.layers] == [type(l).__name__
                                                          for l in model.layers]


def _keras_python():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    python = os.environ.get("PYNN_KERAS_PYTHON")
    if not python:
        return None, env
    env.setdefault("KERAS_BACKEND", "jax")
    ok = subprocess.run([python, "-c", "import keras"], capture_output=True, env=env,
                        timeout=120).returncode == 0
    return (python if ok else None), env


def test_keras_loads_the_file_and_predicts_the_same(tmp_path):
    python, env = _keras_python()
    if python is None:
        pytest.skip("set PYNN_KERAS_PYTHON to a python with Keras 3 for the Keras cross-check")
    model = _saving_model()
    x = _x((5, 3, 4), 7, 1.0)
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent("""
        import numpy as np, keras
        m = keras.saving.load_model("m.keras")
        np.save("pred.npy", np.asarray(m.predict(np.load("x.npy"), verbose=0)))
        x = np.linspace(-7, 7, 29, dtype="float32")[None]
        out = {}
        for name in ("elu", "selu", "softplus", "softsign", "silu", "swish", "hard_sigmoid",
                     "hard_silu", "hard_swish", "relu6", "mish", "exponential",
                     "log_softmax"):
            out[name] = np.asarray(keras.activations.get(name)(x))
        out["relu_opts"] = np.asarray(keras.activations.relu(x, negative_slope=0.1,
                                                             max_value=2.0, threshold=0.5))
        np.savez("acts.npz", **out)
        keras.saving.save_model(m, "back.keras")
        """)
    run = subprocess.run([python, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                         env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    assert_close(np.load(tmp_path / "pred.npy"), model.predict(x, verbose=0), rtol=1e-5)
    acts = np.load(tmp_path / "acts.npz")
    grid = np.linspace(-7, 7, 29, dtype=np.float32)[None]
    for name in acts.files:
        if name == "relu_opts":
            got = pynn.activations.relu(grid, negative_slope=0.1, max_value=2.0, threshold=0.5)
        else:
            got = getattr(pynn.activations, name)(grid)
        np.testing.assert_allclose(got, acts[name], rtol=2e-6, atol=1e-6, err_msg=name)
    back = pynn.load_model(tmp_path / "back.keras")
    assert_close(back.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


# ---- ONNX -------------------------------------------------------------------------------------

@pytest.mark.parametrize("opset", [13, 17, 18])
def test_onnx_export_matches_predict(tmp_path, opset):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = _saving_model()
    path = tmp_path / "acts.onnx"
    model.export(path, opset=opset)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    kinds = {n.op_type for n in proto.graph.node}
    want = {"PRelu", "Softmax", "Elu", "Selu", "Softplus", "Softsign", "HardSigmoid", "Clip",
            "Exp", "LogSoftmax", "Where"}
    want |= {"HardSwish"} if opset >= 14 else set()
    want |= {"Mish"} if opset >= 18 else {"Tanh"}
    assert want <= kinds, want - kinds
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = _x((7, 3, 4), 8, 1.0)
    (got,) = session.run(None, {proto.graph.input[0].name: x})
    np.testing.assert_allclose(got, model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_onnx_softmax_over_two_axes_and_plain_relu_layers(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pynn.utils.set_random_seed(2)
    model = pynn.Sequential([L.Input((3, 4)), L.Softmax(axis=[1, 2]), L.ReLU(max_value=0.1),
                             L.ReLU(threshold=0.02), L.Flatten(), L.Dense(2)])
    path = tmp_path / "s.onnx"
    model.export(path, opset=13)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = _x((2, 3, 4), 9, 1.0)
    (got,) = session.run(None, {session.get_inputs()[0].name: x})
    np.testing.assert_allclose(got, model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


# ---- bad arguments ----------------------------------------------------------------------------

@pytest.mark.parametrize("make,arg,value", [
    (lambda: L.ReLU(max_value=-1.0), "max_value", "-1.0"),
    (lambda: L.ReLU(negative_slope=-0.5), "negative_slope", "-0.5"),
    (lambda: L.ReLU(threshold=-0.1), "threshold", "-0.1"),
    (lambda: L.ReLU(threshold=None), "threshold", "None"),
    (lambda: L.ReLU(max_value="6"), "max_value", "'6'"),
    (lambda: L.ELU(alpha="one"), "alpha", "'one'"),
    (lambda: L.Softmax(axis=1.5), "axis", "1.5"),
    (lambda: L.Softmax(axis=[]), "axis", "[]"),
    (lambda: L.PReLU(shared_axes=0), "shared_axes", "0"),
    (lambda: L.PReLU(shared_axes=[1, "a"]), "shared_axes", "'a'"),
    (lambda: L.PReLU(alpha_regularizer="l3"), "alpha_regularizer", "'l3'"),
    (lambda: L.PReLU(alpha_constraint="non_negative"), "alpha_constraint", "'non_negative'"),
    (lambda: L.Activation("swishy"), "swishy", "swishy"),
    (lambda: L.Dense(2, activation="log_sigmoid_"), "log_sigmoid_", "log_sigmoid_"),
])
def test_bad_constructor_arguments_name_the_argument_and_value(make, arg, value):
    with pytest.raises((ValueError, TypeError)) as info:
        make()
    assert arg in str(info.value) and value in str(info.value), str(info.value)


@pytest.mark.parametrize("make,shape,arg", [
    (lambda: L.Softmax(axis=3), (3, 4), "axis"),
    (lambda: L.Softmax(axis=-4), (3, 4), "axis"),
    (lambda: L.Softmax(axis=0), (3, 4), "axis"),
    (lambda: L.Softmax(axis=[1, 3]), (3, 4, 5), "axis"),
    (lambda: L.PReLU(shared_axes=[3]), (3, 4), "shared_axes"),
])
def test_bad_axes_for_the_input_are_refused_and_the_model_is_unchanged(make, shape, arg):
    pynn.utils.set_random_seed(0)
    inputs = L.Input(shape)
    dense = L.Dense(shape[-1])
    x = dense(inputs)
    model = pynn.Model(inputs, x)
    before = [w.copy() for w in model.get_weights()]
    layer = make()
    with pytest.raises(ValueError) as info:
        layer(x)
    assert arg in str(info.value)
    assert not layer.built
    for a, b in zip(model.get_weights(), before):
        assert_bitwise(a, b)
    assert model.predict(_x((2,) + shape), verbose=0).shape == (2,) + shape


def test_activation_functions_on_arrays():
    x = np.linspace(-5, 5, 21, dtype=np.float32).reshape(3, 7)
    assert pynn.activations.swish is pynn.activations.silu
    assert pynn.activations.hard_swish is pynn.activations.hard_silu
    assert_close(pynn.activations.elu(x, alpha=0.5), np.where(x > 0, x, 0.5 * np.expm1(x)))
    assert_close(pynn.activations.softmax(x, axis=0), ref.softmax_axis_forward(x, 1, 3, 7))
    assert_close(pynn.activations.log_softmax(x, axis=0),
                 np.log(ref.softmax_axis_forward(x.astype(np.float64), 1, 3, 7)), rtol=1e-5)
    assert_close(pynn.activations.relu(x, max_value=2.0, threshold=1.0),
                 np.clip(np.where(x > 1, x, 0), 0, 2))
    assert_close(pynn.activations.leaky_relu(x, negative_slope=0.1),
                 np.where(x > 0, x, 0.1 * x))
    assert_close(pynn.activations.hard_sigmoid(x), np.clip(x / 6 + 0.5, 0, 1))
    with pytest.raises(ValueError, match="axis"):
        pynn.activations.softmax(x, axis=2)
    layer = L.Dense(2, activation=pynn.activations.mish)
    assert layer.activation == "mish"

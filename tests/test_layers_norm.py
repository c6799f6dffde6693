"""The normalization and noise layers (engineer E, issue #16): LayerNormalization,
GroupNormalization, UnitNormalization, SpatialDropout2D, GaussianNoise, GaussianDropout.

  kernels        group / layer norm forward and backward, unit norm and the Gaussian noise
                 on cpu (C) and cuda (the simulator) against the NumPy reference, on awkward
                 shapes, pairwise over the options;
  torch parity   one SGD step of a model around each normalization layer on every backend
                 against torch autograd (F.layer_norm, F.group_norm, F.normalize through
                 tests/torch_mirror.py); Keras's gamma/beta layouts are torch's (gamma of
                 the normalized axes' shape for layer norm, one per channel for group norm,
                 channels moved to dim 1);
  noise          a training step through each noise layer against torch with the noise the
                 reference draws; the identity in inference; mean and std on a large sample;
  determinism    1 vs 2 threads, whole-epoch vs step-by-step fit: bitwise;
  saving         get_config/from_config, .keras and .pynn round trips, ONNX Runtime;
  Keras          the same layers in Keras 3 (PYNN_KERAS_PYTHON) give the same outputs and
                 read pynn's .keras file;
  bad arguments  ValueError/TypeError naming the argument and value, model unchanged.
"""
import json
import math

import numpy as np
import pytest

import pynn
from pynn import layers as L
from pynn.backend import reference as ref
from pynn.models.plan import dropout_seed

from conftest import RTOL_SUMS, assert_bitwise, assert_close, assert_step_close

torch = pytest.importorskip("torch")
torch_mirror = pytest.importorskip("torch_mirror")


def _rng(seed=0):
    return np.random.default_rng(seed)


# ---- kernels against the reference --------------------------------------------------------

# (n, s, groups, k, rms, gamma, beta): pairwise over the options, awkward sizes
GN_CASES = [(1, 1, 1, 1, False, True, True), (3, 1, 1, 7, False, False, True),
            (2, 5, 3, 2, False, True, False), (4, 1, 1, 5, True, True, False),
            (2, 3, 2, 4, True, False, False), (5, 7, 1, 3, False, False, False),
            (3, 2, 4, 1, False, True, True)]


@pytest.mark.parametrize("case", GN_CASES, ids=[str(c) for c in GN_CASES])
def test_group_norm_kernels_match_the_reference(kernel_backend, case):
    n, s, groups, k, rms, has_gamma, has_beta = case
    be = kernel_backend
    rng = _rng(sum(case[:4]))
    x = rng.normal(1.0, 2.0, size=(n, s, groups * k)).astype(np.float32)
    gamma = rng.normal(1, 0.3, groups * k).astype(np.float32) if has_gamma else None
    beta = rng.normal(0, 0.5, groups * k).astype(np.float32) if has_beta else None
    dy = rng.normal(size=x.shape).astype(np.float32)
    y_ref, mean_ref, istd_ref = ref.group_norm_forward(x, gamma, beta, s, groups, k, 1e-3, rms)
    dg_ref, db_ref, dx_ref = ref.group_norm_backward(x, gamma, mean_ref, istd_ref, dy, s, groups,
                                                     k, rms)
    dev = be.from_host
    y, mean, istd = be.zeros(x.shape), be.zeros((n * groups,)), be.zeros((n * groups,))
    be.group_norm_forward(dev(x), None if gamma is None else dev(gamma),
                          None if beta is None else dev(beta), s, groups, k, 1e-3, rms, mean,
                          istd, y)
    assert_close(be.to_host(y), y_ref)
    assert_close(be.to_host(mean), mean_ref.ravel())
    assert_close(be.to_host(istd), istd_ref.ravel())
    dx, dg, db = be.zeros(x.shape), be.zeros((groups * k,)), be.zeros((groups * k,))
    be.group_norm_backward(dev(x), None if gamma is None else dev(gamma), mean, istd, dev(dy), s,
                           groups, k, rms, dg, db, dx)
    assert_close(be.to_host(dx), dx_ref, rtol=RTOL_SUMS)
    assert_close(be.to_host(dg), dg_ref, rtol=RTOL_SUMS)
    assert_close(be.to_host(db), db_ref, rtol=RTOL_SUMS)
    # dx written over dy (the plan's in-place form) gives the same numbers
    dyd = dev(dy.copy())
    be.group_norm_backward(dev(x), None if gamma is None else dev(gamma), mean, istd, dyd, s,
                           groups, k, rms, None, None, dyd)
    assert_close(be.to_host(dyd), dx_ref, rtol=RTOL_SUMS)


def test_group_norm_reference_matches_finite_differences():
    """The reference backward against central differences of the reference forward (float64
    through a float32 forward: a loose but independent check)."""
    rng = _rng(4)
    for rms in (False, True):
        n, s, groups, k = 2, 3, 2, 2
        x = rng.normal(size=(n, s, groups * k))
        gamma, beta = rng.normal(1, 0.3, groups * k), rng.normal(size=groups * k)
        dy = rng.normal(size=x.shape)

        def loss(xv, gv, bv):
            y = ref.group_norm_forward(xv.astype(np.float32), gv.astype(np.float32),
                                       bv.astype(np.float32), s, groups, k, 1e-3, rms)[0]
            return float((y.astype(np.float64) * dy).sum())

        _, mean, istd = ref.group_norm_forward(x.astype(np.float32), gamma.astype(np.float32),
                                               beta.astype(np.float32), s, groups, k, 1e-3, rms)
        dg, db, dx = ref.group_norm_backward(x.astype(np.float32), gamma.astype(np.float32),
                                             mean, istd, dy.astype(np.float32), s, groups, k,
                                             rms)
        h = 1e-2
        for arr, grad, idx in ((x, dx, (1, 2, 3)), (x, dx, (0, 0, 1)), (gamma, dg, (2,)),
                               (beta, db, (3,))):
            plus, minus = arr.copy(), arr.copy()
            plus[idx] += h
            minus[idx] -= h
            args = [(plus if a is arr else a) for a in (x, gamma, beta)]
            args2 = [(minus if a is arr else a) for a in (x, gamma, beta)]
            numeric = (loss(*args) - loss(*args2)) / (2 * h)
            assert abs(numeric - grad[idx]) <= 2e-2 * max(1.0, abs(numeric)), (rms, idx)


@pytest.mark.parametrize("shape", [(1, 1), (4, 6), (3, 2, 5)])
def test_unit_norm_kernels_match_the_reference(kernel_backend, shape):
    be = kernel_backend
    rng = _rng(len(shape))
    x = rng.normal(size=shape).astype(np.float32)
    x.reshape(-1, shape[-1])[0] = 0.0            # a zero row: the clamp (finite gradient)
    cols = shape[-1]
    rows = x.size // cols
    dy = rng.normal(size=shape).astype(np.float32)
    y_ref, inv_ref = ref.unit_norm_forward(x, cols)
    dx_ref = ref.unit_norm_backward(x, inv_ref, dy, cols)
    y, inv = be.zeros(shape), be.zeros((rows,))
    be.unit_norm_forward(be.from_host(x), cols, inv, y)
    assert_close(be.to_host(y), y_ref)
    assert_close(be.to_host(inv), inv_ref)
    assert np.all(np.isfinite(be.to_host(inv)))
    dx = be.zeros(shape)
    be.unit_norm_backward(be.from_host(x), inv, be.from_host(dy), cols, dx)
    assert_close(be.to_host(dx), dx_ref, rtol=RTOL_SUMS)
    # the zero row's gradient is dy / 1e-12 (torch's F.normalize: x / max(|x|, eps))
    assert_close(be.to_host(dx).reshape(-1, cols)[0], dy.reshape(-1, cols)[0] * 1e12)


@pytest.mark.parametrize("n,mode,scale", [(1, 0, 0.5), (7, 1, math.sqrt(0.3 / 0.7)),
                                          (300, 0, 1.0), (33, 1, 0.2)])
def test_gaussian_noise_kernels_match_the_reference(kernel_backend, n, mode, scale):
    be = kernel_backend
    x = _rng(n).normal(size=(n,)).astype(np.float32)
    y_ref, noise_ref = ref.gaussian_noise(x, 12345, 6, mode, scale)
    y, noise = be.zeros((n,)), be.zeros((n,))
    be.gaussian_noise(be.from_host(x), 12345, 6, mode, scale, noise, y)
    # the same uniforms, Box-Muller in double: equal to float32 rounding of the transform
    np.testing.assert_allclose(be.to_host(noise), noise_ref, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(be.to_host(y), y_ref, rtol=1e-6, atol=1e-6)
    # without a noise buffer, the same y
    y2 = be.zeros((n,))
    be.gaussian_noise(be.from_host(x), 12345, 6, mode, scale, None, y2)
    assert_bitwise(be.to_host(y2), be.to_host(y))


def test_gaussian_noise_statistics_on_a_large_sample():
    from pynn import _core
    n = 400_000
    x = np.zeros(n, np.float32)
    y, z = np.empty_like(x), np.empty_like(x)
    _core.gaussian_noise(y, z, x, 99, 1, 0, 1.0)
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1.0) < 0.01
    assert abs(np.mean(np.abs(z) < 1.0) - 0.6827) < 0.005       # the normal's 1-sigma mass
    assert abs(np.mean(np.abs(z) < 2.0) - 0.9545) < 0.003
    # another counter draws other numbers (the step number moves the stream)
    z2 = np.empty_like(x)
    _core.gaussian_noise(y, z2, x, 99, 2, 0, 1.0)
    assert abs(np.corrcoef(z, z2)[0, 1]) < 0.01
    # GaussianDropout's multiplier: mean 1, std sqrt(rate / (1 - rate))
    ones = np.ones(n, np.float32)
    rate = 0.3
    _core.gaussian_noise(y, z, ones, 5, 1, 1, math.sqrt(rate / (1 - rate)))
    assert abs(z.mean() - 1.0) < 0.01 and abs(z.std() - math.sqrt(rate / (1 - rate))) < 0.01
    assert_bitwise(y, z)


def test_kernels_repeat_bitwise_across_thread_counts(threads):
    from pynn import _core
    rng = _rng(9)
    n, s, groups, k = 16, 64, 4, 8                     # large enough to use the threads
    x = rng.normal(size=(n, s, groups * k)).astype(np.float32)
    dy = rng.normal(size=x.shape).astype(np.float32)
    gamma = rng.normal(size=groups * k).astype(np.float32)
    out = {}
    for t in (1, 2):
        threads(t)
        y, m, i = np.empty_like(x), np.empty(n * groups, np.float32), np.empty(n * groups,
                                                                               np.float32)
        _core.group_norm_forward(y, m, i, x, gamma, gamma, s, groups, k, 1e-3, False)
        dx, dg, db = np.empty_like(x), np.empty(groups * k, np.float32), \
            np.empty(groups * k, np.float32)
        _core.group_norm_backward(dx, dg, db, x, gamma, m, i, dy, s, groups, k, False)
        u, inv = np.empty_like(x), np.empty(n * s, np.float32)
        _core.unit_norm_forward(u, inv, x, groups * k)
        du = np.empty_like(x)
        _core.unit_norm_backward(du, x, inv, dy, groups * k)
        g, z = np.empty_like(x), np.empty_like(x)
        _core.gaussian_noise(g, z, x, 3, 4, 1, 0.5)
        out[t] = [y, m, i, dx, dg, db, u, inv, du, g, z]
    for a, b in zip(out[1], out[2]):
        assert_bitwise(a, b)


# ---- a training step against torch autograd -------------------------------------------------

def _ln_model():
    inp = pynn.Input((3, 5))
    h = L.Dense(5, activation="tanh")(inp)
    h = L.LayerNormalization(epsilon=0.01)(h)
    return pynn.Model(inp, L.Dense(2)(L.Flatten()(h)))


def _ln_trailing_rms_model():
    inp = pynn.Input((3, 4))
    h = L.Dense(4)(inp)
    with pytest.warns(UserWarning, match="rms_scaling"):
        norm = L.LayerNormalization(axis=[1, 2], rms_scaling=True)
    h = norm(h)
    h2 = L.LayerNormalization(axis=[-2, -1], center=False, epsilon=0.1)(h)
    return pynn.Model(inp, L.Dense(2)(L.Flatten()(h2)))


def _gn_model():
    inp = pynn.Input((4, 3, 2))
    h = L.Conv2D(6, 2, padding="same")(inp)
    h = L.GroupNormalization(3, epsilon=0.01)(h)
    h = L.GroupNormalization(-1, center=False)(L.Activation("relu")(h))   # instance norm
    return pynn.Model(inp, L.Dense(2)(L.GlobalAveragePooling2D()(h)))


def _gn_dense_model():
    inp = pynn.Input((8,))
    h = L.GroupNormalization(4, scale=False)(L.Dense(8)(inp))
    return pynn.Model(inp, L.Dense(2)(h))


def _unit_model():
    inp = pynn.Input((2, 6))
    h = L.UnitNormalization()(L.Dense(6)(inp))
    h = L.UnitNormalization(axis=[1, 2])(L.Dense(3)(h))
    return pynn.Model(inp, L.Dense(2)(L.Flatten()(h)))


TORCH_MODELS = {"layer_norm": _ln_model, "layer_norm_trailing_rms": _ln_trailing_rms_model,
                "group_norm": _gn_model, "group_norm_dense": _gn_dense_model,
                "unit_norm": _unit_model}


def _randomize_affine(model, seed):
    rng = _rng(seed)
    for layer in model.layers:
        for v in layer.weights:
            if v.name in ("gamma", "beta"):
                v.assign(rng.normal(1.0 if v.name == "gamma" else 0.0, 0.3, v.shape)
                         .astype(np.float32))


@pytest.mark.parametrize("name", list(TORCH_MODELS))
def test_one_sgd_step_matches_torch(name, backend_name):
    pynn.utils.set_random_seed(3)
    model = TORCH_MODELS[name]()
    _randomize_affine(model, 4)
    rng = _rng(5)
    x = rng.normal(1.0, 2.0, size=(4,) + tuple(model.inputs[0].shape[1:])).astype(np.float32)
    y = rng.normal(size=(4, 2)).astype(np.float32)
    lr = 0.1
    model.compile(optimizer=pynn.optimizers.SGD(lr), loss="mse", backend=backend_name)
    before = [v.numpy().astype(np.float64) for v in model.trainable_weights]
    losses = [o.loss for o in model.engine.losses.outputs]
    total, grads = torch_mirror.gradients(model, [x], [y], losses, [1.0])
    loss = model.train_on_batch(x, y)
    assert abs(loss - total) <= RTOL_SUMS * abs(total), (loss, total)
    expected = [b - lr * grads[id(v)] for b, v in zip(before, model.trainable_weights)]
    assert_step_close(before, [v.numpy() for v in model.trainable_weights], expected,
                      err_msg=f"{name} on {backend_name}")


def test_layer_normalization_infers_as_it_trains():
    """No running statistics: predict computes what the training forward computes."""
    pynn.utils.set_random_seed(0)
    model = _ln_model()
    x = _rng(1).normal(size=(3, 3, 5)).astype(np.float32)
    params = {id(v): torch.tensor(v.numpy().astype(np.float64)) for v in model.weights}
    want = torch_mirror.forward(model, [torch.tensor(x.astype(np.float64))], params, False)[0]
    assert_close(model.predict(x, verbose=0), want.numpy())


# ---- the noise layers --------------------------------------------------------------------

def _noise_model(layer):
    inp = pynn.Input((3, 2, 4))
    h = L.Dense(4)(inp)
    h = layer(h)
    return pynn.Model(inp, L.Dense(2)(L.Flatten()(h)))


NOISE_LAYERS = {
    "gaussian_noise": lambda: L.GaussianNoise(0.4, seed=11),
    "gaussian_dropout": lambda: L.GaussianDropout(0.3, seed=12),
    "spatial_dropout2d": lambda: L.SpatialDropout2D(0.5, seed=13),
    "spatial_dropout2d_channels_first": lambda: L.SpatialDropout2D(0.5, "channels_first",
                                                                   seed=14),
}


def _torch_noise(layer, h, seed, step):
    """The layer's training output in torch, with the noise reference.py draws."""
    shape = tuple(h.shape)
    if isinstance(layer, L.SpatialDropout2D):
        broadcast = [False, True, True, False] if layer.data_format == "channels_last" else \
            [False, False, True, True]
        mask = ref.dropout_mask(shape, broadcast, seed, step, layer.rate)
        # whole feature maps: the mask is constant over the spatial axes
        axes = (1, 2) if layer.data_format == "channels_last" else (2, 3)
        assert np.all(mask.min(axis=axes) == mask.max(axis=axes))
        return h * torch.tensor(mask.astype(np.float64))
    mode = 0 if isinstance(layer, L.GaussianNoise) else 1
    scale = layer.stddev if mode == 0 else math.sqrt(layer.rate / (1 - layer.rate))
    noise = ref.gaussian_noise(np.zeros(shape, np.float32), seed, step, mode, scale)[1]
    noise = torch.tensor(noise.astype(np.float64))
    return h + noise if mode == 0 else h * noise


@pytest.mark.parametrize("name", list(NOISE_LAYERS))
def test_noise_training_step_matches_torch_with_the_drawn_noise(name, backend_name):
    pynn.utils.set_random_seed(6)
    layer = NOISE_LAYERS[name]()
    model = _noise_model(layer)
    rng = _rng(7)
    x = rng.normal(size=(3, 3, 2, 4)).astype(np.float32)
    y = rng.normal(size=(3, 2)).astype(np.float32)
    lr = 0.1
    model.compile(optimizer=pynn.optimizers.SGD(lr), loss="mse", backend=backend_name)
    dense1, dense2 = model.layers[1], model.layers[-1]
    w = [torch.tensor(v.numpy().astype(np.float64), requires_grad=True)
         for v in model.trainable_weights]
    h = torch.tensor(x.astype(np.float64)) @ w[0] + w[1]
    h = _torch_noise(layer, h, dropout_seed(layer._seed, 0), 1)     # the first step is 1
    out = h.reshape(3, -1) @ w[2] + w[3]
    total = ((out - torch.tensor(y.astype(np.float64))) ** 2).mean()
    total.backward()
    before = [t.detach().numpy().copy() for t in w]
    loss = model.train_on_batch(x, y)
    total = float(total.detach())
    assert abs(loss - total) <= RTOL_SUMS * total
    assert_step_close(before, [v.numpy() for v in model.trainable_weights],
                      [b - lr * t.grad.numpy() for b, t in zip(before, w)],
                      err_msg=f"{name} on {backend_name}")
    assert [dense1.kernel, dense2.kernel] == [model.trainable_weights[0],
                                              model.trainable_weights[2]]


@pytest.mark.parametrize("name", list(NOISE_LAYERS))
def test_noise_layers_are_the_identity_in_inference(name):
    layer = NOISE_LAYERS[name]()
    x = _rng(2).normal(size=(2, 3, 2, 4)).astype(np.float32)
    assert_bitwise(layer(x), x)
    assert_bitwise(layer(x, training=False), x)
    model = _noise_model(NOISE_LAYERS[name]())
    model.compile(optimizer="sgd", loss="mse")
    predict_ops = {op.name for op in model.engine.plan("predict").ops}
    train_ops = {op.name for op in model.engine.plan("train").ops}
    noise_op = "dropout" if name.startswith("spatial") else "gaussian_noise"
    assert noise_op in train_ops and noise_op not in predict_ops


def test_noise_is_active_in_training_and_rate_zero_is_the_identity():
    x = _rng(3).normal(size=(4, 6)).astype(np.float32)
    for layer in (L.GaussianNoise(0.5, seed=1), L.GaussianDropout(0.5, seed=1)):
        y = layer(x, training=True)
        assert not np.array_equal(y, x)
    for layer in (L.GaussianNoise(0.0), L.GaussianDropout(0.0)):
        assert_bitwise(layer(x, training=True), x)


# ---- determinism: threads, whole epoch vs step by step --------------------------------------

class _EveryBatch(pynn.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        pass


def _fit(path, threads_count):
    before = pynn.get_num_threads()
    pynn.set_num_threads(threads_count)
    try:
        pynn.utils.set_random_seed(8)
        inp = pynn.Input((4, 4, 8))
        h = L.Conv2D(8, 3, padding="same")(inp)
        h = L.GroupNormalization(4)(h)
        h = L.SpatialDropout2D(0.2)(h)
        h = L.GaussianNoise(0.1)(h)
        h = L.LayerNormalization(axis=[1, 2, 3])(h)
        h = L.Flatten()(h)
        h = L.GaussianDropout(0.2)(L.Dense(16)(h))
        h = L.UnitNormalization()(h)
        model = pynn.Model(inp, L.Dense(3, activation="softmax")(h))
        model.compile(optimizer="adam", loss="categorical_crossentropy", backend="cpu")
        model.engine.force_python = path == "op by op"
        rng = _rng(1)
        x = rng.normal(size=(40, 4, 4, 8)).astype(np.float32)
        y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 40)]
        callbacks = [_EveryBatch()] if path == "step by step" else []
        hist = model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=callbacks)
        return model.get_weights(), hist.history["loss"]
    finally:
        pynn.set_num_threads(before)


def test_whole_epoch_step_by_step_op_by_op_and_threads_agree_bitwise(c_calls):
    runs = {}
    for path, t in (("whole epoch", 2), ("step by step", 2), ("op by op", 1),
                    ("whole epoch", 1)):
        c_calls.clear()
        runs[path, t] = _fit(path, t)
        if path == "whole epoch":
            assert c_calls == [5, 5]
        elif path == "step by step":
            assert c_calls == [1] * 10
    weights, losses = runs["whole epoch", 2]
    assert np.isfinite(losses).all()
    for key, (w, h) in runs.items():
        assert h == losses, key
        for a, b in zip(w, weights):
            assert_bitwise(a, b, err_msg=str(key))


# ---- configuration, saving, ONNX --------------------------------------------------------

CONFIG_LAYERS = [
    lambda: L.LayerNormalization(axis=[2, 3], epsilon=0.01, center=False,
                                 gamma_initializer="zeros"),
    lambda: L.GroupNormalization(groups=2, epsilon=1e-4, scale=False),
    lambda: L.UnitNormalization(axis=-1),
    lambda: L.SpatialDropout2D(0.3, data_format="channels_last", seed=4),
    lambda: L.GaussianNoise(0.2, seed=5),
    lambda: L.GaussianDropout(0.25, seed=6),
]


@pytest.mark.parametrize("make", CONFIG_LAYERS, ids=lambda m: type(m()).__name__)
def test_config_round_trips_through_json(make):
    layer = make()
    layer(np.zeros((2, 3, 4, 4), np.float32))
    config = json.loads(json.dumps(layer.get_config()))
    again = type(layer).from_config(config)
    again(np.zeros((2, 3, 4, 4), np.float32))
    assert json.loads(json.dumps(again.get_config())) == config
    assert [v.shape for v in again.weights] == [v.shape for v in layer.weights]


def test_layer_normalization_config_follows_keras():
    layer = L.LayerNormalization()
    assert layer.get_config()["axis"] == -1
    layer(np.zeros((2, 3, 4), np.float32))
    config = layer.get_config()
    assert config["axis"] == [2]                 # Keras 3 keeps the built, sorted axes
    assert {"epsilon", "center", "scale", "rms_scaling", "beta_initializer",
            "gamma_initializer", "beta_regularizer", "gamma_regularizer", "beta_constraint",
            "gamma_constraint"} <= set(config)
    group = L.GroupNormalization(-1)
    group(np.zeros((2, 5), np.float32))
    assert group.get_config()["groups"] == 5      # instance normalization: one per channel
    spatial = L.SpatialDropout2D(0.2, seed=1).get_config()
    assert set(spatial) == {"rate", "seed", "name", "dtype", "data_format"}


def _saving_model():
    pynn.utils.set_random_seed(2)
    inp = pynn.Input((4, 4, 4), name="image")
    h = L.Conv2D(4, 3, padding="same")(inp)
    h = L.GroupNormalization(2, name="group_norm")(h)
    h = L.SpatialDropout2D(0.2, name="spatial_dropout")(h)
    h = L.GaussianNoise(0.1, name="noise")(h)
    h = L.LayerNormalization(axis=[2, 3], name="layer_norm")(h)
    h = L.Flatten()(h)
    h = L.GaussianDropout(0.3, name="gaussian_dropout")(L.Dense(6)(h))
    h = L.UnitNormalization(name="unit_norm")(h)
    h = L.LayerNormalization(name="layer_norm_last", rms_scaling=False)(h)
    model = pynn.Model(inp, L.Dense(3, name="head")(h))
    _randomize_affine(model, 3)
    return model


@pytest.mark.parametrize("suffix", [".keras", ".pynn"])
def test_save_and_load_predict_and_train_identically(tmp_path, suffix):
    model = _saving_model()
    model.compile(optimizer="sgd", loss="mse")
    rng = _rng(4)
    x = rng.normal(size=(6, 4, 4, 4)).astype(np.float32)
    y = rng.normal(size=(6, 3)).astype(np.float32)
    model.fit(x, y, batch_size=3, epochs=1, verbose=0)
    path = tmp_path / f"m{suffix}"
    model.save(path)
    loaded = pynn.load_model(path)
    assert_bitwise(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert [type(a) for a in loaded.layers] == [type(b) for b in model.layers]
    for a, b in zip(loaded.layers, model.layers):
        if isinstance(a, (L.GaussianNoise, L.GaussianDropout, L.SpatialDropout2D)):
            # the seeds drawn are saved (.keras: as Keras's 32-bit seeds, as Dropout's)
            assert a._seed == (b._seed if suffix == ".pynn" else b._seed % 2**32)
    if suffix == ".pynn":                       # the optimizer state too: training goes on alike
        model.fit(x, y, batch_size=3, epochs=1, verbose=0, shuffle=False)
        loaded.fit(x, y, batch_size=3, epochs=1, verbose=0, shuffle=False)
        for a, b in zip(loaded.get_weights(), model.get_weights()):
            assert_bitwise(a, b)


def test_onnx_export_matches_predict(tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = _saving_model()
    x = _rng(5).normal(size=(5, 4, 4, 4)).astype(np.float32)
    x[0, :, :, :] = 0.0                              # a zero row for the unit norm's clamp
    want = model.predict(x, verbose=0)
    for opset in (13, 17, 18):
        path = tmp_path / f"m{opset}.onnx"
        model.export(path, opset=opset)
        import onnx
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto, full_check=True)
        ops = {n.op_type for n in proto.graph.node}
        assert ("LayerNormalization" in ops) == (opset >= 17)
        got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
            None, {model.input_names[0]: x})[0]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("opset", [13, 17, 18])
def test_onnx_export_without_affine_weights_and_over_several_axes(tmp_path, opset):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    pynn.utils.set_random_seed(4)
    model = pynn.Sequential([L.Input((3, 2, 4)), L.Dense(4),
                             L.LayerNormalization(axis=[1, 2, 3], scale=False, center=False),
                             L.GroupNormalization(-1, center=False, scale=False),
                             L.LayerNormalization(center=False, epsilon=0.1),
                             L.UnitNormalization(axis=[2, 3]), L.GaussianDropout(0.1)])
    x = _rng(8).normal(2.0, 3.0, size=(4, 3, 2, 4)).astype(np.float32)
    model.export(tmp_path / "m.onnx", opset=opset)
    got = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None,
                                                             {model.input_names[0]: x})[0]
    np.testing.assert_allclose(got, model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)


def test_onnx_rms_scaling_is_decomposed(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    with pytest.warns(UserWarning):
        norm = L.LayerNormalization(rms_scaling=True)
    model = pynn.Sequential([L.Input((5,)), L.Dense(5), norm])
    _randomize_affine(model, 1)
    x = _rng(6).normal(size=(3, 5)).astype(np.float32)
    model.export(tmp_path / "rms.onnx")
    got = ort.InferenceSession(str(tmp_path / "rms.onnx")).run(None,
                                                               {model.input_names[0]: x})[0]
    np.testing.assert_allclose(got, model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)


# ---- Keras 3 itself -------------------------------------------------------------------

def test_keras_reads_pynn_files_and_computes_the_same(tmp_path):
    from test_keras_files import _keras_python, run_keras
    python = _keras_python()
    if python is None:
        pytest.skip("Keras 3 is not installed: set PYNN_KERAS_PYTHON to the python of a venv "
                    "with keras, jax and h5py")
    model = _saving_model()
    x = _rng(7).normal(size=(3, 4, 4, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    model.save(tmp_path / "m.keras")
    run_keras(python, tmp_path, """
        m = keras.saving.load_model("m.keras")
        x = np.load("x.npy")
        np.save("keras_out.npy", np.asarray(m.predict(x, verbose=0)))
        names = [type(l).__name__ for l in m.layers]
        assert "GroupNormalization" in names and "UnitNormalization" in names, names
        g = m.get_layer("group_norm"); u = m.get_layer("layer_norm")
        assert [w.shape for w in g.get_weights()] == [(4,), (4,)]
        assert [tuple(w.shape) for w in u.get_weights()] == [(4, 4), (4, 4)]
        # Keras's own layers, saved for pynn
        inp = keras.Input((3, 4))
        h = keras.layers.LayerNormalization(axis=[1, 2], epsilon=0.01)(inp)
        h = keras.layers.GroupNormalization(2)(h)
        h = keras.layers.UnitNormalization()(h)
        h = keras.layers.GaussianNoise(0.1)(h)
        h = keras.layers.GaussianDropout(0.1)(h)
        k = keras.Model(inp, h)
        rng = np.random.default_rng(0)
        k.set_weights([rng.normal(1, 0.3, w.shape) for w in k.get_weights()])
        z = rng.normal(size=(2, 3, 4)).astype("float32")
        np.save("z.npy", z)
        np.save("keras_z.npy", np.asarray(k.predict(z, verbose=0)))
        k.save("k.keras")
    """)
    assert_close(model.predict(x, verbose=0), np.load(tmp_path / "keras_out.npy"), rtol=1e-5)
    k = pynn.load_model(tmp_path / "k.keras")
    assert_close(k.predict(np.load(tmp_path / "z.npy"), verbose=0),
                 np.load(tmp_path / "keras_z.npy"), rtol=1e-5)


# ---- bad arguments ---------------------------------------------------------------------

BAD = [
    (lambda: L.LayerNormalization(epsilon=-1e-3), ValueError, "epsilon=-0.001"),
    (lambda: L.LayerNormalization(axis="last"), TypeError, "axis='last'"),
    (lambda: L.LayerNormalization(axis=[]), TypeError, "axis=[]"),
    (lambda: L.LayerNormalization(axis=100), ValueError, "axis=100"),
    (lambda: L.UnitNormalization(axis=[-1, 70]), ValueError, "axis=[-1, 70]"),
    (lambda: L.LayerNormalization(center="yes"), ValueError, "center='yes'"),
    (lambda: L.GroupNormalization(groups=0), ValueError, "groups=0"),
    (lambda: L.GroupNormalization(groups=2.0), ValueError, "groups=2.0"),
    (lambda: L.GroupNormalization(epsilon=-1.0), ValueError, "epsilon=-1.0"),
    (lambda: L.GroupNormalization(epsilon=0), ValueError, "epsilon=0"),   # 0/0 on a flat group
    (lambda: L.GroupNormalization(axis=1.5), ValueError, "axis=1.5"),
    (lambda: L.UnitNormalization(axis=None), TypeError, "axis=None"),
    (lambda: L.SpatialDropout2D(1.0), ValueError, "rate=1.0"),
    (lambda: L.SpatialDropout2D(-0.1), ValueError, "rate=-0.1"),
    (lambda: L.SpatialDropout2D(0.1, data_format="nhwc"), ValueError, "data_format='nhwc'"),
    (lambda: L.GaussianNoise(-0.5), ValueError, "stddev=-0.5"),
    (lambda: L.GaussianNoise(float("nan")), ValueError, "stddev=nan"),
    (lambda: L.GaussianNoise(0.1, seed=-1), ValueError, "seed=-1"),
    (lambda: L.GaussianDropout(1.0), ValueError, "rate=1.0"),
    (lambda: L.GaussianDropout(-0.2), ValueError, "rate=-0.2"),
    (lambda: L.LayerNormalization(beta_regularizer="l3"), ValueError, "beta_regularizer"),
]


@pytest.mark.parametrize("make,error,text", BAD, ids=[b[2] for b in BAD])
def test_bad_constructor_arguments_name_the_argument_and_value(make, error, text):
    with pytest.raises(error, match=__import__("re").escape(text)):
        make()


BAD_CALLS = [
    (lambda: L.GroupNormalization(groups=4), (6,), "groups (4)", "channels (6)"),
    (lambda: L.GroupNormalization(groups=8), (2, 6), "groups (8)", "channels (6)"),
    (lambda: L.GroupNormalization(axis=1), (3, 4), "axis=1", "channels"),
    (lambda: L.LayerNormalization(axis=3), (3, 4), "axis=3", "out of bounds"),
    (lambda: L.LayerNormalization(axis=[1, 1]), (3, 4), "axis=[1, 1]", "duplicate"),
    (lambda: L.LayerNormalization(axis=1), (3, 4), "axis=1", "trailing"),
    (lambda: L.LayerNormalization(axis=0), (3,), "axis=0", "batch axis"),
    (lambda: L.UnitNormalization(axis=-4), (3, 4), "axis=-4", "out of bounds"),
    (lambda: L.SpatialDropout2D(0.2), (3, 4), "ndim=4", "ndim=3"),
]


@pytest.mark.parametrize("make,shape,value,why", BAD_CALLS, ids=[b[2] for b in BAD_CALLS])
def test_bad_inputs_name_the_value_and_leave_the_model_unchanged(make, shape, value, why):
    inp = pynn.Input(shape)
    h = L.Dense(shape[-1])(inp)
    layer = make()
    with pytest.raises(ValueError) as info:
        layer(h)
    assert value in str(info.value) and why in str(info.value), str(info.value)
    assert not layer.built and layer.weights == []
    model = pynn.Model(inp, h)                        # the graph without the refused call
    assert [type(x).__name__ for x in model.layers] == ["InputLayer", "Dense"]
    with pytest.raises(ValueError):
        layer(np.zeros((2,) + shape, np.float32))     # eagerly too
    assert not layer.built


FUZZ = [
    (L.LayerNormalization, {}, ["axis", "epsilon", "center", "scale", "rms_scaling",
                                "beta_initializer", "gamma_initializer"], (3, 4)),
    (L.GroupNormalization, dict(groups=2), ["groups", "axis", "epsilon", "center", "scale"],
     (3, 4)),
    (L.UnitNormalization, {}, ["axis"], (3, 4)),
    (L.SpatialDropout2D, dict(rate=0.2), ["rate", "data_format", "seed"], (2, 2, 4)),
    (L.GaussianNoise, dict(stddev=0.2), ["stddev", "seed"], (3, 4)),
    (L.GaussianDropout, dict(rate=0.2), ["rate", "seed"], (3, 4)),
]


def test_random_bad_arguments_raise_only_value_or_type_errors():
    """tests/test_argument_fuzz.py's wrong values, one or two at a time, for these layers:
    constructing and calling (eagerly, in training) succeeds or raises ValueError /
    TypeError, nothing else."""
    import random
    import warnings
    from test_argument_fuzz import generic_values
    rnd = random.Random(16)
    escaped, refused = [], 0
    for i in range(300):
        cls, good, names, shape = rnd.choice(FUZZ)
        kwargs = dict(good)
        for key in rnd.sample(names, min(len(names), rnd.choice([1, 2]))):
            kwargs[key] = rnd.choice(generic_values())
        x = np.ones((2,) + shape, np.float32)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                layer = cls(**kwargs)
                y = layer(x, training=True)
            assert y.shape == x.shape and np.isfinite(y).all(), (cls.__name__, kwargs)
        except (ValueError, TypeError):
            refused += 1
        except Exception as exc:  # noqa: BLE001  (what the test is looking for)
            escaped.append(f"#{i} {cls.__name__}({kwargs!r:.120}): {type(exc).__name__}: {exc}")
    assert not escaped, "\n".join(escaped[:10])
    assert 100 < refused < 300

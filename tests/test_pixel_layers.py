"""The pixel-value preprocessing layers (issue 12): Rescaling, Normalization, RandomContrast,
RandomBrightness.

  kernels      the C and CUDA kernels of each (csrc/pixel.c, backend/cuda/pixel.py) against
               the reference (reference.py), the C ones bitwise on 1 and 3 threads;
  reference    against Keras 3's formulas on hand-computed cases; the backward passes
               against a directional difference (the maps are linear away from clipping);
  layers       Keras's factor semantics and refusals, adapt on arrays and iterables,
               invert, training vs inference, eager calls;
  models       Rescaling(1/255) + RandomContrast + Conv2D trains one C call per epoch,
               bitwise the same step by step, op by op and on 1 vs 2 threads; the layers
               after trainable ones pass gradients (numpy vs cpu); save / load.
"""
import numpy as np
import pytest

import pynn
from pynn import backend as backends
from pynn import layers as L
from pynn.backend import reference as ref

from conftest import EveryBatch, RTOL_ELEMENTWISE, assert_bitwise, assert_close, usable_backend

NUMPY = backends.get("numpy")


def images(shape, seed=0, low=0.0, high=255.0):
    return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)


# ---- kernels: C and CUDA against the reference ------------------------------------------

CPU_SHAPES = [(1, 1, 1, 1), (3, 5, 7, 3), (2, 13, 11, 67), (5, 31, 37, 3)]   # 67 > a block
CUDA_SHAPES = [(1, 1, 1, 1), (2, 3, 2, 3)]


def shapes_for(name):
    return CPU_SHAPES if name == "cpu" else CUDA_SHAPES


def run(be, fn, *arrays):
    """fn(be, *device arrays) -> {name: device array}, as host arrays."""
    dev = [None if a is None else be.from_host(np.ascontiguousarray(a)) for a in arrays]
    out = fn(be, *dev)
    return {k: np.array(be.to_host(v)) for k, v in out.items()}


def on_threads(name, fn, threads):
    """fn() on `name`; on cpu on 1 and 3 threads, which must agree bitwise."""
    if name != "cpu":
        return fn()
    threads(1)
    first = fn()
    threads(3)
    again = fn()
    for k in first:
        assert_bitwise(again[k], first[k], err_msg=k)
    return first


@pytest.mark.parametrize("name", ["cpu", "cuda"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_channel_affine_kernel(name, per_channel, threads):
    be = backends.get(usable_backend(name))
    for shape in shapes_for(name):
        x = images(shape, 1) - 100
        c, inner = (shape[-1], 1) if per_channel else (1, int(np.prod(shape[1:])))
        rng = np.random.default_rng(2)
        scale = rng.normal(size=c).astype(np.float32)
        offset = rng.normal(size=c).astype(np.float32)
        for off in (offset, None):
            def fn(be, x, s, o):
                y = be.empty(x.shape)
                be.channel_affine(x, s, o, c, inner, y)
                return {"y": y}
            got = on_threads(name, lambda: run(be, fn, x, scale, off), threads)
            assert_close(got["y"], ref.channel_affine(x, scale, off, c, inner))
            if name == "cpu":       # one product and one sum per element: bitwise
                assert_bitwise(got["y"], ref.channel_affine(x, scale, off, c, inner))


@pytest.mark.parametrize("name", ["cpu", "cuda"])
@pytest.mark.parametrize("invert", [False, True])
def test_normalize_kernel(name, invert, threads):
    be = backends.get(usable_backend(name))
    for shape in shapes_for(name):
        x = images(shape, 3) - 100
        c, inner = shape[-1], 1
        rng = np.random.default_rng(4)
        mean = rng.normal(size=c).astype(np.float32)
        var = rng.uniform(0, 4, size=c).astype(np.float32)
        var[0] = 0.0                                   # the epsilon floor
        for m in (mean, None):
            def fn(be, x, m_, v_):
                y = be.empty(x.shape)
                be.normalize(x, m_, v_, c, inner, invert, 1e-7, y)
                return {"y": y}
            got = on_threads(name, lambda: run(be, fn, x, m, var), threads)
            assert_close(got["y"], ref.normalize(x, m, var, c, inner, invert, 1e-7))


@pytest.mark.parametrize("name", ["cpu", "cuda"])
def test_random_contrast_kernels(name, threads):
    be = backends.get(usable_backend(name))
    for i, shape in enumerate(shapes_for(name)):
        x = images(shape, 5 + i)
        dy = images(shape, 9 + i, -1, 1)
        seed, counter, lower, upper, vmin, vmax = 12345 + i, 7, 0.3, 0.6, 20.0, 230.0

        def fn(be, x, dy):
            y, f = be.empty(x.shape), be.empty((x.shape[0], 1))
            be.random_contrast(x, seed, counter, lower, upper, vmin, vmax, f, y)
            dx = be.empty(x.shape)
            be.random_contrast_backward(x, f, dy, vmin, vmax, dx)
            return {"y": y, "factors": f, "dx": dx}
        got = on_threads(name, lambda: run(be, fn, x, dy), threads)
        y, factors = ref.random_contrast(x, seed, counter, lower, upper, vmin, vmax)
        assert_close(got["factors"].reshape(-1), factors)
        assert_close(got["y"], y)
        assert_close(got["dx"], ref.random_contrast_backward(x, factors, dy, vmin, vmax))
        if name == "cpu":
            assert_bitwise(got["factors"].reshape(-1), factors)


@pytest.mark.parametrize("name", ["cpu", "cuda"])
def test_random_brightness_kernel(name, threads):
    be = backends.get(usable_backend(name))
    for i, shape in enumerate(shapes_for(name)):
        x = images(shape, 11 + i)
        seed, counter, lower, upper, vmin, vmax = 99 + i, 3, -0.4, 0.5, 0.0, 255.0
        for with_mask in (True, False):
            def fn(be, x):
                y = be.empty(x.shape)
                mask = be.empty(x.shape) if with_mask else None
                be.random_brightness(x, seed, counter, lower, upper, vmin, vmax, mask, y)
                return {"y": y, **({"mask": mask} if with_mask else {})}
            got = on_threads(name, lambda: run(be, fn, x), threads)
            y, mask = ref.random_brightness(x, seed, counter, lower, upper, vmin, vmax)
            assert_close(got["y"], y)
            if with_mask:
                assert_bitwise(got["mask"], mask)
            if name == "cpu":
                assert_bitwise(got["y"], y)


# ---- the reference against Keras 3's formulas --------------------------------------------

def test_reference_matches_keras_formulas_on_hand_computed_cases():
    x = np.array([[[[0.0], [10.0]], [[20.0], [30.0]]]], np.float32)     # one 2x2 image, mean 15
    # Rescaling: x * scale + offset
    assert_close(ref.channel_affine(x, np.float32([1 / 255]), np.float32([-1]), 1, 4),
                 x / 255 - 1)
    # Normalization: (x - mean) / max(sqrt(var), 1e-7), and its inverse
    assert_close(ref.normalize(x, np.float32([2]), np.float32([4]), 1, 4, False, 1e-7),
                 (x - 2) / 2)
    assert_close(ref.normalize(x, np.float32([2]), np.float32([4]), 1, 4, True, 1e-7), x * 2 + 2)
    assert_close(ref.normalize(x, np.float32([2]), np.float32([0]), 1, 4, False, 1e-7),
                 (x - 2) / 1e-7)
    # RandomContrast: factor uniform in [1 - lower, 1 + upper], (x - mean) f + mean, clipped
    u = float(ref.random_uniform(5, 1, 1)[0])
    f = (1 - 0.2) + u * ((1 + 0.5) - (1 - 0.2))
    y, factors = ref.random_contrast(x, 5, 1, 0.2, 0.5, 0, 25)
    assert factors[0] == pytest.approx(f, rel=1e-6)
    assert_close(y, np.clip((x.astype(np.float64) - 15) * f + 15, 0, 25))
    # RandomBrightness: delta uniform in [lower, upper] times the value range, clipped
    d = (-0.5 + u * (0.5 - -0.5)) * 30
    y, mask = ref.random_brightness(x, 5, 1, -0.5, 0.5, 0, 30)
    assert_close(y, np.clip(x.astype(np.float64) + d, 0, 30))
    assert_bitwise(mask, ((x + np.float32(d) >= 0) & (x + np.float32(d) <= 30)).astype(np.float32))


def test_random_backwards_are_the_adjoints_of_the_forwards():
    """Away from clipping both maps are linear in x for fixed draws: <dy, J v> equals
    <backward(dy), v>, J v taken as a difference (exact up to float32 rounding)."""
    rng = np.random.default_rng(0)
    x = images((3, 4, 5, 2), 1)
    v = rng.normal(size=x.shape).astype(np.float32)
    dy = rng.normal(size=x.shape).astype(np.float32)
    lo, hi = -1e4, 1e4
    y0, factors = ref.random_contrast(x, 3, 2, 0.4, 0.4, lo, hi)
    y1, _ = ref.random_contrast(x + v, 3, 2, 0.4, 0.4, lo, hi)
    jv = y1.astype(np.float64) - y0
    lhs = float((dy * jv).sum())
    rhs = float((ref.random_contrast_backward(x, factors, dy, lo, hi).astype(np.float64) * v).sum())
    assert lhs == pytest.approx(rhs, rel=1e-3)
    # where values are clipped the gradient is zero
    y, factors = ref.random_contrast(x, 3, 2, 0.9, 0.9, 100, 150)
    dx = ref.random_contrast_backward(x, factors, np.ones_like(x), 100, 150)
    assert np.isfinite(dx).all()


# ---- the layers --------------------------------------------------------------------------

def test_factor_semantics_are_keras_3s():
    assert L.RandomContrast(0.5).factor == (0.0, 0.5)          # Keras 3 clips -f to 0
    assert L.RandomContrast((0.7, 0.2)).factor == (0.2, 0.7)
    assert L.RandomBrightness(0.3).factor == (-0.3, 0.3)
    assert L.RandomBrightness(-0.3).factor == (-0.3, 0.3)
    assert L.RandomBrightness((0.4, -0.1)).factor == (-0.1, 0.4)
    assert L.RandomBrightness(0.1, value_range=(1, 0)).value_range == (0.0, 1.0)


@pytest.mark.parametrize("make, message", [
    (lambda: L.RandomContrast(-0.1), "factor=-0.1"),
    (lambda: L.RandomContrast(1.5), "factor=1.5"),
    (lambda: L.RandomContrast((1.2, 1.5)), "factor=(1.2, 1.5)"),
    (lambda: L.RandomContrast((0.1, 0.2, 0.3)), "factor="),
    (lambda: L.RandomContrast("x"), "factor='x'"),
    (lambda: L.RandomBrightness(1.5), "factor=1.5"),
    (lambda: L.RandomBrightness((-3, -2)), "factor=(-3, -2)"),
    (lambda: L.RandomBrightness(0.2, value_range=(0,)), "value_range=(0,)"),
    (lambda: L.RandomBrightness(0.2, value_range="0-255"), "value_range='0-255'"),
    (lambda: L.RandomContrast(0.2, value_range=(255, 0)), "value_range=(255, 0)"),
    (lambda: L.RandomContrast(0.2, value_range=(0, float("nan"))), "value_range="),
    (lambda: L.RandomContrast(0.2, seed=-1), "seed=-1"),
    (lambda: L.Rescaling("a"), "scale='a'"),
    (lambda: L.Rescaling(1.0, offset=float("inf")), "offset=inf"),
    (lambda: L.Normalization(mean=1.0), "variance=None"),
    (lambda: L.Normalization(mean=[1, 2], variance=[1]), "same shape"),
    (lambda: L.Normalization(axis="x"), "axis='x'"),
    (lambda: L.Normalization(mean=0.0, variance=-1.0), "variance=-1.0"),
])
def test_refusals_name_the_argument_and_value(make, message):
    with pytest.raises(ValueError) as info:
        make()
    assert message in str(info.value)


def test_refusals_of_shapes():
    x = images((2, 4, 4, 3))
    with pytest.raises(ValueError, match="ndim=4"):
        L.RandomContrast(0.2)(np.zeros((2, 3), np.float32), training=True)
    with pytest.raises(ValueError, match="broadcast"):
        L.Rescaling([1.0, 2.0])(x)
    with pytest.raises(ValueError, match="batch axis"):
        L.Normalization(axis=0)(x)
    with pytest.raises(ValueError, match="consecutive"):
        L.Normalization(axis=(1, 3))(x)
    n = L.Normalization()
    n.adapt(x)
    with pytest.raises(ValueError, match=r"adapt received a batch of shape \(2, 4, 4, 5\)"):
        n.adapt(np.zeros((2, 4, 4, 5), np.float32))
    with pytest.raises(ValueError, match="ndim >= 2"):
        L.Normalization().adapt(np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="no data"):
        L.Normalization().adapt([])
    with pytest.raises(ValueError, match="batch_size"):
        L.Normalization().adapt([x], batch_size=2)
    with pytest.raises(ValueError, match="NaN"):
        L.Normalization().adapt(np.full((2, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match="given mean and variance"):
        L.Normalization(mean=0.0, variance=1.0).adapt(x)


@pytest.mark.parametrize("axis, reduce", [(-1, (0, 1, 2)), (None, (0, 1, 2, 3)),
                                          ((1, 2), (0, 3)), ((2, 3), (0, 1))])
def test_adapt_on_an_array_and_on_batches_equals_numpys_mean_and_var(axis, reduce):
    x = images((10, 3, 4, 2), 7)
    want_mean, want_var = x.astype(np.float64).mean(reduce), x.astype(np.float64).var(reduce)

    def check(layer, count):
        assert_close(layer.adapt_mean.numpy().reshape(want_mean.shape), want_mean)
        assert_close(layer.adapt_variance.numpy().reshape(want_var.shape), want_var)
        assert float(layer.count.numpy().reshape(())) == count
    count = int(np.prod([x.shape[d] for d in reduce]))
    for data, kwargs in [(x, {}), (x, {"batch_size": 3}), ([x[:4], x[4:7], x[7:]], {}),
                         ((b for b in (x[:5], x[5:])), {}),
                         ([(x[:6], np.zeros(6)), (x[6:], np.zeros(4))], {})]:
        layer = L.Normalization(axis=axis)
        layer.adapt(data, **kwargs)
        check(layer, count)
    layer = L.Normalization(axis=axis)                 # steps: the first batches only
    layer.adapt([x[:4], x[4:]], steps=1)
    assert_close(layer.adapt_mean.numpy().reshape(want_mean.shape),
                 x[:4].astype(np.float64).mean(reduce))
    # and the layer then normalizes with them
    y = layer(x[:4])
    assert abs(y.astype(np.float64).mean(reduce)).max() < 1e-4


def test_adapt_reads_an_iterable_of_x_y_tuples():
    x = images((12, 2, 2, 3), 8)
    ds = [(x[:5], np.arange(5)), (x[5:10], np.arange(5)), (x[10:], np.arange(2))]
    layer = L.Normalization()
    layer.adapt(ds)
    assert_close(layer.adapt_mean.numpy(), x.reshape(-1, 3).astype(np.float64).mean(0))


@pytest.mark.parametrize("axis", [-1, None])
def test_invert_round_trip(axis):
    x = images((4, 3, 3, 2), 9)
    norm = L.Normalization(axis=axis)
    norm.adapt(x)
    mean, var = norm.adapt_mean.numpy(), norm.adapt_variance.numpy()
    back = L.Normalization(axis=axis, mean=mean, variance=var, invert=True)
    assert_close(back(norm(x)), x)
    assert back.get_weights() == []                   # given statistics are constants


def test_training_versus_inference():
    x = images((3, 4, 4, 2), 10)
    for layer in (L.RandomContrast(0.5, seed=1), L.RandomBrightness(0.5, seed=1)):
        assert_bitwise(layer(x), x)
        assert_bitwise(layer(x, training=False), x)
        first, second = layer(x, training=True), layer(x, training=True)
        assert not np.array_equal(first, x)
        assert not np.array_equal(first, second)      # each eager call draws anew
        assert first.min() >= 0 and first.max() <= 255
    model = pynn.Sequential([L.Input((4, 4, 2)), L.RandomContrast(0.5, seed=1),
                             L.RandomBrightness(0.5, seed=2)])
    assert_bitwise(model.predict(x, verbose=0), x)


def test_eager_calls_on_every_backend_match(backend_name):
    """The same layer on each backend draws the same factors (counter-based)."""
    x = images((2, 3, 2, 3), 11)
    layer = L.RandomContrast((0.2, 0.6), seed=4)
    model = pynn.Sequential([L.Input((3, 2, 3)), L.Rescaling(0.5, 1.0), layer,
                             L.RandomBrightness(0.2, value_range=(0, 200), seed=5)])
    model.compile(loss="mse", backend=backend_name)
    got = model(x, training=True)
    y, _ = ref.random_contrast(x * np.float32(0.5) + 1, pynn.models.plan.dropout_seed(4, 0), 1,
                               0.2, 0.6, 0, 255)
    assert got.shape == x.shape
    assert np.isfinite(got).all()
    # the reference of the first two layers, then brightness
    z, _ = ref.random_brightness(y, pynn.models.plan.dropout_seed(5, 0), 1, -0.2, 0.2, 0, 200)
    assert_close(got, z)


def test_dataset_map_style_use():
    x = images((6, 4, 4, 1), 12)
    aug = L.RandomBrightness(0.2, seed=3)
    batches = [aug(x[i:i + 3], training=True) for i in (0, 3)]
    assert all(b.shape == (3, 4, 4, 1) for b in batches)


# ---- models ------------------------------------------------------------------------------

def augmenting_cnn():
    return pynn.Sequential([L.Input((8, 8, 1)), L.Rescaling(1 / 255), L.RandomContrast(0.3),
                            L.RandomBrightness(0.1, value_range=(0, 1)),
                            L.Conv2D(4, 3, activation="relu"), L.Flatten(),
                            L.Dense(3, activation="softmax")])


def digits_like(n=60):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (n, 8, 8, 1)).astype(np.float32)
    y = (x.reshape(n, -1).mean(1) > 127).astype(np.int64) + (x[:, 0, 0, 0] > 200)
    return x, y




def train(threads, path):
    x, y = digits_like()
    before = pynn.get_num_threads()
    pynn.set_num_threads(threads)
    try:
        pynn.utils.set_random_seed(3)
        model = augmenting_cnn()
        model.compile(optimizer=pynn.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                      backend="cpu")
        model.engine.force_python = path == "op by op"
        model.fit(x, y, batch_size=16, epochs=2, verbose=0,
                  callbacks=[EveryBatch()] if path == "step by step" else [])
        return model.get_weights()
    finally:
        pynn.set_num_threads(before)


def test_an_augmenting_cnn_trains_one_c_call_per_epoch_and_repeats_bitwise(c_calls):
    steps = -(-60 // 16)
    runs = {}
    for path, threads, calls in [("whole epoch", 2, [steps] * 2), ("step by step", 2, [1] * 8),
                                 ("op by op", 2, []), ("whole epoch", 1, [steps] * 2)]:
        c_calls.clear()
        runs[path, threads] = train(threads, path)
        assert c_calls == calls, (path, threads)
    base = runs["whole epoch", 2]
    for key, weights in runs.items():
        for a, b in zip(weights, base):
            assert_bitwise(a, b, err_msg=str(key))
    assert any(not np.array_equal(a, b) for a, b in zip(base, train_untrained()))


def train_untrained():
    pynn.utils.set_random_seed(3)
    return augmenting_cnn().get_weights()


def test_gradients_pass_through_every_layer_numpy_against_cpu():
    """Each layer after a trainable one: the gradient flows back (dense weights change) and
    the cpu plan agrees with the reference backend."""
    x = images((8, 4, 4, 2), 13, 0, 1)
    y = np.random.default_rng(1).normal(size=(8, 2)).astype(np.float32)

    def make():
        pynn.utils.set_random_seed(5)
        norm = L.Normalization(mean=[0.1, 0.2], variance=[0.5, 2.0])
        return pynn.Sequential([L.Input((4, 4, 2)), L.Dense(2), L.Rescaling([2.0, 0.5], 0.1),
                                norm, L.RandomContrast(0.5, value_range=(-1, 1.5)),
                                L.RandomBrightness(0.2, value_range=(-1, 1.5)),
                                L.Normalization(mean=0.5, variance=4.0, invert=True, axis=None),
                                L.Flatten(), L.Dense(2)])
    results = {}
    for name in ("cpu", "numpy"):
        model = make()
        start = model.get_weights()
        model.compile(optimizer=pynn.optimizers.SGD(0.1), loss="mse", backend=name)
        model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
        results[name] = model.get_weights()
        assert not np.array_equal(results[name][0], start[0]), "no gradient reached Dense 1"
    for a, b in zip(results["cpu"], results["numpy"]):
        assert_close(a, b, rtol=1e-4)


def test_save_and_load_round_trip_with_adapted_statistics(tmp_path):
    x = images((20, 4, 4, 3), 14)
    y = np.random.default_rng(2).integers(0, 2, 20)
    norm = L.Normalization()
    norm.adapt(x)
    model = pynn.Sequential([L.Input((4, 4, 3)), L.Rescaling([1.0, 0.5, 2.0], offset=-1.0), norm,
                             L.RandomContrast((0.1, 0.4), value_range=(-5, 5), seed=8),
                             L.RandomBrightness(0.2, value_range=(-5, 5)), L.Flatten(),
                             L.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "pixel.pynn"
    model.save(path)
    loaded = pynn.load_model(path)
    assert [w.path for w in loaded.weights][:3] == \
        [f"{norm.name}/mean", f"{norm.name}/variance", f"{norm.name}/count"]
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        assert_bitwise(a, b)
    assert_bitwise(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    # the configs round trip
    for layer, again in zip(model.layers, loaded.layers):
        assert again.get_config() == layer.get_config()
    rebuilt = type(norm).from_config(norm.get_config())
    assert rebuilt.axis == norm.axis

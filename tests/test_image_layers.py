"""The geometric image preprocessing and augmentation layers (issue 12).

  kernels     each image kernel of cpu (C) and cuda against the NumPy reference, on awkward
              shapes, every interpolation and fill mode
  reference   the reference against Keras 3's definitions on hand-computed cases: rotation by
              exactly 90 degrees is np.rot90, a 2x zoom reads the centre, flips, crop
              offsets, a 2x2 -> 4x4 bilinear resize, the fill modes at the border
  layers      training vs inference, plan ops, one C call per epoch with bitwise repeats
              (step by step, op by op, 1 vs 2 threads), save/load, refusals
"""
import numpy as np
import pytest

import pynn
from pynn import _core
from pynn import backend as backends
from pynn import layers as L
from pynn.backend import reference as ref

from conftest import EveryBatch, assert_bitwise, assert_close

P = _core.IMAGE_PARAMS


def _images(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


def _on(be, arr):
    return be.from_host(np.ascontiguousarray(arr))


def _host(be, arr):
    return np.array(be.to_host(arr))


def _random_params(rng, n, h, w):
    """Transforms mixing rotation, scale, shear, shift and a little perspective; some reach
    far outside the image."""
    out = np.zeros((n, P), dtype=np.float32)
    for b in range(n):
        a = rng.uniform(-np.pi, np.pi)
        s = rng.uniform(0.4, 2.5)
        out[b, :6] = [s * np.cos(a), -s * np.sin(a) + rng.uniform(-0.3, 0.3),
                      rng.uniform(-w, w), s * np.sin(a), s * np.cos(a), rng.uniform(-h, h)]
        if b % 3 == 2:
            out[b, 6:] = rng.uniform(-0.02, 0.02, 2)
    return out


# ---- kernels against the reference -------------------------------------------------------------

AFFINE_CASES = [((3, 5, 7, 2), "bilinear", "reflect"), ((2, 4, 3, 1), "bilinear", "wrap"),
                ((2, 6, 5, 3), "bilinear", "constant"), ((1, 7, 7, 1), "bilinear", "nearest"),
                ((2, 5, 4, 2), "nearest", "reflect"), ((3, 3, 5, 1), "nearest", "constant"),
                ((1, 1, 1, 1), "bilinear", "wrap"), ((2, 4, 4, 3), "nearest", "wrap")]


@pytest.mark.parametrize("shape,interp,fill", AFFINE_CASES)
def test_affine_kernel_matches_reference(kernel_backend, shape, interp, fill):
    rng = np.random.default_rng(hash((shape, interp, fill)) % 2**32)
    x = _images(rng, shape)
    params = _random_params(rng, shape[0], shape[1], shape[2])
    expected = ref.affine_transform(x, params, interp, fill, 0.5)
    be = kernel_backend
    y = be.zeros(shape)
    be.affine_transform(_on(be, x), _on(be, params), interp, fill, 0.5, y)
    assert_close(_host(be, y), expected)


RESIZE_CASES = [((2, 5, 7, 3), (3, 11), None, "bilinear"), ((1, 2, 2, 1), (4, 4), None, "bilinear"),
                ((3, 7, 4, 2), (7, 4), None, "bilinear"), ((2, 6, 9, 1), (5, 5), (1, 2, 5, 5), "bilinear"),
                ((2, 4, 6, 2), (5, 5), (-1, 0, 6, 6), "bilinear"), ((2, 5, 3, 1), (8, 2), None, "nearest"),
                ((1, 3, 7, 2), (3, 3), (0, -2, 3, 11), "nearest")]


@pytest.mark.parametrize("shape,out_hw,window,interp", RESIZE_CASES)
def test_resize_kernel_matches_reference(kernel_backend, shape, out_hw, window, interp):
    rng = np.random.default_rng(sum(shape) + sum(out_hw))
    x = _images(rng, shape)
    window = window or (0, 0, shape[1], shape[2])
    expected = ref.resize(x, out_hw, window, interp, -2.0)
    be = kernel_backend
    y = be.zeros((shape[0],) + out_hw + (shape[3],))
    be.resize(_on(be, x), window, interp, -2.0, y)
    assert_close(_host(be, y), expected)


@pytest.mark.parametrize("mode", [(True, False), (False, True), (True, True)])
def test_flip_and_crop_kernels_match_reference(kernel_backend, mode):
    rng = np.random.default_rng(3)
    x = _images(rng, (5, 4, 7, 3))
    be = kernel_backend
    flags = np.zeros((5, P), dtype=np.float32)
    flags[[0, 3], 0] = 1.0
    for params in (flags, None):
        y = be.zeros(x.shape)
        be.flip(_on(be, x), None if params is None else _on(be, params), *mode, y)
        assert_bitwise(_host(be, y), ref.flip(x, params, *mode))
    offsets = np.zeros((5, P), dtype=np.float32)
    offsets[:, 0], offsets[:, 1] = [0, 2, 1, 0, 2], [4, 0, 3, 1, 2]
    y = be.zeros((5, 2, 3, 3))
    be.crop(_on(be, x), _on(be, offsets), 0, 0, y)
    assert_bitwise(_host(be, y), ref.crop(x, (2, 3), params=offsets))
    be.crop(_on(be, x), None, 1, 4, y)
    assert_bitwise(_host(be, y), x[:, 1:3, 4:7])


@pytest.mark.parametrize("kind,ranges,out_hw", [
    ("rotation", (-0.3, 0.2, 0, 0, 0), (0, 0)), ("zoom", (-0.5, 0.4, 0, 0, 0), (0, 0)),
    ("zoom", (-0.2, 0.1, 0.3, 0.6, 1), (0, 0)), ("translation", (-0.2, 0.3, -1, 1, 0), (0, 0)),
    ("flip", (0, 0, 0, 0, 0), (0, 0)), ("crop", (0, 0, 0, 0, 0), (3, 4))])
def test_random_parameters_match_reference(kernel_backend, kind, ranges, out_hw):
    be = kernel_backend
    params = be.zeros((9, P))
    be.image_random(kind, 12345, 7, 6, 9, out_hw, ranges, params)
    expected = ref.image_random(kind, 9, 6, 9, ranges, 12345, 7, out_hw)
    assert_close(_host(be, params), expected)
    if kind in ("flip", "crop"):
        assert_bitwise(_host(be, params), expected)


def test_random_parameters_are_per_image_and_per_step():
    a = ref.image_random("rotation", 6, 5, 5, (-0.5, 0.5, 0, 0, 0), 1, 1)
    b = ref.image_random("rotation", 6, 5, 5, (-0.5, 0.5, 0, 0, 0), 1, 2)
    assert len({tuple(r) for r in a}) == 6 and not np.array_equal(a, b)
    # image b's draws do not depend on the batch size (the counter-based stream)
    assert_bitwise(ref.image_random("zoom", 3, 5, 5, (-0.5, 0.5, 0, 0, 0), 1, 1),
                   ref.image_random("zoom", 8, 5, 5, (-0.5, 0.5, 0, 0, 0), 1, 1)[:3])
    crops = ref.image_random("crop", 500, 6, 6, (0,) * 5, 9, 1, (4, 3))
    assert set(crops[:, 0]) == {0, 1, 2} and set(crops[:, 1]) == {0, 1, 2, 3}


# ---- the reference against Keras's definitions ------------------------------------------------

def _fixed(kind, ranges, h, w, n=1):
    return ref.image_random(kind, n, h, w, ranges, 0, 1)


@pytest.mark.parametrize("interp", ["bilinear", "nearest"])
def test_rotation_by_a_quarter_turn_is_rot90(interp):
    """Keras 3 rotates counter-clockwise for a positive factor: np.rot90 of a square image."""
    x = np.arange(2 * 5 * 5 * 2, dtype=np.float32).reshape(2, 5, 5, 2)
    params = _fixed("rotation", (0.25, 0.25, 0, 0, 0), 5, 5, n=2)
    y = ref.affine_transform(x, params, interp, "constant", -1.0)
    expected = np.rot90(x, axes=(1, 2))
    np.testing.assert_allclose(y, expected, atol=1e-5)
    # the layer, eagerly, training: the same
    y = L.RandomRotation((0.25, 0.25), interpolation=interp, seed=3)(x, training=True)
    np.testing.assert_allclose(y, expected, atol=1e-5)
    half = L.RandomRotation((0.5, 0.5), interpolation="nearest", seed=3)(x, training=True)
    np.testing.assert_array_equal(half, np.rot90(x, 2, axes=(1, 2)))


def test_zoom_in_twice_reads_the_centre_region():
    """height_factor -0.5: zoom 0.5, output (i, j) reads input (0.5 i + (h-1)/4, ...)."""
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    params = _fixed("zoom", (-0.5, -0.5, 0, 0, 0), 4, 4)
    y = ref.affine_transform(x, params, "bilinear", "reflect")[0, :, :, 0]
    rows = 0.5 * np.arange(4) + 0.75
    expected = 4 * rows[:, None] + rows[None, :]      # x is linear: bilinear is exact
    np.testing.assert_allclose(y, expected, atol=1e-6)
    # zoom out 2x (factor 1.0) with constant fill: the image in the centre, fill around it
    x = np.ones((1, 5, 5, 1), np.float32)
    y = ref.affine_transform(x, _fixed("zoom", (1, 1, 0, 0, 0), 5, 5), "nearest", "constant",
                             0.0)[0, :, :, 0]
    np.testing.assert_array_equal(y, [[0, 0, 0, 0, 0], [0, 1, 1, 1, 0], [0, 1, 1, 1, 0],
                                      [0, 1, 1, 1, 0], [0, 0, 0, 0, 0]])


def test_translation_moves_content_down_and_right():
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    params = _fixed("translation", (0.25, 0.25, 0.5, 0.5, 0), 4, 4)   # 1 row, 2 columns
    y = ref.affine_transform(x, params, "bilinear", "constant", -1.0)[0, :, :, 0]
    expected = np.full((4, 4), -1.0, np.float32)
    expected[1:, 2:] = x[0, :3, :2, 0]
    np.testing.assert_allclose(y, expected, atol=1e-6)


def test_fill_modes_at_the_border():
    """A shift of 2 columns left of a 1x4 row a b c d, each fill mode (Keras 3)."""
    x = np.array([1, 2, 3, 4], np.float32).reshape(1, 1, 4, 1)
    shift = np.zeros((1, P), np.float32)
    shift[0, [0, 4]] = 1.0
    shift[0, 2] = -2.0                         # output column j reads input column j - 2
    got = {m: ref.affine_transform(x, shift, "nearest", m, 9.0)[0, 0, :, 0].tolist()
           for m in ("reflect", "wrap", "constant", "nearest")}
    assert got == {"reflect": [2, 1, 1, 2], "wrap": [3, 4, 1, 2], "constant": [9, 9, 1, 2],
                   "nearest": [1, 1, 1, 2]}
    # bilinear between the fill and the image: half a column out
    shift[0, 2] = -0.5
    y = ref.affine_transform(x, shift, "bilinear", "constant", 9.0)[0, 0, :, 0]
    np.testing.assert_allclose(y, [5.0, 1.5, 2.5, 3.5])
    y = ref.affine_transform(x, shift, "bilinear", "wrap", 9.0)[0, 0, :, 0]
    np.testing.assert_allclose(y, [2.5, 1.5, 2.5, 3.5])


def test_resize_two_by_two_to_four_by_four_by_hand():
    x = np.array([[1, 2], [3, 4]], np.float32).reshape(1, 2, 2, 1)
    y = ref.resize(x, (4, 4))[0, :, :, 0]
    # half-pixel centres: sample positions -0.25 (clamped to 0), 0.25, 0.75, 1.25 (to 1)
    line = np.array([0, 0.25, 0.75, 1])
    expected = 1 + line[None, :] + 2 * line[:, None]
    np.testing.assert_allclose(y, expected)
    np.testing.assert_allclose(L.Resizing(4, 4)(x)[0, :, :, 0], expected)
    np.testing.assert_array_equal(ref.resize(x, (4, 4), interpolation="nearest")[0, :, :, 0],
                                  [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])


def test_resizing_aspect_ratio_windows():
    x = np.arange(2 * 4 * 8 * 1, dtype=np.float32).reshape(2, 4, 8, 1)
    # crop to 1:1 -> the centre 4x4, then a 4x4 "resize" is a copy
    np.testing.assert_array_equal(L.Resizing(4, 4, crop_to_aspect_ratio=True)(x), x[:, :, 2:6])
    # pad to 1:1 -> 2 rows of fill above and below
    y = L.Resizing(8, 8, pad_to_aspect_ratio=True, fill_value=-1.0)(x)
    np.testing.assert_array_equal(y[:, 2:6], x)
    assert (y[:, :2] == -1).all() and (y[:, 6:] == -1).all()


def test_flip_and_crop_by_hand():
    x = np.arange(12, dtype=np.float32).reshape(1, 3, 4, 1)
    one = np.ones((1, P), np.float32)
    np.testing.assert_array_equal(ref.flip(x, one, True, False), x[:, :, ::-1])
    np.testing.assert_array_equal(ref.flip(x, one, False, True), x[:, ::-1])
    np.testing.assert_array_equal(ref.flip(x, one * 0, True, True), x)
    np.testing.assert_array_equal(L.CenterCrop(1, 2)(x)[0, :, :, 0], [[5, 6]])
    # CenterCrop of an image smaller than the target: smart resize (Keras)
    assert L.CenterCrop(5, 2)(x).shape == (1, 5, 2, 1)


# ---- layers -----------------------------------------------------------------------------------

def test_random_layers_act_only_in_training():
    rng = np.random.default_rng(0)
    x = _images(rng, (4, 6, 6, 2))
    for layer in (L.RandomFlip(seed=1), L.RandomRotation(0.2, seed=1), L.RandomZoom(0.3, seed=1),
                  L.RandomTranslation(0.2, 0.2, seed=1)):
        np.testing.assert_array_equal(layer(x), x)
        np.testing.assert_array_equal(layer(x, training=False), x)
        assert not np.array_equal(layer(x, training=True), x), layer
    crop = L.RandomCrop(4, 4, seed=1)
    inference = crop(x)
    np.testing.assert_allclose(inference, ref.resize(x, (4, 4)), atol=1e-6)   # same aspect
    trained = crop(x, training=True)
    assert trained.shape == (4, 4, 4, 2)
    windows = [tuple(map(int, np.argwhere((x[b, :, :, 0] == trained[b, 0, 0, 0]))[0]))
               for b in range(4)]
    for b, (t, l) in enumerate(windows):
        np.testing.assert_array_equal(trained[b], x[b, t:t + 4, l:l + 4])


def test_eager_calls_draw_anew_and_seeded_layers_repeat():
    x = _images(np.random.default_rng(1), (3, 5, 5, 1))
    a = L.RandomRotation(0.3, seed=5)
    first, second = a(x, training=True), a(x, training=True)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(L.RandomRotation(0.3, seed=5)(x, training=True), first)


def test_backends_agree_on_the_layers(backend_name):
    """A training-mode forward pass (fresh models, the same seeds) on each backend against
    the numpy backend's."""
    x = _images(np.random.default_rng(2), (3, 6, 5, 2))

    def run(backend, training):
        inputs = pynn.Input((6, 5, 2))
        t = L.RandomZoom((-0.4, 0.3), (0.1, 0.2), fill_mode="wrap", seed=11)(inputs,
                                                                           training=training)
        t = L.RandomFlip(seed=2)(t, training=training)
        t = L.RandomTranslation(0.2, 0.1, seed=4)(t, training=training)
        t = L.RandomCrop(4, 3, seed=5)(t, training=training)
        model = pynn.Model(inputs, t)
        model.compile(backend=backend)
        return model.predict(x, verbose=0)

    np.testing.assert_array_equal(run(backend_name, False), run("numpy", False))
    assert_close(run(backend_name, True), run("numpy", True))


def _augmenting_model(seed):
    pynn.utils.set_random_seed(seed)
    return pynn.Sequential([
        pynn.Input((8, 8, 1)), L.RandomFlip("horizontal"), L.RandomRotation(0.1),
        L.RandomZoom(0.2), L.Conv2D(3, 3, activation="relu"), L.Flatten(), L.Dense(2)])



def _train(path, threads):
    rng = np.random.default_rng(0)
    x = _images(rng, (40, 8, 8, 1))
    y = rng.integers(0, 2, 40)
    before = pynn.get_num_threads()
    pynn.set_num_threads(threads)
    try:
        model = _augmenting_model(3)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", backend="cpu")
        model.engine.force_python = path == "op by op"
        model.fit(x, y, batch_size=16, epochs=2, verbose=0,
                  callbacks=[EveryBatch()] if path == "step by step" else [])
        return model.get_weights(), model
    finally:
        pynn.set_num_threads(before)


def test_augmented_training_is_one_c_call_per_epoch_and_repeats_bitwise(c_calls):
    calls = c_calls
    weights, model = _train("whole epoch", 2)
    assert calls == [3, 3]
    for path, threads in [("step by step", 2), ("op by op", 2), ("whole epoch", 1)]:
        calls.clear()
        other, _ = _train(path, threads)
        for a, b in zip(other, weights):
            assert_bitwise(a, b, err_msg=f"{path} on {threads} thread(s)")


def test_plans_hold_the_image_ops_and_no_backward_for_them():
    model = _augmenting_model(1)
    model.compile(optimizer="sgd", loss="mse", backend="cpu")
    train = [op.name for op in model.plan.ops]
    assert train[:6] == ["image_random", "flip", "image_random", "affine", "image_random",
                         "affine"]
    assert "conv2d_backward" in train and not any(
        name.startswith(("flip", "affine", "crop", "resize")) and name.endswith("backward")
        for name in train)
    predict = [op.name for op in model.engine.plan("predict").ops]
    assert predict[0] == "conv2d"                  # inference: the random layers are identity


def test_save_and_load_round_trip(tmp_path):
    model = pynn.Sequential([
        pynn.Input((6, 6, 2)), L.Resizing(8, 8, interpolation="nearest"),
        L.RandomCrop(6, 6), L.RandomFlip("vertical"), L.RandomRotation((-0.2, 0.1),
                                                                        fill_mode="constant",
                                                                        fill_value=0.5),
        L.RandomZoom(0.2, (-0.1, 0.3)), L.RandomTranslation(0.1, (0.0, 0.2), fill_mode="nearest"),
        L.CenterCrop(4, 4), L.Flatten(), L.Dense(3)])
    model.compile(optimizer="sgd", loss="mse", backend="cpu")
    x = _images(np.random.default_rng(4), (5, 6, 6, 2))
    # pynn's own format keeps the 63-bit seeds drawn at build (a .keras file holds them
    # modulo 2**32, Keras's seed range)
    path = str(tmp_path / "m.pynn")
    model.save(path)
    loaded = pynn.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    keras_path = str(tmp_path / "m.keras")
    model.save(keras_path)
    np.testing.assert_array_equal(pynn.load_model(keras_path).predict(x, verbose=0),
                                  model.predict(x, verbose=0))
    for a, b in zip(model.layers, loaded.layers):
        assert a.get_config() == b.get_config()
    # the seeds drawn at build are in the config: training-mode calls draw the same
    train_a = pynn.Model(model.inputs, model(model.inputs[0], training=True))
    train_b = pynn.Model(loaded.inputs, loaded(loaded.inputs[0], training=True))
    np.testing.assert_array_equal(train_a.predict(x, verbose=0), train_b.predict(x, verbose=0))


def test_gradient_through_an_image_layer_is_refused():
    model = pynn.Sequential([pynn.Input((6, 6, 1)), L.Conv2D(2, 3, padding="same"),
                             L.RandomFlip(name="late_flip"), L.Flatten(), L.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", backend="cpu")
    with pytest.raises(ValueError, match="late_flip"):
        model.fit(np.zeros((4, 6, 6, 1), np.float32), np.zeros((4, 1), np.float32), verbose=0)
    # inference is fine
    assert model.predict(np.zeros((2, 6, 6, 1), np.float32), verbose=0).shape == (2, 1)


@pytest.mark.parametrize("make,match", [
    (lambda: L.RandomRotation(1.5), "factor"),
    (lambda: L.RandomRotation((0.1, 0.2, 0.3)), "factor"),
    (lambda: L.RandomRotation("a lot"), "factor"),
    (lambda: L.RandomZoom(-1.0), "height_factor"),
    (lambda: L.RandomZoom(0.2, 1.5), "width_factor"),
    (lambda: L.RandomTranslation(0.1, -1.2), "width_factor"),
    (lambda: L.RandomTranslation((0.1, 2), 0.1), "height_factor"),
    (lambda: L.RandomRotation(0.1, fill_mode="mirror"), "fill_mode"),
    (lambda: L.RandomZoom(0.1, interpolation="bicubic"), "interpolation"),
    (lambda: L.Resizing(4, 4, interpolation="lanczos3"), "interpolation"),
    (lambda: L.Resizing(4, 4, crop_to_aspect_ratio=True, pad_to_aspect_ratio=True),
     "aspect_ratio"),
    (lambda: L.Resizing(4, 4, fill_mode="reflect"), "fill_mode"),
    (lambda: L.Resizing(4, 4, antialias=True), "antialias"),
    (lambda: L.Resizing(0, 4), "height"),
    (lambda: L.CenterCrop(4, 2.5), "width"),
    (lambda: L.RandomFlip("diagonal"), "mode"),
    (lambda: L.RandomCrop(4, 4, seed=-1), "seed"),
    (lambda: L.RandomFlip(data_format="channels_first"), "data_format"),
])
def test_refusals(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_keras_factor_conventions():
    assert L.RandomRotation(0.2).factor == (-0.2, 0.2)
    assert L.RandomRotation((0.3, -0.1)).factor == (-0.1, 0.3)
    assert L.RandomZoom(-0.5).height_factor == (-0.5, 0.5)
    assert L.RandomTranslation(1.0, (0, 0.5)).width_factor == (0.0, 0.5)
    with pytest.raises(ValueError, match="rank|height, width"):
        L.RandomFlip()(np.zeros((3, 4, 2), np.float32), training=True)

"""Conv2DTranspose, UpSampling2D, UpSampling1D, ZeroPadding2D and Cropping2D (issue 16,
part C).

  torch           one SGD step of a model around each layer on every backend (cuda under
                  the simulator) against torch autograd in float64 (tests/torch_mirror.py:
                  F.conv_transpose2d with the Keras kernel (KH, KW, F, C) as torch's
                  (C, F, KH, KW), F.interpolate, F.pad, slicing);
  Keras 3         the outputs of pynn models saved as .keras files, loaded and run by Keras
                  itself (PYNN_KERAS_PYTHON), and a Keras-made .keras file run by pynn;
  determinism     bitwise the same weights on 1 and 2 threads, whole-epoch and op-by-op;
  kernels         the C and CUDA kernels against the NumPy reference on awkward shapes;
  saving          get_config round trips, .keras and pynn's own format;
  refusals        bad arguments name the argument and the value, and change nothing.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import pynn
from pynn import layers as L
from pynn.backend import reference as ref

from conftest import RTOL_ELEMENTWISE, assert_bitwise, assert_close, assert_step_close

torch_mirror = pytest.importorskip("torch_mirror")

RTOL = 2e-4          # tests/test_graph_parity.py's: a step's float32 sums against float64


# ---- the layers under test, pairwise over their options ---------------------------------------
# name -> (make, input shape (no batch axis), runs on cuda (the simulator is slow))
CASES = {
    "convt_valid_s2": (lambda: L.Conv2DTranspose(3, 3, strides=2), (3, 4, 2), True),
    "convt_same_s2_relu": (lambda: L.Conv2DTranspose(2, 3, strides=2, padding="same",
                                                     activation="relu"), (3, 3, 2), False),
    "convt_same_op": (lambda: L.Conv2DTranspose(2, (3, 2), strides=(3, 2), padding="same",
                                                output_padding=(1, 0)), (2, 3, 2), True),
    "convt_valid_op_no_bias": (lambda: L.Conv2DTranspose(2, 2, strides=3, output_padding=1,
                                                         use_bias=False), (2, 3, 1), False),
    "convt_same_k4_s1_sigmoid": (lambda: L.Conv2DTranspose(2, 4, padding="same",
                                                           activation="sigmoid"),
                                 (3, 2, 2), False),
    "convt_valid_op_w": (lambda: L.Conv2DTranspose(1, (1, 3), strides=(1, 2),
                                                   output_padding=(0, 1)), (2, 2, 3), False),
    "convt_dilated_same": (lambda: L.Conv2DTranspose(2, 3, dilation_rate=2, padding="same"),
                           (3, 4, 2), True),
    "convt_dilated_valid_tanh": (lambda: L.Conv2DTranspose(1, (2, 3), dilation_rate=(3, 1),
                                                           activation="tanh"), (2, 2, 2), False),
    "upsampling2d_nearest": (lambda: L.UpSampling2D((2, 3)), (3, 2, 2), True),
    "upsampling2d_bilinear": (lambda: L.UpSampling2D(2, interpolation="bilinear"),
                              (3, 4, 2), True),
    "upsampling2d_bilinear_3x2": (lambda: L.UpSampling2D((3, 2), interpolation="bilinear"),
                                  (2, 1, 1), False),
    "upsampling1d": (lambda: L.UpSampling1D(3), (4, 2), True),
    "zero_padding2d": (lambda: L.ZeroPadding2D(((1, 2), (0, 3))), (3, 2, 2), True),
    "zero_padding2d_int": (lambda: L.ZeroPadding2D(1), (2, 2, 1), False),
    "cropping2d": (lambda: L.Cropping2D(((1, 0), (1, 2))), (4, 5, 2), True),
    "cropping2d_sym": (lambda: L.Cropping2D((1, 2)), (4, 5, 1), False),
}


def model_around(name):
    """A Conv2D (or Dense) with tanh before the layer, so its input gradient is used; Flatten
    and a Dense head after."""
    make, shape, _ = CASES[name]
    inp = pynn.Input(shape)
    h = L.Dense(shape[-1], activation="tanh")(inp) if len(shape) == 2 else \
        L.Conv2D(shape[-1], 1, activation="tanh")(inp)
    layer = make()
    y = L.Flatten()(layer(h))
    return pynn.Model(inp, L.Dense(2)(y)), layer


def step_cases():
    for name, (_, _, on_cuda) in CASES.items():
        for backend in ("cpu", "numpy") + (("cuda",) if on_cuda else ()):
            yield name, backend


@pytest.mark.parametrize("name,backend", list(step_cases()))
def test_one_training_step_matches_torch_autograd(name, backend):
    pynn.utils.set_random_seed(5)
    model, layer = model_around(name)
    rng = np.random.default_rng(1)
    model.set_weights([rng.normal(0, 0.5, size=w.shape).astype(np.float32)
                       for w in model.get_weights()])
    shape = CASES[name][1]
    x = rng.normal(size=(3,) + shape).astype(np.float32)
    y = rng.normal(size=(3, 2)).astype(np.float32)
    w0 = {id(v): v.numpy().astype(np.float64) for v in model.weights}
    lr = 0.1
    model.compile(optimizer=pynn.optimizers.SGD(lr), loss="mse", backend=backend)
    loss_spec = [o.loss for o in model.engine.losses.outputs]
    total, grads = torch_mirror.gradients(model, [x], [y], loss_spec, [1.0])
    loss = model.train_on_batch(x, y)
    assert abs(loss - total) <= RTOL * abs(total), (loss, total)
    assert layer.weights == [] or any(np.abs(grads[id(v)]).max() > 0 for v in layer.weights)
    for v in model.trainable_weights:
        step = v.numpy().astype(np.float64) - w0[id(v)]
        want = -lr * grads[id(v)]
        slack = 4 * np.finfo(np.float32).eps * np.abs(w0[id(v)]).max()
        scale = max(np.abs(want).max(), 1e-12)
        np.testing.assert_allclose(step, want, rtol=0, atol=RTOL * scale + slack,
                                   err_msg=f"{name} on {backend}: {v.path}")


@pytest.mark.parametrize("backend", ["cpu", "numpy", "cuda"])
def test_a_sigmoid_conv2d_transpose_output_with_binary_crossentropy(backend):
    """The autoencoders' ending: the sigmoid folded into the loss (logits) as for Conv2D."""
    pynn.utils.set_random_seed(6)
    inp = pynn.Input((2, 2, 1))
    h = L.UpSampling2D(interpolation="bilinear")(inp)
    out = L.Conv2DTranspose(1, 3, strides=2, padding="same", activation="sigmoid")(h)
    model = pynn.Model(inp, out)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 2, 2, 1)).astype(np.float32)
    y = rng.uniform(size=(2, 8, 8, 1)).astype(np.float32)
    w0 = {id(v): v.numpy().astype(np.float64) for v in model.weights}
    model.compile(optimizer=pynn.optimizers.SGD(0.5), loss="binary_crossentropy",
                  backend=backend)
    total, grads = torch_mirror.gradients(model, [x], [y],
                                          [o.loss for o in model.engine.losses.outputs], [1.0])
    loss = model.train_on_batch(x, y)
    assert abs(loss - total) <= RTOL * abs(total), (loss, total)
    for v in model.trainable_weights:
        want = -0.5 * grads[id(v)]
        np.testing.assert_allclose(v.numpy() - w0[id(v)], want, rtol=0,
                                   atol=RTOL * np.abs(want).max() + 1e-7, err_msg=v.path)


# ---- Keras 3 itself ------------------------------------------------------------------------------

def _keras_env():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.setdefault("KERAS_BACKEND", "jax")
    return env


@pytest.fixture(scope="module")
def keras_python():
    for python in (os.environ.get("PYNN_KERAS_PYTHON"), sys.executable):
        if not python:
            continue
        try:
            ok = subprocess.run([python, "-c", "import keras"], capture_output=True,
                                timeout=120, env=_keras_env()).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        if ok:
            return python
    pytest.skip("Keras 3 is not installed: set PYNN_KERAS_PYTHON to the python of a venv "
                "with `pip install keras jax[cpu] h5py` to run the Keras cross-checks")


def run_keras(python, folder, code):
    script = "import numpy as np, keras, json\n" + textwrap.dedent(code)
    run = subprocess.run([python, "-c", script], cwd=folder, capture_output=True, text=True,
                         env=_keras_env(), timeout=600)
    assert run.returncode == 0, f"Keras failed:\n{run.stdout[-3000:]}\n{run.stderr[-5000:]}"
    return run.stdout


KERAS_CASES = dict(CASES, **{
    # XLA (jax 0.x under Keras 3.15) aborts on this layer with a (2, 3) input ("Window
    # dimensions do not match RHS shape" in its algebraic simplifier); a (3, 4) one runs
    "convt_same_op": (lambda: L.Conv2DTranspose(2, (3, 2), strides=(3, 2), padding="same",
                                                output_padding=(1, 0)), (3, 4, 2), False),
    "convt_same_k4_s2": (lambda: L.Conv2DTranspose(2, 4, strides=2, padding="same"),
                         (3, 3, 1), False),
    "convt_same_k2_s3": (lambda: L.Conv2DTranspose(2, 2, strides=3, padding="same"),
                         (3, 2, 1), False),
    "convt_same_k5_s2_op0": (lambda: L.Conv2DTranspose(2, 5, strides=2, padding="same",
                                                       output_padding=0), (3, 3, 1), False),
})


def test_outputs_match_keras_3_through_keras_files(keras_python, tmp_path):
    """Each layer in a model saved by pynn as .keras, loaded and run by Keras 3: the
    outputs, hence the output sizes, the kernel layout and the interpolation, agree."""
    rng = np.random.default_rng(0)
    expected = {}
    for name, (make, shape, _) in KERAS_CASES.items():
        model = pynn.Sequential([L.Input(shape), make()])
        model.set_weights([rng.normal(size=w.shape).astype(np.float32)
                           for w in model.get_weights()])
        x = rng.normal(size=(2,) + shape).astype(np.float32)
        np.save(tmp_path / f"{name}_x.npy", x)
        expected[name] = model.predict(x, verbose=0)
        model.save(str(tmp_path / f"{name}.keras"))
    run_keras(keras_python, tmp_path, f"""
        for name in {sorted(KERAS_CASES)!r}:
            m = keras.saving.load_model(name + ".keras")
            np.save(name + "_keras.npy", np.asarray(m.predict(np.load(name + "_x.npy"),
                                                               verbose=0)))
    """)
    for name, want in expected.items():
        got = np.load(tmp_path / f"{name}_keras.npy")
        assert got.shape == want.shape, name
        assert_close(want, got, rtol=RTOL_ELEMENTWISE, err_msg=name)


def test_a_keras_made_autoencoder_file_runs_in_pynn(keras_python, tmp_path):
    """A model built and saved by Keras 3 with every layer of this part loads in pynn and
    predicts what Keras predicts."""
    run_keras(keras_python, tmp_path, """
        keras.utils.set_random_seed(1)
        inp = keras.Input((6, 6, 2))
        x = keras.layers.ZeroPadding2D(((1, 0), (0, 1)))(inp)
        x = keras.layers.Conv2D(3, 3, activation="relu", padding="same")(x)
        x = keras.layers.Cropping2D(((1, 0), (0, 1)))(x)
        x = keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same",
                                         output_padding=1, activation="tanh")(x)
        x = keras.layers.UpSampling2D((1, 2), interpolation="bilinear")(x)
        x = keras.layers.UpSampling2D(2)(x)
        x = keras.layers.Conv2DTranspose(1, 2, use_bias=False)(x)
        m = keras.Model(inp, x)
        for v in m.weights:
            v.assign(np.random.default_rng(2).normal(size=v.shape).astype("float32") * 0.3)
        xs = np.random.default_rng(3).normal(size=(2, 6, 6, 2)).astype("float32")
        np.save("x.npy", xs)
        np.save("y.npy", np.asarray(m.predict(xs, verbose=0)))
        m.save("k.keras")
    """)
    model = pynn.models.load_model(str(tmp_path / "k.keras"))
    got = model.predict(np.load(tmp_path / "x.npy"), verbose=0)
    assert_close(got, np.load(tmp_path / "y.npy"), rtol=RTOL_ELEMENTWISE)


# ---- kernels: C and CUDA against the reference ---------------------------------------------------

CONVT_GEOMETRIES = [   # (x shape, kernel (KH, KW, F, C), strides, padding, out_hw, activation)
    ((2, 3, 4, 3), (3, 3, 5, 3), (2, 2), (0, 0), (7, 9), "linear"),
    ((1, 5, 2, 1), (2, 3, 1, 1), (1, 3), (1, 0), (6, 7), "relu"),     # output padding
    ((3, 1, 1, 17), (4, 1, 2, 17), (3, 1), (2, 0), (3, 1), "tanh"),   # cropped both sides
    ((1, 7, 3, 2), (1, 1, 33, 2), (2, 2), (0, 0), (14, 6), "gelu"),
]


@pytest.mark.parametrize("kernel_backend,geometry",
                         [("cpu", g) for g in CONVT_GEOMETRIES] +
                         [("cuda", CONVT_GEOMETRIES[1])],     # the simulator is slow
                         indirect=["kernel_backend"])
def test_conv2d_transpose_kernels_match_the_reference(geometry, kernel_backend):
    xs, ws, strides, pads, out_hw, act = geometry
    be = kernel_backend
    rng = np.random.default_rng(4)
    x, w = rng.normal(size=xs).astype(np.float32), rng.normal(size=ws).astype(np.float32)
    b = rng.normal(size=ws[2]).astype(np.float32)
    oshape = (xs[0],) + out_hw + (ws[2],)
    z_ref, y_ref = ref.conv2d_transpose_forward(x, w, b, strides, pads, out_hw, act)
    dy = rng.normal(size=oshape).astype(np.float32)
    dz_ref, dw_ref, db_ref, dx_ref = ref.conv2d_transpose_backward(x, w, z_ref, y_ref, dy,
                                                                   strides, pads, act)
    work = be.zeros((be.conv2d_transpose_work_size(xs, ws, out_hw),))
    z, y = be.zeros(oshape), be.zeros(oshape)
    dx, dw, db = be.zeros(xs), be.zeros(ws), be.zeros((ws[2],))
    dev = [be.from_host(a) for a in (x, w, b)]
    be.conv2d_transpose_forward(dev[0], dev[1], dev[2], strides, pads, act, 0.2, work, z, y)
    ddy = be.from_host(dy)
    be.conv2d_transpose_backward(dev[0], dev[1], z, y, ddy, strides, pads, act, 0.2, work,
                                 dw, db, dx)
    for got, want, what in ((z, z_ref, "z"), (y, y_ref, "y"), (ddy, dz_ref, "dz"),
                            (dx, dx_ref, "dx"), (dw, dw_ref, "dw"), (db, db_ref, "db")):
        assert_close(be.to_host(got), want, rtol=RTOL, err_msg=f"{be.name} {geometry}: {what}")


@pytest.mark.parametrize("shape,size,interpolation", [
    ((2, 3, 5, 3), (2, 3), "nearest"), ((1, 4, 1, 2), (3, 2), "bilinear"),
    ((2, 1, 3, 1), (1, 4), "bilinear"), ((1, 2, 2, 5), (5, 1), "bilinear")])
def test_upsampling_backward_kernels_match_the_reference(shape, size, interpolation,
                                                         kernel_backend):
    be = kernel_backend
    rng = np.random.default_rng(6)
    n, h, w, c = shape
    dy = rng.normal(size=(n, h * size[0], w * size[1], c)).astype(np.float32)
    want = ref.upsample2d_backward(dy, size, interpolation)
    # the reference is the adjoint of the forward: <up(x), dy> = <x, up^T(dy)>
    x = rng.normal(size=shape)
    lhs = np.sum(ref.upsample2d(x.astype(np.float32), size, interpolation) * dy)
    assert abs(lhs - np.sum(x * want)) <= 1e-4 * np.abs(dy).sum()
    dx = be.zeros(shape)
    be.upsample2d_backward(be.from_host(dy), size, interpolation, dx)
    assert_close(be.to_host(dx), want, rtol=RTOL_ELEMENTWISE, err_msg=f"{be.name}")


@pytest.mark.parametrize("shape,dilation", [((3, 2, 4, 5), (2, 3)), ((1, 1, 1, 2), (4, 4)),
                                            ((2, 3, 1, 1), (1, 1))])
def test_kernel_dilate_kernels_match_the_reference(shape, dilation, kernel_backend):
    be = kernel_backend
    w = np.random.default_rng(12).normal(size=shape).astype(np.float32)
    wide = ref.kernel_dilate(w, dilation)
    assert wide.shape[:2] == ((shape[0] - 1) * dilation[0] + 1, (shape[1] - 1) * dilation[1] + 1)
    assert np.count_nonzero(wide) == np.count_nonzero(w)
    out = be.zeros(wide.shape)
    be.kernel_dilate(be.from_host(w), dilation, False, out)
    assert_bitwise(be.to_host(out), wide)
    back = be.zeros(shape)
    be.kernel_dilate(out, dilation, True, back)
    assert_bitwise(be.to_host(back), w)


@pytest.mark.parametrize("shape,out_hw,top,left", [
    ((2, 3, 4, 3), (6, 5), 1, 0), ((1, 5, 6, 2), (2, 3), -1, -2), ((1, 2, 2, 1), (3, 1), 0, -1),
    ((1, 2, 3, 2), (4, 4), 5, 0)])
def test_pad_crop_kernels_match_the_reference(shape, out_hw, top, left, kernel_backend):
    be = kernel_backend
    x = np.random.default_rng(7).normal(size=shape).astype(np.float32)
    y = be.zeros((shape[0],) + out_hw + (shape[3],))
    be.pad_crop(be.from_host(x), top, left, y)
    assert_bitwise(be.to_host(y), ref.pad_crop(x, out_hw, top, left))


# ---- determinism -------------------------------------------------------------------------------

def _big_model():
    inp = pynn.Input((9, 8, 4))
    x = L.ZeroPadding2D(((1, 2), (0, 1)))(inp)
    x = L.Conv2DTranspose(8, 3, strides=2, padding="same", output_padding=1,
                          activation="relu")(x)
    x = L.UpSampling2D(2, interpolation="bilinear")(x)
    x = L.Cropping2D(((3, 1), (2, 2)))(x)
    x = L.Conv2DTranspose(2, 2, dilation_rate=(2, 1))(x)
    x = L.UpSampling2D((1, 2))(x)
    x = L.Flatten()(x)
    return pynn.Model(inp, L.Dense(3)(x))


@pytest.mark.parametrize("path,threads", [("op by op", 2), ("whole epoch", 1)])
def test_bitwise_the_same_weights_on_every_path_and_thread_count(path, threads):
    rng = np.random.default_rng(8)
    x = rng.normal(size=(24, 9, 8, 4)).astype(np.float32)
    y = rng.normal(size=(24, 3)).astype(np.float32)

    def train(path, threads):
        before = pynn.get_num_threads()
        pynn.set_num_threads(threads)
        try:
            pynn.utils.set_random_seed(3)
            model = _big_model()
            model.compile(optimizer="adam", loss="mse", backend="cpu")
            model.engine.force_python = path == "op by op"
            model.fit(x, y, batch_size=8, epochs=2, verbose=0)
            return model.get_weights()
        finally:
            pynn.set_num_threads(before)

    want = train("whole epoch", 2)
    for a, b in zip(train(path, threads), want):
        assert_bitwise(a, b, err_msg=f"{path} on {threads} thread(s)")


# ---- saving ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(KERAS_CASES))
def test_config_round_trip(name):
    layer = KERAS_CASES[name][0]()
    config = json.loads(json.dumps(layer.get_config()))
    clone = type(layer).from_config(config)
    assert clone.get_config() == layer.get_config()


def test_conv2d_transpose_config_has_keras_keys_and_values():
    config = L.Conv2DTranspose(4, 3, strides=2, padding="same", output_padding=1).get_config()
    assert config["kernel_size"] == [3, 3] and config["strides"] == [2, 2]
    assert config["output_padding"] == [1, 1] and config["padding"] == "same"
    assert config["dilation_rate"] == [1, 1] and config["data_format"] == "channels_last"
    assert L.Conv2DTranspose(4, 3).get_config()["output_padding"] is None
    assert L.ZeroPadding2D(2).get_config()["padding"] == [[2, 2], [2, 2]]
    assert L.Cropping2D((1, 2)).get_config()["cropping"] == [[1, 1], [2, 2]]
    assert L.UpSampling2D(3, interpolation="BILINEAR").get_config()["interpolation"] == \
        "bilinear"
    assert L.UpSampling1D(4).get_config()["size"] == 4


@pytest.mark.parametrize("suffix", [".keras", ".pynn"])
def test_saved_model_predicts_and_trains_the_same(suffix, tmp_path):
    pynn.utils.set_random_seed(2)
    model = _big_model()
    model.compile(optimizer="adam", loss="mse", backend="cpu")
    rng = np.random.default_rng(9)
    x = rng.normal(size=(6, 9, 8, 4)).astype(np.float32)
    y = rng.normal(size=(6, 3)).astype(np.float32)
    model.fit(x, y, batch_size=3, epochs=1, verbose=0)
    path = str(tmp_path / f"m{suffix}")
    model.save(path)
    clone = pynn.models.load_model(path)
    assert_bitwise(clone.predict(x, verbose=0), model.predict(x, verbose=0))
    assert [type(a).__name__ for a in clone.layers] == [type(a).__name__ for a in model.layers]
    for a, b in zip(clone.get_weights(), model.get_weights()):
        assert_bitwise(a, b)


# ---- refusals -----------------------------------------------------------------------------------

BAD = [
    (lambda: L.Conv2DTranspose(2, 3, strides=2, output_padding=2), ValueError,
     ["output_padding", "strictly less than `strides`", "output_padding=(2, 2)"]),
    (lambda: L.Conv2DTranspose(2, 3, strides=(2, 1), output_padding=(1, 1)), ValueError,
     ["output_padding", "At dimension 1"]),
    (lambda: L.Conv2DTranspose(2, 3, output_padding=-1), ValueError, ["output_padding=-1"]),
    (lambda: L.Conv2DTranspose(0, 3), ValueError, ["filters", "filters=0"]),
    (lambda: L.Conv2DTranspose(2, 0), ValueError, ["kernel_size", "kernel_size=0"]),
    (lambda: L.Conv2DTranspose(2, 3, padding="full"), ValueError, ["padding='full'"]),
    (lambda: L.Conv2DTranspose(2, 3, strides=2, dilation_rate=2), ValueError,
     ["`strides > 1` not supported in conjunction with `dilation_rate > 1`",
      "dilation_rate=(2, 2)"]),
    (lambda: L.Conv2DTranspose(2, 3, dilation_rate=0), ValueError, ["dilation_rate=0"]),
    (lambda: L.Conv2DTranspose(2, 3, data_format="channels_first"), ValueError,
     ["data_format='channels_first'"]),
    (lambda: L.Conv2DTranspose(2, 3, activation="nope"), ValueError, ["nope"]),
    (lambda: L.UpSampling2D(2, interpolation="bicubic"), ValueError,
     ["interpolation", "interpolation='bicubic'"]),
    (lambda: L.UpSampling2D(2, interpolation=3), ValueError, ["interpolation=3"]),
    (lambda: L.UpSampling2D(0), ValueError, ["size", "size=0"]),
    (lambda: L.UpSampling2D((2, -1)), ValueError, ["size=(2, -1)"]),
    (lambda: L.UpSampling1D(2.0), TypeError, ["size", "size=2.0"]),
    (lambda: L.UpSampling1D(-2), ValueError, ["size=-2"]),
    (lambda: L.ZeroPadding2D(-1), ValueError, ["padding", "padding=-1"]),
    (lambda: L.ZeroPadding2D(((1, -1), (0, 0))), ValueError, ["padding=((1, -1), (0, 0))"]),
    (lambda: L.ZeroPadding2D((1, 2, 3)), ValueError, ["padding=(1, 2, 3)"]),
    (lambda: L.Cropping2D(-2), ValueError, ["cropping", "cropping=-2"]),
    (lambda: L.Cropping2D(((0, 1), (2, -3))), ValueError, ["cropping=((0, 1), (2, -3))"]),
    (lambda: L.Cropping2D("1"), ValueError, ["cropping='1'"]),
    (lambda: L.Cropping2D(1, data_format="channels_first"), ValueError,
     ["data_format='channels_first'"]),
]


@pytest.mark.parametrize("make,error,words", BAD)
def test_bad_arguments_name_the_argument_and_the_value(make, error, words):
    with pytest.raises(error) as info:
        make()
    for word in words:
        assert word in str(info.value), (word, str(info.value))


@pytest.mark.parametrize("layer,shape,words", [
    (lambda: L.Cropping2D(((2, 1), (0, 0))), (3, 4, 1), ["cropping", "(None, 3, 4, 1)"]),
    (lambda: L.Cropping2D((0, 2)), (3, 4, 1), ["cropping", "((0, 0), (2, 2))"]),
    (lambda: L.Conv2DTranspose(2, 3), (4, 4), ["ndim=4", "(None, 4, 4)"]),
    (lambda: L.UpSampling1D(2), (4, 4, 1), ["ndim=3"]),
])
def test_a_refused_input_shape_leaves_the_model_unchanged(layer, shape, words):
    model = pynn.Sequential([pynn.Input(shape), L.Activation("linear")])
    weights = [w.copy() for w in model.get_weights()]
    config = model.get_config()
    with pytest.raises(ValueError) as info:
        model.add(layer())
    for word in words:
        assert word in str(info.value), (word, str(info.value))
    assert len(model.layers) == 1 and model.get_config() == config
    for a, b in zip(model.get_weights(), weights):
        assert_bitwise(a, b)
    x = np.ones((2,) + shape, np.float32)
    assert_bitwise(model.predict(x, verbose=0), x)


def test_keras_output_sizes():
    """Keras 3's documented sizes: "same" with output_padding None gives size * stride,
    "valid" (size - 1) * stride + max(kernel, stride); output_padding adds on."""
    for layer, shape, want in [
            (L.Conv2DTranspose(2, 3, strides=2, padding="same"), (5, 7, 1), (10, 14, 2)),
            (L.Conv2DTranspose(2, 3, strides=2), (5, 7, 1), (11, 15, 2)),
            (L.Conv2DTranspose(2, 2, strides=3), (5, 7, 1), (15, 21, 2)),
            (L.Conv2DTranspose(2, 3, strides=2, output_padding=1), (5, 7, 1), (12, 16, 2)),
            (L.Conv2DTranspose(2, 3, strides=3, padding="same", output_padding=2), (2, 2, 1),
             (6, 6, 2)),
            (L.UpSampling2D((2, 3)), (5, 7, 1), (10, 21, 1)),
            (L.ZeroPadding2D(((1, 2), (3, 4))), (5, 7, 1), (8, 14, 1)),
            (L.Cropping2D(((1, 2), (3, 0))), (5, 7, 1), (2, 4, 1))]:
        assert layer.compute_output_shape((None,) + shape) == (None,) + want, layer
    assert L.UpSampling1D(3).compute_output_shape((None, 4, 2)) == (None, 12, 2)


# ---- ONNX export ----------------------------------------------------------------------------

ONNX_OPS = {"Conv2DTranspose": "ConvTranspose", "UpSampling2D": "Resize",
            "UpSampling1D": "Resize", "ZeroPadding2D": "Pad", "Cropping2D": "Slice"}


@pytest.mark.parametrize("name", sorted(KERAS_CASES))
def test_onnx_export_matches_predict(name, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    make, shape, _ = KERAS_CASES[name]
    layer = make()
    model = pynn.Sequential([L.Input(shape), layer])
    rng = np.random.default_rng(11)
    model.set_weights([rng.normal(size=w.shape).astype(np.float32)
                       for w in model.get_weights()])
    path = tmp_path / "m.onnx"
    model.export(path)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert ONNX_OPS[type(layer).__name__] in {n.op_type for n in proto.graph.node}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = rng.normal(size=(batch,) + shape).astype(np.float32)
        got = session.run(None, {model.input_names[0]: x})[0]
        want = model.predict(x, verbose=0)
        assert got.shape == want.shape
        assert_close(got, want, rtol=RTOL_ELEMENTWISE, err_msg=name)

"""CNN training through the public API: one step of small CNNs against the independent
float64 implementation (tests/independent_cnn.py), cpu against numpy, repeatability on
1 and 2 threads, non-trainable weights, and the digits CNN of `python -m pynn --model cnn`."""
import json

import numpy as np
import pytest

import pynn
import independent as ind
import independent_cnn as icnn
from pynn import layers as L

LR = 0.1

# (id, input shape, spec, loss kind, output width)
NETWORKS = [
    ("conv_same_stride2_maxpool", (7, 6, 2),
     [("conv", 3, (3, 3), (2, 2), "same", "relu"), ("maxpool", (2, 2), (2, 2), "same"),
      ("flatten",), ("dense", 3, "softmax")], "scce", 3),
    ("conv_valid_strides12_avgpool_same", (6, 7, 1),
     [("conv", 2, (2, 3), (1, 2), "valid", "tanh"), ("avgpool", (2, 2), (1, 1), "same"),
      ("flatten",), ("dense", 1, "sigmoid")], "bce", 1),
    ("two_convs_stride3_maxpool_overlap", (8, 8, 3),
     [("conv", 4, (3, 3), (3, 3), "same", "linear"), ("conv", 3, (2, 2), (1, 1), "valid", "relu"),
      ("maxpool", (2, 2), (1, 1), "valid"), ("flatten",), ("dense", 2, "linear")], "mse", 2),
    ("conv_avgpool_valid_stride3_dense_relu", (9, 7, 2),
     [("conv", 3, (3, 2), (1, 1), "same", "relu"), ("avgpool", (3, 3), (3, 2), "valid"),
      ("flatten",), ("dense", 4, "relu"), ("dense", 3, "softmax")], "cce", 3),
    ("conv_gap", (5, 5, 2),
     [("conv", 4, (3, 3), (2, 1), "same", "tanh"), ("gap",), ("dense", 2, "softmax")], "scce", 2),
    ("conv_batchnorm", (5, 4, 2),
     [("conv", 3, (2, 2), (1, 1), "valid", "linear"), ("batchnorm", 1e-3), ("flatten",),
      ("dense", 2, "softmax")], "scce", 2),
]


def pynn_layers(spec):
    out = []
    for layer in spec:
        kind = layer[0]
        if kind == "conv":
            out.append(L.Conv2D(layer[1], layer[2], strides=layer[3], padding=layer[4],
                                activation=layer[5]))
        elif kind == "maxpool":
            out.append(L.MaxPooling2D(layer[1], strides=layer[2], padding=layer[3]))
        elif kind == "avgpool":
            out.append(L.AveragePooling2D(layer[1], strides=layer[2], padding=layer[3]))
        elif kind == "gap":
            out.append(L.GlobalAveragePooling2D())
        elif kind == "batchnorm":
            out.append(L.BatchNormalization(epsilon=layer[1]))
        elif kind == "flatten":
            out.append(L.Flatten())
        else:
            out.append(L.Dense(layer[1], activation=layer[2]))
    return out


def make_problem(seed, input_shape, spec, kind, out_dim, n=4):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n,) + input_shape).astype(np.float32).astype(np.float64)
    model = pynn.Sequential([L.Input(input_shape)] + pynn_layers(spec))
    weights = []
    for layer, w in zip(model.layers, [layer.get_weights() for layer in model.layers]):
        if isinstance(layer, L.BatchNormalization):
            weights += [rng.normal(1.0, 0.3, size=w[0].shape), rng.normal(0, 0.3, size=w[1].shape)]
        else:
            weights += [rng.normal(0, 0.6, size=v.shape) for v in w]
    weights = [w.astype(np.float32).astype(np.float64) for w in weights]
    if kind == "mse":
        y = rng.normal(size=(n, out_dim))
    elif kind == "bce":
        y = (rng.random(size=(n, out_dim)) > 0.5).astype(np.float64)
    elif kind == "cce":
        y = np.eye(out_dim)[rng.integers(0, out_dim, size=n)]
    else:
        y = rng.integers(0, out_dim, size=n)
    return x, y, weights


LOSS_NAMES = {"mse": "mse", "bce": "binary_crossentropy", "cce": "categorical_crossentropy",
              "scce": "sparse_categorical_crossentropy"}


def pynn_step(backend, input_shape, spec, kind, x, y, weights):
    model = pynn.Sequential([L.Input(input_shape)] + pynn_layers(spec))
    model.compile(optimizer=pynn.optimizers.SGD(LR), loss=LOSS_NAMES[kind], backend=backend)
    full = []   # BatchNormalization also holds moving statistics (not trained)
    k = 0
    for layer in model.layers:
        n = 2 if layer.weights else 0
        full += [w.astype(np.float32) for w in weights[k:k + n]]
        k += n
        full += [w for w in layer.get_weights()[n:]]
    model.set_weights(full)
    loss = model.train_on_batch(x.astype(np.float32), y)
    trained = [w for layer in model.layers for w in layer.get_weights()[:2 if layer.weights else 0]]
    return trained, loss


@pytest.mark.parametrize("name,input_shape,spec,kind,out_dim", NETWORKS, ids=[n[0] for n in NETWORKS])
def test_one_step_matches_independent_backprop(name, input_shape, spec, kind, out_dim):
    x, y, w0 = make_problem(len(name), input_shape, spec, kind, out_dim)
    loss_ref = icnn.loss_of(spec, w0, x, y, kind)
    grads = icnn.gradients(spec, [w.copy() for w in w0], x, y, kind)
    w_ref = [w - LR * g for w, g in zip(w0, grads)]
    results = {}
    for backend in ("cpu", "numpy"):
        w_pynn, loss = pynn_step(backend, input_shape, spec, kind, x, y, w0)
        label = f"{backend} {name}"
        np.testing.assert_allclose(loss, loss_ref, rtol=1e-4, atol=1e-6, err_msg=label)
        for i, (a, p, r) in enumerate(zip(w0, w_pynn, w_ref)):
            d_pynn, d_ref = p.astype(np.float64) - a, r - a
            scale = np.abs(d_ref).max() + 1e-12
            err = np.abs(d_pynn - d_ref).max()
            assert err <= 2e-3 * scale + 1e-7, f"{label} weight {i}: error {err:.3g} vs change {scale:.3g}"
        results[backend] = w_pynn
    for a, b in zip(results["cpu"], results["numpy"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-6)


def small_cnn(dropout=0.0, batchnorm=True):
    layers = [L.Input((8, 8, 1)), L.Conv2D(6, 3, padding="same", activation="relu"),
              L.MaxPooling2D(2), L.Conv2D(8, 3, strides=2, padding="same", activation="relu")]
    if batchnorm:
        layers.append(L.BatchNormalization())
    layers += [L.AveragePooling2D(2, padding="same"), L.Flatten()]
    if dropout:
        layers.append(L.Dropout(dropout))
    layers.append(L.Dense(10, activation="softmax"))
    return pynn.Sequential(layers)


def digits(n=None):
    (x, y), (xt, yt) = pynn.datasets.digits.load_data()
    x = x.reshape(-1, 8, 8, 1).astype(np.float32) / 16
    xt = xt.reshape(-1, 8, 8, 1).astype(np.float32) / 16
    return (x[:n], y[:n].astype(np.int64)), (xt, yt.astype(np.int64))


def fit_weights(backend, threads, dropout=0.3):
    pynn.set_num_threads(threads)
    try:
        pynn.utils.set_random_seed(3)
        model = small_cnn(dropout)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", backend=backend)
        (x, y), _ = digits(200)
        model.fit(x, y, batch_size=32, epochs=2, verbose=0)
        return model.get_weights()
    finally:
        pynn.set_num_threads(2)


def test_fit_is_bitwise_repeatable_on_1_and_2_threads():
    one, two = fit_weights("cpu", 1), fit_weights("cpu", 2)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


def test_cpu_and_numpy_fit_agree():
    for a, b in zip(fit_weights("cpu", 2), fit_weights("numpy", 1)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_batchnorm_moving_statistics_are_not_trained_but_follow_keras():
    pynn.utils.set_random_seed(0)
    model = pynn.Sequential([L.Input((3, 2, 4)), L.BatchNormalization(momentum=0.9, epsilon=1e-3),
                             L.Flatten(), L.Dense(2, activation="softmax")])
    model.compile(optimizer=pynn.optimizers.SGD(1.0), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(1)
    x = rng.normal(2.0, 3.0, size=(5, 3, 2, 4)).astype(np.float32)
    y = rng.integers(0, 2, size=5)
    names = [n for n in model.layers[0]._weight_names]
    assert names == ["gamma", "beta", "moving_mean", "moving_variance"]
    assert model.layers[0].weight_trainable == [True, True, False, False]
    assert model.count_params() == 4 * 4 + 24 * 2 + 2
    mm0, mv0 = model.layers[0].get_weights()[2:]
    model.train_on_batch(x, y)
    gamma, beta, mm, mv = model.layers[0].get_weights()
    rows = x.reshape(-1, 4).astype(np.float64)
    mean, var = rows.mean(axis=0), rows.var(axis=0)       # biased, as Keras 3
    np.testing.assert_allclose(mm, mm0 * 0.9 + mean * 0.1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mv, mv0 * 0.9 + var * 0.1, rtol=1e-5, atol=1e-6)
    # gamma and beta did move (SGD at lr 1); the statistics are exactly the moving average
    assert not np.allclose(gamma, 1.0) and not np.allclose(beta, 0.0)
    # inference uses the moving statistics, training the batch's
    probe = pynn.Sequential([L.Input((3, 2, 4)), L.BatchNormalization(epsilon=1e-3)])
    probe.build()
    probe.set_weights([gamma, beta, mm, mv])
    out = probe.predict(x, verbose=0)
    expected = (x - mm) / np.sqrt(mv + 1e-3) * gamma + beta
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    batch_out = ((x - mean) / np.sqrt(var + 1e-3) * gamma + beta)
    assert not np.allclose(out, batch_out, atol=1e-3)


def test_dropout_repeats_by_seed_and_is_identity_in_inference():
    x = np.ones((4, 6, 5, 3), np.float32)
    layer = L.Dropout(0.4)
    model = pynn.Sequential([L.Input((6, 5, 3)), layer])
    model.build()
    be = pynn.backend.get("cpu")
    model._bind(be)
    np.testing.assert_array_equal(model.predict(x, verbose=0), x)
    outs = []
    for _ in range(2):
        pynn.utils.set_random_seed(11)
        outs.append(np.array(layer.forward(be, x, training=True)))
    np.testing.assert_array_equal(outs[0], outs[1])
    kept = outs[0] != 0
    np.testing.assert_allclose(outs[0][kept], 1 / 0.6, rtol=1e-6)
    assert 0.45 < kept.mean() < 0.75
    # the gradient flows through the kept elements only, with the same scale
    g = np.array(layer.backward(be, np.ones_like(x)))
    np.testing.assert_array_equal(g, outs[0])
    # its own seed: independent of the global generator
    own = L.Dropout(0.5, seed=4)
    a = pynn.Sequential([L.Input((6, 5, 3)), own])
    a.build()
    a._bind(be)
    first = np.array(own.forward(be, x, training=True))
    own2 = L.Dropout(0.5, seed=4)
    b = pynn.Sequential([L.Input((6, 5, 3)), own2])
    b.build()
    b._bind(be)
    pynn.utils.set_random_seed(99)
    np.testing.assert_array_equal(first, np.array(own2.forward(be, x, training=True)))


def test_flatten_keeps_keras_channels_last_order():
    x = np.arange(2 * 3 * 2 * 4, dtype=np.float32).reshape(2, 3, 2, 4)
    model = pynn.Sequential([L.Input((3, 2, 4)), L.Flatten()])
    np.testing.assert_array_equal(model.predict(x, verbose=0), x.reshape(2, -1))
    model = pynn.Sequential([L.Input((3, 2, 4)), L.Reshape((-1, 4))])
    np.testing.assert_array_equal(model.predict(x, verbose=0), x.reshape(2, 6, 4))


@pytest.mark.parametrize("layer", [
    L.Conv2D(4, (3, 2), strides=2, padding="same", activation="relu", use_bias=False,
             kernel_initializer="he_normal", input_shape=(9, 9, 2), name="c"),
    L.MaxPooling2D(3, strides=1, padding="same"), L.AveragePooling2D((2, 3)),
    L.GlobalAveragePooling2D(keepdims=True), L.Flatten(), L.Reshape((3, -1)),
    L.Dropout(0.3, noise_shape=(None, 1, 1, 4), seed=5),
    L.BatchNormalization(momentum=0.9, epsilon=0.01, center=False),
])
def test_get_config_rebuilds_the_layer(layer):
    config = json.loads(json.dumps(layer.get_config()))
    twin = type(layer)(**dict(config, name=config["name"] + "_twin"))
    a, b = layer.get_config(), twin.get_config()
    a.pop("name"), b.pop("name")
    assert a == b
    shape = (6, 6, 4)
    assert tuple(twin.compute_output_shape(shape)) == tuple(layer.compute_output_shape(shape))


def test_keras_output_shapes_and_default_names():
    cases = [(L.Conv2D(2, 3, strides=2, padding="same"), (7, 8, 1), (4, 4, 2)),
             (L.Conv2D(2, 3, strides=2), (7, 8, 1), (3, 3, 2)),
             (L.Conv2D(2, (1, 5), strides=(3, 1), padding="same"), (10, 5, 3), (4, 5, 2)),
             (L.MaxPooling2D(), (7, 7, 3), (3, 3, 3)),
             (L.MaxPooling2D(padding="same"), (7, 7, 3), (4, 4, 3)),
             (L.AveragePooling2D(3, strides=2, padding="same"), (8, 5, 2), (4, 3, 2)),
             (L.GlobalAveragePooling2D(), (4, 5, 6), (6,)),
             (L.Flatten(), (4, 5, 6), (120,))]
    for layer, shape, expected in cases:
        assert tuple(layer.compute_output_shape(shape)) == expected, layer
    assert L.Conv2D(1, 1).name.startswith("conv2d")
    assert L.MaxPooling2D().name.startswith("max_pooling2d")


def test_digits_cnn_reaches_097_on_unseen_digits():
    from pynn.__main__ import build_cnn
    pynn.utils.set_random_seed(0)
    (x, y), (xt, yt) = digits()
    model = build_cnn(pynn)
    model.compile(optimizer=pynn.optimizers.Adam(learning_rate=0.001),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=30, validation_split=0.1, verbose=0)
    _, accuracy = model.evaluate(xt, yt, verbose=0)
    assert accuracy >= 0.97, accuracy

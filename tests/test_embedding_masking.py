"""Engineer G (issue #16): the mask mechanism, Embedding, Masking and TimeDistributed.

Masks: a plan Tensor's `mask` is None or a (batch, T) float32 1/0 plan Tensor; layers
whose `supports_masking` is True pass their input's on, others drop it (Keras 3)."""
import re

import numpy as np
import pytest

import pynn
from pynn import layers as L
from pynn.models.plan import compile_plan


class _Probe(L.Layer):
    """Records the mask of the plan tensor it receives (identity otherwise)."""

    seen = []

    def plan_forward(self, b, inputs, training, logits=False):
        _Probe.seen.append(getattr(inputs[0], "mask", None))
        return inputs[0]


def _plan_masks(model):
    _Probe.seen = []
    plan = compile_plan(model, "predict", pynn.backend.get("numpy"))
    return plan, list(_Probe.seen)


# ---- the mask mechanism ---------------------------------------------------------------------

def test_symbolic_mask_passes_through_supporting_layers_and_is_dropped_elsewhere():
    x, m = pynn.Input((5, 3)), pynn.Input((5,))
    y = L.Dense(4)(x, mask=m)
    assert y._keras_mask is m                       # Dense supports masking: passes it on
    z = L.Dropout(0.5)(y)
    assert z._keras_mask is m
    assert L.Activation("relu")(z)._keras_mask is m
    assert L.Flatten()(z)._keras_mask is None        # Flatten does not (Keras 3)
    assert L.Dense(4).supports_masking and L.Dropout(0.1).supports_masking
    assert not L.Flatten().supports_masking and not L.Conv2D(2, 3).supports_masking


def test_plan_mask_propagation_from_an_explicit_mask():
    x, m = pynn.Input((5, 3)), pynn.Input((5,))
    y = L.Dense(4)(x, mask=m)
    out1 = _Probe()(L.Dense(2)(y))                   # through a second Dense: still masked
    out2 = _Probe()(L.Flatten()(y))                  # dropped by Flatten
    model = pynn.Model([x, m], [out1, out2])
    plan, seen = _plan_masks(model)
    assert seen[0] is not None and seen[0].buf == plan.input_bufs[1]
    assert seen[0].shape == (None, 5)
    assert seen[1] is None


def test_wrong_shape_mask_is_refused_naming_both_shapes():
    x = pynn.Input((5, 3))
    d = L.Dense(4)
    with pytest.raises(ValueError, match=r"expected a mask of shape \(None, 5\).*received a mask "
                                         r"of shape \(None, 4\)"):
        d(x, mask=pynn.Input((4,)))
    assert not d.inbound_nodes                       # nothing recorded
    with pytest.raises(ValueError, match=r"expected a mask of shape \(2, 5\).*\(2, 6\)"):
        d(np.zeros((2, 5, 3), np.float32), mask=np.ones((2, 6)))


def test_eager_call_with_a_mask_runs():
    d = L.Dense(2)
    x = np.random.default_rng(0).normal(size=(3, 4, 2)).astype(np.float32)
    np.testing.assert_allclose(d(x, mask=np.ones((3, 4))), d(x), rtol=0, atol=0)


class _MaskOut(L.Layer):
    """Outputs the (batch, T) mask its input carries (so predict shows a plan's mask)."""

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:2])

    def plan_forward(self, b, inputs, training, logits=False):
        return inputs[0].mask


@pytest.mark.parametrize("backend", ["cpu", "numpy", "cuda"])
def test_masks_made_by_embedding_and_masking_reach_later_layers(backend):
    """Embedding(mask_zero=True) and Masking make the mask; Dense passes it on, values and
    all, on every executor (cpu: the C plan runner)."""
    ids_in, x_in = pynn.Input((5,), dtype="int32"), pynn.Input((5, 2))
    emb = L.Dense(3)(L.Embedding(4, 2, mask_zero=True)(ids_in))
    masked = L.Dense(3)(L.Masking(0.5)(x_in))
    assert emb._keras_mask is not None and masked._keras_mask is not None
    model = pynn.Model([ids_in, x_in], [_MaskOut()(emb), _MaskOut()(masked)])
    model.compile(backend=backend)
    ids = np.array([[1, 0, 3, 0, 2], [0, 0, 1, 2, 3]], np.float32)
    x = np.random.default_rng(0).normal(size=(2, 5, 2)).astype(np.float32)
    x[0, 1] = 0.5
    x[1, 4] = 0.5
    x[1, 2, 0] = 0.5                          # one feature only: kept
    m1, m2 = model.predict([ids, x], verbose=0)
    np.testing.assert_array_equal(m1, (ids != 0).astype(np.float32))
    want = np.ones((2, 5), np.float32)
    want[0, 1] = want[1, 4] = 0
    np.testing.assert_array_equal(m2, want)


def test_compute_mask_and_supports_masking_follow_keras():
    e = L.Embedding(5, 2, mask_zero=True)
    np.testing.assert_array_equal(e.compute_mask(np.array([[0, 3]]), None), [[False, True]])
    assert L.Embedding(5, 2).compute_mask(np.array([[0, 3]]), None) is None
    assert e.supports_masking and not L.Embedding(5, 2).supports_masking
    m = L.Masking(1.0)
    np.testing.assert_array_equal(m.compute_mask(np.array([[[1.0, 1.0], [1.0, 2.0]]]), None),
                                  [[False, True]])
    assert L.Add().supports_masking and L.Masking().supports_masking
    a, b = pynn.Input((3, 2)), pynn.Input((3, 2))
    ma = L.Masking()(a)
    assert L.Add()([ma, b])._keras_mask is not None           # AND of the masks present
    assert L.Add()([a, b])._keras_mask is None


# ---- one training step against torch autograd -------------------------------------------------

torch_mirror = pytest.importorskip("torch_mirror")
RTOL = 2e-4


def _embedding_model():
    ids = pynn.Input((6,), dtype="int32")
    h = L.Embedding(7, 3, mask_zero=True)(ids)
    h = L.TimeDistributed(L.Dense(2, activation="tanh"))(h)
    out = L.Dense(2)(L.Flatten()(h))
    x = np.array([[1, 1, 0, 4, 1, 6], [4, 4, 4, 1, 0, 0], [6, 1, 2, 2, 0, 1]], np.float32)
    return pynn.Model(ids, out), x                      # ids repeated within and across rows


def _masking_model():
    inp = pynn.Input((4, 3))
    h = L.Masking(0.0)(inp)
    h = L.TimeDistributed(L.Dense(3, activation="relu"))(h)
    out = L.Dense(2)(L.Flatten()(h))
    x = np.random.default_rng(4).normal(size=(3, 4, 3)).astype(np.float32)
    x[0, 1] = 0.0
    x[2, 3] = 0.0
    return pynn.Model(inp, out), x


def _td_conv_model():
    inp = pynn.Input((3, 5, 4, 2))
    h = L.TimeDistributed(L.Conv2D(2, (3, 2), strides=(2, 1), padding="same",
                                   activation="relu"))(inp)
    h = L.TimeDistributed(L.MaxPooling2D(2))(h)
    out = L.Dense(2)(L.Flatten()(h))
    x = np.random.default_rng(5).normal(size=(2, 3, 5, 4, 2)).astype(np.float32)
    return pynn.Model(inp, out), x


MODELS = {"embedding": _embedding_model, "masking": _masking_model,
          "td_conv2d": _td_conv_model}


def _expected_update(kind, g, lr):
    if kind == "sgd":
        return -lr * g
    b1, b2, eps = 0.9, 0.999, 1e-7            # Keras's Adam, first step: dense, every row
    m, v = (1 - b1) * g, (1 - b2) * g * g
    return -lr * np.sqrt(1 - b2) / (1 - b1) * m / (np.sqrt(v) + eps)


@pytest.mark.parametrize("name,optimizer", [("embedding", "sgd"), ("embedding", "adam"),
                                            ("masking", "sgd"), ("td_conv2d", "adam")])
def test_one_step_matches_torch(name, optimizer, backend_name):
    pynn.utils.set_random_seed(11)
    model, x = MODELS[name]()
    y = np.random.default_rng(1).normal(size=(len(x), 2)).astype(np.float32)
    w0 = {id(v): v.numpy().astype(np.float64) for v in model.weights}
    lr = 0.1 if optimizer == "sgd" else 0.01
    opt = pynn.optimizers.SGD(lr) if optimizer == "sgd" else pynn.optimizers.Adam(lr)
    model.compile(optimizer=opt, loss="mse", backend=backend_name)
    losses = [o.loss for o in model.engine.losses.outputs]
    total, grads = torch_mirror.gradients(model, [x], [y], losses, [1.0])
    loss = model.train_on_batch(x, y)
    assert abs(loss - total) <= RTOL * abs(total), (loss, total)
    for v in model.trainable_weights:
        step = v.numpy().astype(np.float64) - w0[id(v)]
        want = _expected_update(optimizer, grads[id(v)], lr)
        slack = 4 * np.finfo(np.float32).eps * np.abs(w0[id(v)]).max()
        np.testing.assert_allclose(step, want, rtol=0,
                                   atol=RTOL * max(np.abs(want).max(), 1e-12) + slack,
                                   err_msg=f"{name} {optimizer} {backend_name} {v.path}")
    if name == "embedding":
        table = model.layers[1].embeddings
        unseen = [r for r in range(7) if r not in set(x.reshape(-1).astype(int))]
        assert unseen == [3, 5]
        np.testing.assert_array_equal(table.numpy()[unseen],
                                      w0[id(table)][unseen].astype(np.float32))


@pytest.mark.parametrize("backend", ["cpu", "numpy", "cuda"])
def test_two_sgd_steps_leave_no_stale_gradient_rows(backend):
    """Step 2 sees other ids than step 1: the rows of step 1 must not move again (their
    gradient rows were zeroed after the update, never the whole table)."""
    pynn.utils.set_random_seed(2)
    ids = pynn.Input((3,))
    model = pynn.Model(ids, L.Dense(1)(L.Flatten()(L.Embedding(8, 2)(ids))))
    model.compile(optimizer=pynn.optimizers.SGD(0.5), loss="mse", backend=backend)
    y = np.ones((2, 1), np.float32)
    model.train_on_batch(np.array([[0, 1, 1], [2, 0, 1]], np.float32), y)
    after_one = model.layers[1].embeddings.numpy()
    model.train_on_batch(np.array([[5, 6, 5], [7, 7, 6]], np.float32), y)
    after_two = model.layers[1].embeddings.numpy()
    np.testing.assert_array_equal(after_two[:3], after_one[:3])
    assert not np.array_equal(after_two[5:], after_one[5:])
    grads = model.engine.store.grads
    grads = grads if isinstance(grads, np.ndarray) else pynn.backend.get(backend).to_host(grads)
    table = model.layers[1].embeddings
    start = dict((id(v), s) for v, s in model.engine.store.layout.trainable_offsets)[id(table)]
    np.testing.assert_array_equal(grads[start:start + table.size], 0.0)


@pytest.mark.parametrize("name", ["embedding", "td_conv2d"])
def test_whole_epoch_in_c_matches_step_by_step_and_threads_bitwise(name, threads):
    """fit in C (whole epochs, OP_ROWS_SCOPE included) vs the Python executor on cpu, and
    1 vs 2 threads: the same bits (the gradient rows are summed in position order)."""
    def train(force_python, n_threads):
        pynn.set_num_threads(n_threads)
        pynn.utils.set_random_seed(5)
        model, x = MODELS[name]()
        model.compile(optimizer="adam", loss="mse")
        model.engine.force_python = force_python
        rng = np.random.default_rng(0)
        xs = rng.integers(0, 7, size=(40, 6)).astype(np.float32) if name == "embedding" \
            else rng.normal(size=(40,) + x.shape[1:]).astype(np.float32)
        ys = rng.normal(size=(40, 2)).astype(np.float32)
        model.fit(xs, ys, epochs=2, batch_size=16, shuffle=True, verbose=0)
        return model.get_weights()
    base = train(False, 1)
    for got in (train(True, 1), train(False, 2)):
        for a, b in zip(got, base):
            np.testing.assert_array_equal(a, b)


# ---- kernels: the sparse gradient, against the reference, on every backend -----------------

@pytest.mark.parametrize("backend", ["cpu", "numpy", "cuda"])
def test_embedding_backward_writes_only_the_rows_seen(backend):
    from pynn.backend import reference as ref
    be = pynn.backend.get(backend)
    rng = np.random.default_rng(3)
    V, D = 9, 5
    ids = np.array([4, 0, 4, 8, 4, 0, 2], np.float32)
    dy = rng.normal(size=(len(ids), D)).astype(np.float32)
    sentinel = np.full((V, D), 7.0, np.float32)
    dtable, work = be.from_host(sentinel), be.zeros((2 * len(ids),), dtype=np.int64)
    be.embedding_backward(be.from_host(ids), be.from_host(dy), dtable, work)
    got = be.to_host(dtable)
    seen, rows = ref.embedding_backward(ids, dy, V)
    np.testing.assert_array_equal(seen, [0, 2, 4, 8])
    np.testing.assert_array_equal(got[seen], rows)          # bitwise: position order
    untouched = [r for r in range(V) if r not in seen]
    np.testing.assert_array_equal(got[untouched], 7.0)
    want = np.zeros((V, D))
    np.add.at(want, ids.astype(int), dy.astype(np.float64))
    np.testing.assert_allclose(got[seen], want[seen], rtol=1e-6)
    be.embedding_grad_clear(dtable, work, len(ids))
    got = be.to_host(dtable)
    np.testing.assert_array_equal(got[seen], 0.0)
    np.testing.assert_array_equal(got[untouched], 7.0)


@pytest.mark.parametrize("backend", ["cpu", "numpy", "cuda"])
def test_masking_kernels_match_the_reference(backend):
    from pynn.backend import reference as ref
    be = pynn.backend.get(backend)
    rng = np.random.default_rng(6)
    x = rng.normal(size=(7, 3)).astype(np.float32)
    x[[1, 5]] = -1.5
    x[3, 0] = -1.5
    y, mask = be.zeros((7, 3)), be.zeros((7,))
    be.masking_forward(be.from_host(x), -1.5, y, mask)
    want_y, want_m = ref.masking_forward(x, -1.5)
    np.testing.assert_array_equal(be.to_host(mask), want_m)
    np.testing.assert_array_equal(be.to_host(y), want_y)
    assert be.to_host(mask).tolist() == [1, 0, 1, 1, 1, 0, 1]
    dy = rng.normal(size=(7, 3)).astype(np.float32)
    dx = be.zeros((7, 3))
    be.masking_backward(be.from_host(dy), mask, dx)
    np.testing.assert_array_equal(be.to_host(dx), ref.masking_backward(dy, want_m))


# ---- bad ids and bad arguments ---------------------------------------------------------------

@pytest.mark.parametrize("backend", ["cpu", "numpy", "cuda"])
@pytest.mark.parametrize("bad", [7.0, -1.0, 2.5])
def test_out_of_range_ids_raise_and_change_nothing(backend, bad):
    pynn.utils.set_random_seed(1)
    ids = pynn.Input((3,))
    model = pynn.Model(ids, L.Dense(1)(L.Flatten()(L.Embedding(7, 2)(ids))))
    model.compile(optimizer="sgd", loss="mse", backend=backend)
    before = model.get_weights()
    x = np.array([[1, 2, 3], [4, bad, 0]], np.float32)
    with pytest.raises(ValueError, match=r"input id is not an integer in \[0, input_dim"):
        model.fit(x, np.zeros((2, 1)), epochs=1, batch_size=2, verbose=0)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="input id"):
        model.predict(x, verbose=0)


@pytest.mark.parametrize("make,match", [
    (lambda: L.Embedding(0, 3), r"`input_dim` must be a positive integer. Received: input_dim=0"),
    (lambda: L.Embedding(-2, 3), r"input_dim=-2"),
    (lambda: L.Embedding(4.0, 3), r"input_dim=4.0 \(of type float\)"),
    (lambda: L.Embedding(4, 0), r"`output_dim` must be a positive integer. Received: "
                                r"output_dim=0"),
    (lambda: L.Embedding(4, 2, embeddings_regularizer="l3"),
     r"invalid value for `embeddings_regularizer`: could not interpret regularizer "
     r"identifier 'l3'"),
    (lambda: L.Embedding(4, 2, lora_rank=2), r"lora_rank=2"),
    (lambda: L.Embedding(4, 2, mask_zero="yes"), r"`mask_zero`.*mask_zero='yes'"),
    (lambda: L.Masking(mask_value="zero"), r"mask_value='zero'"),
    (lambda: L.TimeDistributed("dense"), r"Layer` instance. Received: layer='dense'"),
    (lambda: L.TimeDistributed(L.Dense), r"Received: layer=<class"),
])
def test_bad_arguments_name_the_argument_and_value(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_time_distributed_needs_a_time_axis_and_leaves_the_layer_unbuilt():
    td = L.TimeDistributed(L.Dense(2))
    with pytest.raises(ValueError, match=r"at least 3 dimensions, received: \(None, 4\)"):
        td(pynn.Input((4,)))
    assert not td.layer.built and not td.inbound_nodes


def test_embedding_weights_argument_and_output_shapes():
    w = np.arange(12, dtype=np.float32).reshape(4, 3)
    e = L.Embedding(4, 3, weights=w)
    np.testing.assert_array_equal(e.get_weights()[0], w)
    np.testing.assert_array_equal(e(np.array([[3, 0]], np.float32)), w[[[3, 0]]])
    assert e.compute_output_shape((None, 5, 2)) == (None, 5, 2, 3)
    with pytest.raises(ValueError, match=r"expected embedding/embeddings of shape|expected "):
        L.Embedding(4, 3, weights=np.zeros((3, 3)))
    td = L.TimeDistributed(L.Conv2D(4, 3))
    assert td.compute_output_shape((None, 6, 8, 8, 2)) == (None, 6, 6, 6, 4)


# ---- saving and ONNX -------------------------------------------------------------------------

def _saved_model():
    """Embedding(mask_zero) + TimeDistributed(Dense) on int ids, Masking +
    TimeDistributed(Conv2D) on a sequence of images, trained a little."""
    pynn.utils.set_random_seed(4)
    ids = pynn.Input((5,), dtype="int32", name="ids")
    frames = pynn.Input((3, 4, 4, 2), name="frames")
    a = L.Embedding(9, 3, mask_zero=True)(ids)
    a = L.Flatten()(L.TimeDistributed(L.Dense(2, activation="tanh"))(a))
    b = L.TimeDistributed(L.Conv2D(2, 3, padding="same", activation="relu"))(frames)
    b = L.Flatten()(b)
    seq = pynn.Input((4, 3), name="seq")
    c = L.Flatten()(L.Masking(0.0)(seq))
    out = L.Dense(2)(L.Concatenate()([a, b, c]))
    model = pynn.Model([ids, frames, seq], out)
    model.compile(optimizer=pynn.optimizers.Adam(0.01), loss="mse")
    rng = np.random.default_rng(0)
    xs = [rng.integers(0, 9, (12, 5)).astype(np.int32),
          rng.normal(size=(12, 3, 4, 4, 2)).astype(np.float32),
          rng.normal(size=(12, 4, 3)).astype(np.float32)]
    xs[2][:, 1] = 0.0
    model.fit(xs, rng.normal(size=(12, 2)), epochs=2, batch_size=4, verbose=0)
    return model, xs


def test_save_load_round_trips_pynn_and_keras_formats(tmp_path):
    model, xs = _saved_model()
    want = model.predict(xs, verbose=0)
    config = model.get_config()
    clone = pynn.Model.from_config(config)
    clone.set_weights(model.get_weights())
    np.testing.assert_array_equal(clone.predict(xs, verbose=0), want)
    for name in ("m.pynn", "m.keras"):
        model.save(tmp_path / name)
    # the model trains on from the saved state: the loaded copies must too (Adam's moments)
    y = np.ones((12, 2), np.float32)
    trained = model.fit(xs, y, epochs=1, batch_size=6, shuffle=False, verbose=0)
    for name in ("m.pynn", "m.keras"):
        loaded = pynn.load_model(tmp_path / name)
        np.testing.assert_array_equal(loaded.predict(xs, verbose=0), want)
        assert [v.path for v in loaded.weights] == [v.path for v in model.weights]
        assert re.search(r"\btime_distributed(_\d+)?/dense(_\d+)?/kernel\b",
                         " ".join(v.path for v in loaded.weights))
        assert loaded.inputs[0].dtype == "int32"
        h = loaded.fit(xs, y, epochs=1, batch_size=6, shuffle=False, verbose=0)
        assert h.history["loss"] == trained.history["loss"], name
        for a, b in zip(loaded.get_weights(), model.get_weights()):
            np.testing.assert_array_equal(a, b)


def test_keras_loads_pynn_files_and_pynn_loads_keras_files(tmp_path):
    """Cross-check with real Keras 3 where PYNN_KERAS_PYTHON names one (as
    tests/test_keras_files.py does)."""
    from test_keras_files import _keras_python, run_keras
    python = _keras_python()
    if python is None:
        pytest.skip("Keras 3 is not installed: set PYNN_KERAS_PYTHON to run the cross-check")
    model, xs = _saved_model()
    model.save(tmp_path / "m.keras")
    for i, x in enumerate(xs):
        np.save(tmp_path / f"x{i}.npy", x)
    run_keras(python, tmp_path, """
        m = keras.saving.load_model("m.keras")
        xs = [np.load(f"x{i}.npy") for i in range(3)]
        np.save("keras_pred.npy", np.asarray(m.predict(xs, verbose=0)))
        assert [type(l).__name__ for l in m.layers].count("TimeDistributed") == 2
        assert m.layers[1].supports_masking if type(m.layers[1]).__name__ == "Embedding" else 1
        # a model Keras builds: its file loads in pynn
        ids = keras.Input((6,), dtype="int32")
        h = keras.layers.Embedding(11, 4, mask_zero=True)(ids)
        h = keras.layers.TimeDistributed(keras.layers.Dense(3, activation="relu"))(h)
        seq = keras.Input((6, 2))
        g = keras.layers.Masking(0.5)(seq)
        out = keras.layers.Dense(1)(keras.layers.Concatenate()(
            [keras.layers.Flatten()(h), keras.layers.Flatten()(g)]))
        k = keras.Model([ids, seq], out)
        k.compile(optimizer="adam", loss="mse")
        rng = np.random.default_rng(0)
        kx = [rng.integers(0, 11, (8, 6)).astype("int32"), rng.normal(size=(8, 6, 2))]
        k.fit(kx, rng.normal(size=(8, 1)), epochs=1, verbose=0)
        np.save("kx0.npy", kx[0]); np.save("kx1.npy", kx[1])
        np.save("k_pred.npy", np.asarray(k.predict(kx, verbose=0)))
        k.save("k.keras")
        """)
    np.testing.assert_allclose(np.load(tmp_path / "keras_pred.npy"), model.predict(xs, verbose=0),
                               rtol=1e-5, atol=1e-6)
    back = pynn.load_model(tmp_path / "k.keras")
    kx = [np.load(tmp_path / "kx0.npy"), np.load(tmp_path / "kx1.npy")]
    np.testing.assert_allclose(back.predict(kx, verbose=0), np.load(tmp_path / "k_pred.npy"),
                               rtol=1e-5, atol=1e-6)


def test_onnx_export_matches_predict(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model, xs = _saved_model()
    model.export(tmp_path / "m.onnx", format="onnx")
    import onnx
    proto = onnx.load(str(tmp_path / "m.onnx"))
    ops = {n.op_type for n in proto.graph.node}
    assert {"Gather", "Equal", "Not", "ReduceMax", "Reshape", "Conv"} <= ops
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT32
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    feed = dict(zip(model.input_names, xs))
    got = session.run(None, feed)[0]
    np.testing.assert_allclose(got, model.predict(xs, verbose=0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_hooked_plan_clears_every_gradient_row_after_the_update(backend):
    """With gradient hooks (distributed training) the summed gradient holds the rows other
    ranks saw: the update is the dense one and the clear after it covers every row, and
    without an active hook the step is the same as the plain (sparse SGD) one, bitwise."""
    from pynn.models.plan import insert_grad_hooks
    weights = []
    x = np.array([[1, 2, 2], [0, 5, 1]], np.float32)
    for hooked in (False, True):
        pynn.utils.set_random_seed(0)
        ids = pynn.Input((3,))
        model = pynn.Model(ids, L.Dense(1)(L.Flatten()(L.Embedding(8, 2)(ids))))
        model.compile(optimizer="sgd", loss="mse", backend=backend)
        plan = model.engine.plan("train")
        # plain SGD: the sparse update (engineer S), its rows cleared by OP_EMBEDDING_SGD
        assert [op.name for op in plan.ops].count("embedding_sgd") == 1
        assert not any(op.name == "embedding_grad_clear" for op in plan.ops)
        if hooked:
            starts = {id(v): s for v, s in model.engine.store.layout.trainable_offsets}
            insert_grad_hooks(plan, starts, 4)
            clears = [i for i, op in enumerate(plan.ops) if op.name == "embedding_grad_clear"]
            assert len(clears) == 1 and plan.ops[clears[0]].ints[2] == 1
            assert clears[0] > plan.optimizer_op
            assert not any(op.name == "embedding_sgd" for op in plan.ops)
        model.fit(x, np.ones((2, 1)), batch_size=2, epochs=3, verbose=0, shuffle=False)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


def test_eager_outputs_carry_their_mask_as_keras():
    """Keras 3 attaches the mask to eager outputs (keras.backend.get_keras_mask): Embedding
    and Masking make it, Dense passes it on, Flatten drops it."""
    e = L.Embedding(10, 3, mask_zero=True)
    y = e(np.array([[1, 0, 2], [0, 0, 4]]))
    assert isinstance(y, np.ndarray) and y.dtype == np.float32
    np.testing.assert_array_equal(y._keras_mask, [[True, False, True], [False, False, True]])
    z = L.Dense(2)(y)
    np.testing.assert_array_equal(z._keras_mask, y._keras_mask)
    assert getattr(L.Flatten()(z), "_keras_mask", None) is None
    assert getattr(L.Embedding(10, 3)(np.array([[1, 0]])), "_keras_mask", None) is None
    m = L.Masking(0.5)(np.array([[[0.5, 0.5], [1.0, 2.0]]], np.float32))
    np.testing.assert_array_equal(m._keras_mask, [[False, True]])

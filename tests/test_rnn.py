"""The recurrent layers (SimpleRNN, LSTM, GRU, Bidirectional): one training step against
torch autograd (float64), the kernels against the NumPy reference, masks, dropout, saving
and bad arguments.

Weight conversions from Keras's layouts to torch's (documented here, used below):
  LSTM:  kernel (F, 4U) -> weight_ih_l0 = kernel.T (4U, F); recurrent_kernel (U, 4U) ->
         weight_hh_l0 = recurrent_kernel.T; the same gate order i, f, g(c), o; bias (4U,) ->
         bias_ih_l0, bias_hh_l0 = 0.
  GRU:   Keras's gate blocks z, r, h -> torch's r, z, n (the blocks reordered, each block's
         columns unchanged); kernel -> weight_ih_l0 = kernel[:, r z h].T, likewise the
         recurrent kernel; reset_after's bias[0] -> bias_ih_l0 and bias[1] -> bias_hh_l0
         (reordered the same way).  torch's n = tanh(W_in x + b_in + r (W_hn h + b_hn)) is
         Keras's reset_after=True candidate.
  SimpleRNN: kernel.T -> weight_ih_l0, recurrent_kernel.T -> weight_hh_l0, bias ->
         bias_ih_l0, bias_hh_l0 = 0; nonlinearity tanh or relu.
  go_backwards: torch runs on the time-reversed input; its output sequence is then in
         processing order, as Keras's.
  Bidirectional: torch's bidirectional module (the *_reverse weights from the backward
         layer); its reverse outputs are in time order, as Keras's after its flip.
Masks and activations torch's modules do not have run through a torch loop written from
Keras's formulas (a masked step keeps the previous state and outputs it).
"""
import numpy as np
import pytest

import pynn
from pynn import layers
from pynn.backend import reference as ref
from pynn.models.plan import Tensor

from conftest import assert_close, assert_step_close, usable_backend

torch = pytest.importorskip("torch")

BACKENDS = ("cpu", "numpy", "cuda")
T, F, N = 4, 3, 5


# ---- torch side -----------------------------------------------------------------------------

def _t(a):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def _gru_order(a, u):
    """Keras's z, r, h blocks (last axis) -> torch's r, z, n."""
    return torch.cat([a[..., u:2 * u], a[..., :u], a[..., 2 * u:]], dim=-1)


def _module_params(kind, w, u, suffix=""):
    """torch module parameters (differentiable functions of the Keras-layout tensors w)."""
    k, rk = w[0], w[1]
    b = w[2] if len(w) > 2 else None
    if kind == "GRU":
        k, rk = _gru_order(k, u), _gru_order(rk, u)
        b = None if b is None else _gru_order(b, u)
        bih, bhh = (torch.zeros(3 * u, dtype=torch.float64),) * 2 if b is None else (b[0], b[1])
    else:
        bih = torch.zeros(k.shape[1], dtype=torch.float64) if b is None else b
        bhh = torch.zeros(k.shape[1], dtype=torch.float64)
    return {f"weight_ih_l0{suffix}": k.T, f"weight_hh_l0{suffix}": rk.T,
            f"bias_ih_l0{suffix}": bih, f"bias_hh_l0{suffix}": bhh}


_TACT = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu,
         "linear": lambda z: z}


def _loop(kind, cfg, w, x, mask, zero_output=False):
    """Keras's recurrence written in torch: (seq in processing order, h, c); zero_output:
    the sequence holds 0 at the masked steps (Keras's zero_output_for_mask)."""
    u = cfg["units"]
    act, ract = _TACT[cfg["activation"]], _TACT[cfg.get("recurrent_activation", "sigmoid")]
    k, rk = w[0], w[1]
    b = w[2] if len(w) > 2 else None
    n, steps = x.shape[0], x.shape[1]
    h = torch.zeros(n, u, dtype=torch.float64)
    c = torch.zeros(n, u, dtype=torch.float64)
    outs = []
    order = range(steps - 1, -1, -1) if cfg["go_backwards"] else range(steps)
    for t in order:
        xt = x[:, t] @ k
        rt = h @ rk
        if kind == "LSTM":
            z = xt + rt + (b if b is not None else 0)
            i, f, g, o = (z[:, j * u:(j + 1) * u] for j in range(4))
            c_new = ract(f) * c + ract(i) * act(g)
            h_new = ract(o) * act(c_new)
        elif kind == "GRU":
            if b is not None:
                xt, rt = xt + b[0], rt + b[1]
            zg = ract(xt[:, :u] + rt[:, :u])
            rg = ract(xt[:, u:2 * u] + rt[:, u:2 * u])
            hh = act(xt[:, 2 * u:] + rg * rt[:, 2 * u:])
            h_new, c_new = zg * h + (1 - zg) * hh, c
        else:
            h_new, c_new = act(xt + rt + (b if b is not None else 0)), c
        if mask is not None:
            m = torch.tensor(mask[:, t:t + 1] != 0)
            h_new, c_new = torch.where(m, h_new, h), torch.where(m, c_new, c)
        h, c = h_new, c_new
        outs.append(torch.where(m, h, torch.zeros_like(h)) if zero_output and mask is not None
                    else h)
    return torch.stack(outs, dim=1), h, c


def torch_rnn(kind, cfg, w, x, mask=None):
    """(seq, h_last, c_last) of a Keras recurrent layer with weights w (torch tensors in
    Keras's layouts) over x; seq in the layer's output order."""
    u = cfg["units"]
    standard = mask is None and cfg["activation"] in ("tanh", "relu" if kind == "SimpleRNN"
                                                     else "tanh") and \
        cfg.get("recurrent_activation", "sigmoid") == "sigmoid"
    if not standard:
        return _loop(kind, cfg, w, x, mask)
    xs = torch.flip(x, [1]) if cfg["go_backwards"] else x
    if kind == "SimpleRNN":
        mod = torch.nn.RNN(x.shape[2], u, batch_first=True, nonlinearity=cfg["activation"])
    else:
        mod = getattr(torch.nn, kind)(x.shape[2], u, batch_first=True)
    mod = mod.double()
    out = torch.func.functional_call(mod, _module_params(kind, w, u), (xs,))
    seq, state = out
    if kind == "LSTM":
        h, c = state[0][0], state[1][0]
    else:
        h, c = state[0], None
    return seq, h, c


def torch_bidirectional(kind, cfg, wf, wb, x, merge_mode):
    """torch's bidirectional module: (merged output(s), forward states, backward states)."""
    u = cfg["units"]
    if kind == "SimpleRNN":
        mod = torch.nn.RNN(x.shape[2], u, batch_first=True, bidirectional=True,
                           nonlinearity=cfg["activation"])
    else:
        mod = getattr(torch.nn, kind)(x.shape[2], u, batch_first=True, bidirectional=True)
    params = {**_module_params(kind, wf, u), **_module_params(kind, wb, u, "_reverse")}
    seq, state = torch.func.functional_call(mod.double(), params, (x,))
    hs = state[0] if kind == "LSTM" else state
    if cfg["return_sequences"]:
        fo, bo = seq[..., :u], seq[..., u:]
    else:
        fo, bo = hs[0], hs[1]
    merged = {"concat": lambda: [torch.cat([fo, bo], -1)], "sum": lambda: [fo + bo],
              "mul": lambda: [fo * bo], "ave": lambda: [(fo + bo) / 2],
              None: lambda: [fo, bo]}[merge_mode]()
    return merged


def _dense_head(h, wd):
    return h.reshape(h.shape[0], -1) @ wd[0] + wd[1]


def expected_step(model, x, y, lr, body):
    """Weights after one SGD step of `body` (torch: keras-layout weight tensors -> the
    model's output) with MSE, from the model's current weights."""
    ws = [_t(w) for w in model.get_weights()]
    pred = body(ws, torch.tensor(x, dtype=torch.float64))
    loss = ((pred - torch.tensor(y, dtype=torch.float64)) ** 2).mean()
    loss.backward()
    return [(w - lr * w.grad).detach().numpy() for w in ws]


def _cfg(layer):
    c = layer.get_config()
    return {"units": c["units"], "activation": c["activation"],
            "recurrent_activation": c.get("recurrent_activation", "sigmoid"),
            "go_backwards": c["go_backwards"], "return_sequences": c["return_sequences"]}


def _train_step(model, x, y, backend, lr=0.5):
    model.compile(optimizer=pynn.optimizers.SGD(learning_rate=lr), loss="mse", backend=backend)
    before = model.get_weights()
    model.train_on_batch(x, y)
    return before, model.get_weights()


def _data(seed=0, steps=T, features=F, n=N, out=2):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, steps, features)).astype(np.float32), \
        rng.standard_normal((n, out)).astype(np.float32)


# ---- one training step against torch ------------------------------------------------------

# (kind, layer kwargs, backend): options and backends crossed pairwise
STEP_CASES = [
    ("LSTM", {}, "cpu"),
    ("LSTM", {"return_sequences": True, "go_backwards": True}, "numpy"),
    ("LSTM", {"return_sequences": True}, "cuda"),
    ("LSTM", {"activation": "relu", "recurrent_activation": "tanh", "use_bias": False}, "cpu"),
    ("GRU", {}, "numpy"),
    ("GRU", {"return_sequences": True, "go_backwards": True}, "cpu"),
    ("GRU", {"go_backwards": True, "use_bias": False}, "cuda"),
    ("GRU", {"activation": "linear", "recurrent_activation": "sigmoid"}, "cpu"),
    ("SimpleRNN", {}, "cuda"),
    ("SimpleRNN", {"activation": "relu", "return_sequences": True}, "cpu"),
    ("SimpleRNN", {"go_backwards": True, "return_sequences": True}, "numpy"),
    ("SimpleRNN", {"activation": "sigmoid"}, "cpu"),
]


@pytest.mark.parametrize("kind,kwargs,backend", STEP_CASES)
def test_one_step_matches_torch(kind, kwargs, backend):
    usable_backend(backend)
    pynn.utils.set_random_seed(3)
    x, y = _data()
    layer = getattr(layers, kind)(4, **kwargs)
    model = pynn.Sequential([pynn.Input((T, F)), layer, layers.Flatten(), layers.Dense(2)]) \
        if kwargs.get("return_sequences") else \
        pynn.Sequential([pynn.Input((T, F)), layer, layers.Dense(2)])
    cfg = _cfg(layer)
    n_rnn = len(layer.weights)

    def body(ws, xt):
        seq, h, _ = torch_rnn(kind, cfg, ws[:n_rnn], xt)
        return _dense_head(seq if cfg["return_sequences"] else h, ws[n_rnn:])

    expected = expected_step(model, x, y, 0.5, body)
    before, after = _train_step(model, x, y, backend)
    assert_step_close(before, after, expected, err_msg=f"{kind} {kwargs} on {backend}")


@pytest.mark.parametrize("kind,merge_mode,return_sequences,backend", [
    ("LSTM", "concat", True, "cpu"), ("GRU", "sum", False, "cpu"),
    ("SimpleRNN", "mul", True, "numpy"), ("LSTM", "ave", False, "numpy"),
    ("GRU", None, True, "cpu"), ("LSTM", "concat", False, "cuda"),
])
def test_bidirectional_step_matches_torch(kind, merge_mode, return_sequences, backend):
    usable_backend(backend)
    pynn.utils.set_random_seed(4)
    x, y = _data(1)
    bi = layers.Bidirectional(getattr(layers, kind)(3, return_sequences=return_sequences),
                              merge_mode=merge_mode)
    inp = pynn.Input((T, F))
    out = bi(inp)
    if merge_mode is None:
        out = layers.Concatenate()(out)
    if return_sequences:
        out = layers.Flatten()(out)
    model = pynn.Model(inp, layers.Dense(2)(out))
    cfg = _cfg(bi.forward_layer)
    n = len(bi.forward_layer.weights)
    assert [w.name for w in bi.weights] == [w.name for w in bi.forward_layer.weights] * 2

    def body(ws, xt):
        merged = torch_bidirectional(kind, cfg, ws[:n], ws[n:2 * n], xt, merge_mode)
        h = torch.cat(merged, -1) if len(merged) > 1 else merged[0]
        return _dense_head(h, ws[2 * n:])

    expected = expected_step(model, x, y, 0.5, body)
    before, after = _train_step(model, x, y, backend)
    assert_step_close(before, after, expected, err_msg=f"Bidirectional {kind} {merge_mode}")


@pytest.mark.parametrize("kind,backend", [("LSTM", "cpu"), ("GRU", "numpy"),
                                          ("SimpleRNN", "cpu")])
def test_return_state_step_matches_torch(kind, backend):
    """return_state: several outputs of one call, all feeding the head (the state outputs
    get their own gradients; the h state is the output too when return_sequences=False)."""
    pynn.utils.set_random_seed(5)
    x, y = _data(2)
    inp = pynn.Input((T, F))
    layer = getattr(layers, kind)(3, return_state=True, return_sequences=True)
    outs = layer(inp)
    assert len(outs) == (3 if kind == "LSTM" else 2)
    parts = [layers.Flatten()(outs[0])] + list(outs[1:])
    model = pynn.Model(inp, layers.Dense(2)(layers.Concatenate()(parts)))
    cfg = _cfg(layer)

    def body(ws, xt):
        seq, h, c = torch_rnn(kind, cfg, ws[:len(layer.weights)], xt)
        parts = [seq.reshape(seq.shape[0], -1), h] + ([c] if kind == "LSTM" else [])
        return _dense_head(torch.cat(parts, -1), ws[len(layer.weights):])

    expected = expected_step(model, x, y, 0.5, body)
    before, after = _train_step(model, x, y, backend)
    assert_step_close(before, after, expected, err_msg=f"{kind} return_state")


def test_state_output_without_gradient():
    """An LSTM's c state output unused by the loss: its rule receives no gradient for it."""
    pynn.utils.set_random_seed(6)
    x, y = _data(3)
    inp = pynn.Input((T, F))
    out, h, c = layers.LSTM(3, return_state=True)(inp)
    model = pynn.Model(inp, layers.Dense(2)(out))
    layer = model.layers[1]
    cfg = _cfg(layer)

    def body(ws, xt):
        _, hh, _ = torch_rnn("LSTM", cfg, ws[:3], xt)
        return _dense_head(hh, ws[3:])

    expected = expected_step(model, x, y, 0.5, body)
    before, after = _train_step(model, x, y, "cpu")
    assert_step_close(before, after, expected)


# ---- masks --------------------------------------------------------------------------------

class _MaskedTensor(Tensor):
    """A plan tensor with a `mask` (the attribute engineer G's interface adds)."""


class _AttachMask(layers.Layer):
    """Test helper: [x, m] -> x carrying the mask m (batch, T) of 1.0/0.0."""

    _single_input = False

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def plan_forward(self, b, inputs, training, logits=False):
        x, m = inputs
        out = _MaskedTensor(x.buf, x.shape)
        out.mask = m
        b.differentiate([x, m], [out], lambda b, dys, need: [dys[0], None])
        return out


@pytest.mark.parametrize("kind,kwargs,backend", [
    ("LSTM", {"return_sequences": True}, "cpu"), ("GRU", {}, "cpu"),
    ("SimpleRNN", {"go_backwards": True, "return_sequences": True}, "numpy"),
    ("LSTM", {"go_backwards": True}, "numpy"), ("GRU", {"return_sequences": True}, "cuda"),
])
def test_masked_step_matches_torch(kind, kwargs, backend):
    usable_backend(backend)
    pynn.utils.set_random_seed(7)
    x, y = _data(4)
    mask = np.ones((N, T), np.float32)
    mask[0, :2] = 0          # left padding
    mask[1, 3:] = 0          # right padding
    mask[2, 1] = 0           # a hole
    mask[3, :] = 0           # everything masked: the state stays 0
    xin, min_ = pynn.Input((T, F)), pynn.Input((T,))
    layer = getattr(layers, kind)(3, **kwargs)
    h = layer(_AttachMask()([xin, min_]))
    if kwargs.get("return_sequences"):
        h = layers.Flatten()(h)
    model = pynn.Model([xin, min_], layers.Dense(2)(h))
    cfg = _cfg(layer)

    def body(ws, xt):
        seq, hh, _ = torch_rnn(kind, cfg, ws[:len(layer.weights)], xt, mask=mask)
        return _dense_head(seq if cfg["return_sequences"] else hh, ws[len(layer.weights):])

    expected = expected_step(model, x, y, 0.5, body)
    model.compile(optimizer=pynn.optimizers.SGD(learning_rate=0.5), loss="mse", backend=backend)
    before = model.get_weights()
    model.train_on_batch([x, mask], y)
    assert_step_close(before, model.get_weights(), expected, err_msg=f"{kind} masked")


# ---- the kernels against the reference ------------------------------------------------------

# rec_dropout 2: a mask per gate (gate_masks, Keras 3's LSTM/GRU with recurrent_dropout),
# with the inputs' per-gate masks too; 3: per-gate state masks only.  n 20: the C kernel
# splits the rows between threads (above 16 rows), else it runs all rows each step.
@pytest.mark.parametrize("cell,go_backwards,time_order,masked,rec_dropout,n", [
    (0, 0, 0, 0, 0, 3), (1, 1, 0, 1, 0, 3), (2, 1, 1, 0, 1, 3), (1, 0, 1, 1, 1, 3),
    (2, 0, 0, 1, 0, 3), (0, 1, 1, 1, 1, 3), (1, 1, 0, 1, 2, 3), (2, 0, 1, 1, 2, 3),
    (1, 0, 0, 0, 3, 3), (1, 0, 1, 1, 2, 20), (2, 1, 0, 0, 3, 20), (1, 1, 1, 1, 1, 20),
])
@pytest.mark.parametrize("backend", ["cpu", "numpy", "cuda"])
def test_kernels_match_reference(backend, cell, go_backwards, time_order, masked, rec_dropout,
                                 n):
    be = pynn.backend.get(usable_backend(backend))
    rng = np.random.default_rng(cell * 7 + go_backwards + rec_dropout)
    steps, f, u = (5, 4, 6) if backend != "cuda" else (3, 2, 3)
    n = n if backend != "cuda" else min(n, 2)
    G = ref.RNN_GATES[cell]
    gate_masks = rec_dropout >= 2
    x = rng.standard_normal((n, steps, f)).astype(np.float32)
    k = (rng.standard_normal((f, G * u)) * .5).astype(np.float32)
    rk = (rng.standard_normal((u, G * u)) * .5).astype(np.float32)
    b = (rng.standard_normal((2, G * u) if cell == 2 else (G * u,)) * .3).astype(np.float32)
    m = (rng.random((n, steps)) > .3).astype(np.float32) if masked else None
    rm = ((rng.random((n, G, u) if gate_masks else (n, u)) > .3) * 1.25).astype(np.float32) \
        if rec_dropout else None
    im = ((rng.random((n, G, f)) > .4) * 1.5).astype(np.float32) if rec_dropout == 2 else None
    opts = dict(cell=cell, act="tanh", rec_act="sigmoid", go_backwards=bool(go_backwards),
                time_order=bool(time_order))
    masks = dict(in_mask=im, gate_masks=gate_masks)
    R = ref.rnn_forward(x, k, rk, b, m, rm, **opts, **masks)

    def z(*shape):
        return be.copy_to_device(np.zeros(shape, np.float32)) if hasattr(be, "copy_to_device") \
            else np.zeros(shape, np.float32)

    dev = be.from_host if hasattr(be, "from_host") else (lambda a: a)
    X, K, RK, B = (None if a is None else dev(a) for a in (x, k, rk, b))
    M = None if m is None else dev(m)
    RM = None if rm is None else dev(rm)
    dmasks = dict(in_mask=None if im is None else dev(im), gate_masks=gate_masks)
    bufs = {name: dev(np.zeros(shape, np.float32)) for name, shape in (
        ("seq", (n, steps, u)), ("cs", (n, steps, u)), ("gates", (n, steps, G * u)),
        ("hprev", (n, steps, u)), ("aux", (n, steps, u)), ("work", (n, max(G * u, 4 * u))),
        ("h_last", (n, u)), ("c_last", (n, u)))}
    sizes = dict(T=steps, f=f, u=u, cell=cell, act="tanh", rec_act="sigmoid",
                 go_backwards=bool(go_backwards), time_order=bool(time_order))
    be.rnn_forward(X, K, RK, B, M, RM, bufs["seq"], bufs["cs"], bufs["gates"], bufs["hprev"],
                   bufs["aux"], bufs["work"], bufs["h_last"], bufs["c_last"], **sizes,
                   **dmasks)
    host = be.to_host
    for name in ("seq", "gates", "hprev", "h_last"):
        assert_close(host(bufs[name]), R[name], err_msg=name)
    if cell == 1:
        assert_close(host(bufs["cs"]), R["cs"], err_msg="cs")
    dseq = rng.standard_normal((n, steps, u)).astype(np.float32)
    dh = rng.standard_normal((n, u)).astype(np.float32)
    dc = rng.standard_normal((n, u)).astype(np.float32) if cell == 1 else None
    D = ref.rnn_backward(dseq, dh, dc, x, k, rk, R, m, rm, **opts, **masks)
    outs = {"dkernel": dev(np.zeros_like(k)), "drkernel": dev(np.zeros_like(rk)),
            "dbias": dev(np.zeros_like(b)), "dx": dev(np.zeros_like(x))}
    be.rnn_backward(X, K, RK, bufs["seq"], bufs["cs"], bufs["gates"], bufs["hprev"],
                    bufs["aux"], M, RM, dev(dseq), dev(dh), None if dc is None else dev(dc),
                    dev(np.zeros((n, steps, G * u), np.float32)),
                    dev(np.zeros((n, steps, G * u), np.float32)),
                    dev(np.zeros((n, 4 * u + G * u), np.float32)), outs["dkernel"],
                    outs["drkernel"], outs["dbias"], outs["dx"], **sizes, **dmasks)
    for name, out in outs.items():
        assert_close(host(out), D[name], rtol=1e-4, err_msg=name)


def _fd_operands(rng, cell, n=2, steps=3, f=2, u=2):
    """float64 x (n, steps, f), kernel, recurrent kernel and bias of a cell."""
    G = ref.RNN_GATES[cell]
    return (rng.standard_normal((n, steps, f)), rng.standard_normal((f, G * u)) * .5,
            rng.standard_normal((u, G * u)) * .5,
            rng.standard_normal((2, G * u) if cell == 2 else (G * u,)) * .3)


def _central_differences(loss, arr, h=1e-6):
    """d loss / d arr, element by element."""
    num = np.zeros_like(arr)
    for i in np.ndindex(arr.shape):
        ap, am = arr.copy(), arr.copy()
        ap[i] += h
        am[i] -= h
        num[i] = (loss(ap) - loss(am)) / (2 * h)
    return num


def test_reference_gradients_match_finite_differences():
    """The reference's BPTT against float64 central differences of its own forward."""
    rng = np.random.default_rng(0)
    for cell in (0, 1, 2):
        x, k, rk, b = _fd_operands(rng, cell)
        m = np.array([[1, 0, 1], [1, 1, 0]], np.float64)
        dseq = rng.standard_normal((2, 3, 2))

        def loss(kk):
            r = ref.rnn_forward(x, kk, rk, b, m, None, cell, "tanh", "sigmoid", True, False)
            return float((r["seq"] * dseq).sum())

        saved = ref.rnn_forward(x, k, rk, b, m, None, cell, "tanh", "sigmoid", True, False)
        grads = ref.rnn_backward(dseq, None, None, x, k, rk, saved, m, None, cell, "tanh",
                                 "sigmoid", True, False)
        np.testing.assert_allclose(grads["dkernel"], _central_differences(loss, k), rtol=1e-6,
                                   atol=1e-8)


@pytest.mark.parametrize("cell", [1, 2])
def test_reference_gate_masks_match_finite_differences(cell):
    """With a dropout mask per gate (rec_mask (n, G, u), in_mask (n, G, f)), the reference's
    kernel, recurrent kernel and input gradients against float64 central differences."""
    rng = np.random.default_rng(cell)
    G = ref.RNN_GATES[cell]
    n, steps, f, u = 2, 3, 2, 2
    x, k, rk, b = _fd_operands(rng, cell, n, steps, f, u)
    rm = (rng.random((n, G, u)) > .3) * 1.4
    im = (rng.random((n, G, f)) > .3) * 1.25
    dseq = rng.standard_normal((n, steps, u))
    opts = dict(cell=cell, act="tanh", rec_act="sigmoid", in_mask=im, gate_masks=True)

    def loss(xx, kk, rkk):
        return float((ref.rnn_forward(xx, kk, rkk, b, None, rm, **opts)["seq"] * dseq).sum())

    saved = ref.rnn_forward(x, k, rk, b, None, rm, **opts)
    grads = ref.rnn_backward(dseq, None, None, x, k, rk, saved, None, rm, **opts)
    for name, arr, f_of in (("dkernel", k, lambda a: loss(x, a, rk)),
                            ("drkernel", rk, lambda a: loss(x, k, a)),
                            ("dx", x, lambda a: loss(a, k, rk))):
        np.testing.assert_allclose(grads[name], _central_differences(f_of, arr), rtol=1e-6,
                                   atol=1e-8, err_msg=name)


@pytest.mark.parametrize("kind,G", [("LSTM", 4), ("GRU", 3), ("SimpleRNN", 1)])
def test_recurrent_dropout_draws_a_mask_per_gate(kind, G, monkeypatch):
    """Keras 3: an LSTM or GRU with recurrent_dropout draws one mask per gate for the state
    and one per gate for the inputs (its "implementation 1"); SimpleRNN one of each.  The
    masks the kernel receives: per gate, 0 or 1/(1 - rate), differing between gates."""
    seen = {}
    numpy_backend = pynn.backend.get("numpy")
    original = type(numpy_backend).rnn_forward

    def spy(self, x, kernel, rkernel, bias, mask, rec_mask, *args, **kw):
        seen.update(rec_mask=np.array(rec_mask), in_mask=None if kw.get("in_mask") is None
                    else np.array(kw["in_mask"]), gate_masks=kw.get("gate_masks"))
        return original(self, x, kernel, rkernel, bias, mask, rec_mask, *args, **kw)

    monkeypatch.setattr(type(numpy_backend), "rnn_forward", spy)
    n, units = 8, 16
    model = pynn.Sequential([pynn.Input((T, F)),
                             getattr(layers, kind)(units, dropout=0.5, recurrent_dropout=0.5,
                                                   seed=3),
                             layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", backend="numpy")
    x = np.random.default_rng(0).standard_normal((n, T, F)).astype(np.float32)
    model.train_on_batch(x, np.zeros((n, 1), np.float32))
    per_gate = kind != "SimpleRNN"
    assert seen["gate_masks"] is per_gate
    rec = seen["rec_mask"].reshape(-1)[:n * (G if per_gate else 1) * units]
    assert set(np.unique(rec)) <= {0.0, 2.0}
    if per_gate:
        rec = rec.reshape(n, G, units)
        ins = seen["in_mask"].reshape(-1)[:n * G * F].reshape(n, G, F)
        assert set(np.unique(ins)) <= {0.0, 2.0}
        for g in range(1, G):
            assert not np.array_equal(rec[:, 0], rec[:, g])
            assert not np.array_equal(ins[:, 0], ins[:, g])
    else:
        assert seen["in_mask"] is None


def test_implementation_1_draws_an_input_mask_per_gate(monkeypatch):
    """Keras 3: LSTM(implementation=1) with dropout (no recurrent_dropout) also draws one
    input mask per gate; the default implementation shares one."""
    numpy_backend = pynn.backend.get("numpy")
    original = type(numpy_backend).rnn_forward
    seen = []

    def spy(self, *args, **kw):
        seen.append((kw.get("gate_masks"), kw.get("in_mask") is not None, args[5] is None))
        return original(self, *args, **kw)

    monkeypatch.setattr(type(numpy_backend), "rnn_forward", spy)
    x = np.random.default_rng(1).standard_normal((4, T, F)).astype(np.float32)
    for implementation, expected in ((1, (True, True, True)), (2, (False, False, True))):
        seen.clear()
        model = pynn.Sequential([pynn.Input((T, F)),
                                 layers.LSTM(3, dropout=0.5, implementation=implementation),
                                 layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse", backend="numpy")
        model.train_on_batch(x, np.zeros((4, 1), np.float32))
        assert seen == [expected]


# ---- dropout, determinism ------------------------------------------------------------------

def _dropout_model(seed):
    pynn.utils.set_random_seed(seed)
    return pynn.Sequential([pynn.Input((T, F)),
                            layers.LSTM(4, dropout=0.3, recurrent_dropout=0.4, seed=11,
                                        return_sequences=True),
                            layers.GRU(3, dropout=0.2, recurrent_dropout=0.3, seed=12),
                            layers.Dense(2)])


@pytest.mark.parametrize("backend", ["numpy", "cuda"])
def test_dropout_step_matches_cpu(backend):
    """Dropout masks come from pynn's counter-based generator: the same on every backend."""
    usable_backend(backend)
    x, y = _data(5)
    steps = {}
    for be in ("cpu", backend):
        model = _dropout_model(8)
        before, after = _train_step(model, x, y, be)
        steps[be] = (before, after)
    assert_step_close(steps["cpu"][0], steps[backend][1], steps["cpu"][1])
    changed = [np.abs(a - b).max() for a, b in zip(*steps["cpu"])]
    assert min(changed) > 0


def test_dropout_changes_the_step_and_repeats():
    x, y = _data(6)
    with_dropout = _train_step(_dropout_model(8), x, y, "cpu")[1]
    again = _train_step(_dropout_model(8), x, y, "cpu")[1]
    for a, b in zip(with_dropout, again):
        np.testing.assert_array_equal(a, b)
    pynn.utils.set_random_seed(8)
    plain = pynn.Sequential([pynn.Input((T, F)), layers.LSTM(4, seed=11, return_sequences=True),
                             layers.GRU(3, seed=12), layers.Dense(2)])
    no_dropout = _train_step(plain, x, y, "cpu")[1]
    assert any(not np.array_equal(a, b) for a, b in zip(with_dropout, no_dropout))


def test_threads_and_whole_epoch_bitwise(threads):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 6, 5)).astype(np.float32)
    y = rng.standard_normal((40, 2)).astype(np.float32)
    results = []
    for n_threads, epoch in ((1, True), (2, True), (2, False)):
        threads(n_threads)
        pynn.utils.set_random_seed(2)
        model = pynn.Sequential([pynn.Input((6, 5)),
                                 layers.Bidirectional(layers.LSTM(8, return_sequences=True,
                                                                  dropout=0.2)),
                                 layers.GRU(7, dropout=0.1, recurrent_dropout=0.3),
                                 layers.Dense(2)])
        model.compile(optimizer="adam", loss="mse")
        # batches of 24 and 16 rows: above 16 rnn.c splits the rows between the threads
        # for the whole sequence, up to 16 it runs all rows each step
        if epoch:
            model.fit(x, y, batch_size=24, epochs=2, verbose=0, shuffle=False)
        else:
            for _ in range(2):
                for i in range(0, 40, 24):
                    model.train_on_batch(x[i:i + 24], y[i:i + 24])
        results.append(model.get_weights())
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


# ---- shapes, config, saving ---------------------------------------------------------------

def test_weight_layouts_and_shapes():
    inp = pynn.Input((T, F))
    lstm, gru, rnn = layers.LSTM(5), layers.GRU(4), layers.SimpleRNN(3)
    assert lstm(inp).shape == (None, 5)
    gru(inp)
    rnn(inp)
    assert [w.shape for w in lstm.weights] == [(F, 20), (5, 20), (20,)]
    assert [w.name for w in lstm.weights] == ["kernel", "recurrent_kernel", "bias"]
    assert [w.shape for w in gru.weights] == [(F, 12), (4, 12), (2, 12)]
    assert [w.shape for w in rnn.weights] == [(F, 3), (3, 3), (3,)]
    bias = lstm.get_weights()[2]
    np.testing.assert_array_equal(bias[5:10], 1.0)       # unit_forget_bias
    np.testing.assert_array_equal(np.r_[bias[:5], bias[10:]], 0.0)
    rk = rnn.get_weights()[1]
    np.testing.assert_allclose(rk @ rk.T, np.eye(3), atol=1e-6)   # orthogonal
    out = layers.LSTM(2, return_sequences=True, return_state=True)(inp)
    assert [o.shape for o in out] == [(None, T, 2), (None, 2), (None, 2)]
    bi = layers.Bidirectional(layers.GRU(3, return_sequences=True))(inp)
    assert bi.shape == (None, T, 6)


def test_predict_matches_reference_forward():
    pynn.utils.set_random_seed(1)
    x, _ = _data(7)
    layer = layers.GRU(4, return_sequences=True, go_backwards=True)
    model = pynn.Sequential([pynn.Input((T, F)), layer])
    k, rk, b = layer.get_weights()
    expected = ref.rnn_forward(x, k, rk, b, None, None, 2, "tanh", "sigmoid", True)["seq"]
    assert_close(model.predict(x, verbose=0), expected)


@pytest.mark.parametrize("make", [
    lambda: layers.LSTM(3, return_sequences=True, go_backwards=True, dropout=0.1, seed=3),
    lambda: layers.GRU(2, activation="relu", return_state=True),
    lambda: layers.SimpleRNN(4, use_bias=False),
    lambda: layers.Bidirectional(layers.LSTM(3, return_sequences=True), merge_mode="sum"),
])
def test_config_and_keras_file_round_trip(make, tmp_path):
    layer = make()
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == {**layer.get_config(), "name": clone.name} or \
        clone.get_config()["name"] == layer.get_config()["name"]
    pynn.utils.set_random_seed(0)
    inp = pynn.Input((T, F))
    out = make()(inp)
    if isinstance(out, list):
        out = out[0]
    model = pynn.Model(inp, out)
    x, _ = _data(8)
    want = model.predict(x, verbose=0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = pynn.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), want)


# ---- bad arguments ----------------------------------------------------------------------------

@pytest.mark.parametrize("make,arg,value", [
    (lambda: layers.LSTM(0), "units", "units=0"),
    (lambda: layers.GRU(-2), "units", "units=-2"),
    (lambda: layers.LSTM(3, dropout=1.0), "dropout", "dropout=1.0"),
    (lambda: layers.SimpleRNN(3, recurrent_dropout=-0.1), "recurrent_dropout",
     "recurrent_dropout=-0.1"),
    (lambda: layers.Bidirectional(layers.LSTM(2), merge_mode="max"), "merge_mode",
     "merge_mode='max'"),
    (lambda: layers.Bidirectional(layers.Dense(2)), "layer", "layer=<Dense"),
    (lambda: layers.LSTM(3, activation="softmax"), "activation", "activation='softmax'"),
    (lambda: layers.LSTM(3, stateful=True), "stateful", "stateful=True"),
    (lambda: layers.GRU(3, reset_after=False), "reset_after", "reset_after=False"),
])
def test_bad_arguments(make, arg, value):
    with pytest.raises((ValueError, TypeError)) as info:
        make()
    assert arg in str(info.value) and value in str(info.value)


def test_bad_input_leaves_the_model_unchanged():
    model = pynn.Sequential([pynn.Input((T, F)), layers.LSTM(3)])
    weights = model.get_weights()
    with pytest.raises(ValueError, match="ndim=3"):
        layers.LSTM(3)(pynn.Input((F,)))
    with pytest.raises(ValueError):
        model.layers[0](pynn.Input((T, F + 1)))
    for a, b in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(a, b)


# ---- Keras 3's own files, both ways (a Keras subprocess; tests/test_keras_files.py) -----------

def _keras_rnn_code(path_in, path_out):
    return f"""
inp = keras.Input((4, 3))
a = keras.layers.LSTM(5, return_sequences=True, go_backwards=True)(inp)
a = keras.layers.Bidirectional(keras.layers.GRU(3, return_sequences=True), merge_mode="ave")(a)
a = keras.layers.SimpleRNN(4, activation="relu")(a)
b = keras.layers.Bidirectional(keras.layers.LSTM(2))(inp)
out = keras.layers.Dense(2)(keras.layers.Concatenate()([a, b]))
model = keras.Model(inp, out)
rng = np.random.default_rng(0)
model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in model.get_weights()])
x = rng.normal(size=(6, 4, 3)).astype("float32")
np.save("x.npy", x)
np.save("keras_pred.npy", np.asarray(model.predict(x, verbose=0)))
model.save("{path_out}")
if "{path_in}":
    other = keras.saving.load_model("{path_in}")
    np.save("keras_of_pynn.npy", np.asarray(other.predict(x, verbose=0)))
"""


def test_keras_files_both_ways(tmp_path):
    from test_keras_files import _keras_python, run_keras
    python = _keras_python()
    if python is None:
        pytest.skip("Keras 3 is not installed: set PYNN_KERAS_PYTHON to the python of a venv "
                    "with `pip install keras jax[cpu] h5py` to run the Keras cross-checks")
    run_keras(python, tmp_path, _keras_rnn_code("", "k.keras"))
    x = np.load(tmp_path / "x.npy")
    model = pynn.models.load_model(str(tmp_path / "k.keras"))
    assert_close(model.predict(x, verbose=0), np.load(tmp_path / "keras_pred.npy"), rtol=1e-4)
    model.save(str(tmp_path / "p.keras"))
    run_keras(python, tmp_path, _keras_rnn_code("p.keras", "k2.keras"))
    assert_close(np.load(tmp_path / "keras_of_pynn.npy"), model.predict(x, verbose=0),
                 rtol=1e-4)


# ---- ONNX export (onnxruntime) ------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda: [layers.LSTM(4, return_sequences=True, go_backwards=True), layers.GRU(3)],
    lambda: [layers.GRU(3, return_sequences=True, use_bias=False),
             layers.SimpleRNN(2, activation="relu", go_backwards=True)],
    lambda: [layers.Bidirectional(layers.LSTM(3, return_sequences=True), merge_mode="ave"),
             layers.Bidirectional(layers.SimpleRNN(2, go_backwards=True), merge_mode="concat")],
    lambda: [layers.Bidirectional(layers.GRU(2, return_sequences=True), merge_mode="mul"),
             layers.Bidirectional(layers.GRU(2), merge_mode="sum")],
])
def test_onnx_export_matches_predict(make, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    pynn.utils.set_random_seed(9)
    model = pynn.Sequential([pynn.Input((T, F))] + make() + [layers.Dense(2)])
    model.set_weights([w + np.float32(0.1) for w in model.get_weights()])
    x, _ = _data(9)
    path = str(tmp_path / "m.onnx")
    model.export(path, format="onnx")
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert_close(got, model.predict(x, verbose=0), rtol=1e-4)


def test_onnx_export_return_state(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pynn.utils.set_random_seed(10)
    inp = pynn.Input((T, F))
    out, h, c = layers.LSTM(3, return_state=True, return_sequences=True)(inp)
    model = pynn.Model(inp, [layers.Flatten()(out), h, c])
    x, _ = _data(10)
    path = str(tmp_path / "s.onnx")
    model.export(path, format="onnx")
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})
    for a, b in zip(got, model.predict(x, verbose=0)):
        assert_close(a, b, rtol=1e-4)


def test_eager_call_with_states():
    pynn.utils.set_random_seed(11)
    x, _ = _data(11)
    layer = layers.LSTM(3, return_state=True)
    out, h, c = layer(x)
    k, rk, b = layer.get_weights()
    r = ref.rnn_forward(x, k, rk, b, None, None, 1, "tanh", "sigmoid")
    assert_close(out, r["h_last"])
    assert_close(h, r["h_last"])
    assert_close(c, r["c_last"])


@pytest.mark.parametrize("kind,backend", [("LSTM", "cpu"), ("GRU", "numpy"), ("SimpleRNN", "cuda")])
def test_masked_bidirectional_sequences_output_zeros(kind, backend):
    """Keras's Bidirectional sets zero_output_for_mask on sublayers that return sequences:
    their masked steps output 0 (the state still carries over)."""
    usable_backend(backend)
    pynn.utils.set_random_seed(12)
    x, y = _data(12)
    mask = np.ones((N, T), np.float32)
    mask[0, :2] = 0
    mask[1, 3:] = 0
    mask[2, 1] = 0
    xin, min_ = pynn.Input((T, F)), pynn.Input((T,))
    bi = layers.Bidirectional(getattr(layers, kind)(3, return_sequences=True))
    h = layers.Flatten()(bi(_AttachMask()([xin, min_])))
    model = pynn.Model([xin, min_], layers.Dense(2)(h))
    assert bi.forward_layer.zero_output_for_mask and bi.backward_layer.zero_output_for_mask
    cfg = _cfg(bi.forward_layer)
    bcfg = {**cfg, "go_backwards": True}
    n = len(bi.forward_layer.weights)

    def body(ws, xt):
        f, _, _ = _loop(kind, cfg, ws[:n], xt, mask, zero_output=True)
        b, _, _ = _loop(kind, bcfg, ws[n:2 * n], xt, mask, zero_output=True)
        return _dense_head(torch.cat([f, torch.flip(b, [1])], -1), ws[2 * n:])

    expected = expected_step(model, x, y, 0.5, body)
    model.compile(optimizer=pynn.optimizers.SGD(learning_rate=0.5), loss="mse", backend=backend)
    before = model.get_weights()
    model.train_on_batch([x, mask], y)
    assert_step_close(before, model.get_weights(), expected, err_msg=f"{kind} zero output")


def test_units_beyond_one_packed_block():
    """4 u = 4120 gate columns span two of the AVX-512 GEMM's 4096-column blocks: the
    recurrent kernel packed once (forward and transposed) and the gate gradients packed
    for the weight gradients both cross a block edge; 18 rows take the threads' row split."""
    be = pynn.backend.get("cpu")
    rng = np.random.default_rng(5)
    n, steps, f, u, cell = 18, 2, 5, 1030, 1
    G = ref.RNN_GATES[cell]
    x = rng.standard_normal((n, steps, f)).astype(np.float32)
    k = (rng.standard_normal((f, G * u)) * .1).astype(np.float32)
    rk = (rng.standard_normal((u, G * u)) * .03).astype(np.float32)
    b = (rng.standard_normal(G * u) * .1).astype(np.float32)
    opts = dict(cell=cell, act="tanh", rec_act="sigmoid")
    R = ref.rnn_forward(x, k, rk, b, None, None, **opts)
    bufs = {name: np.zeros(shape, np.float32) for name, shape in (
        ("seq", (n, steps, u)), ("cs", (n, steps, u)), ("gates", (n, steps, G * u)),
        ("hprev", (n, steps, u)), ("aux", (n, steps, u)), ("work", (n, G * u)),
        ("h_last", (n, u)), ("c_last", (n, u)))}
    sizes = dict(T=steps, f=f, u=u, cell=cell, act="tanh", rec_act="sigmoid",
                 go_backwards=False, time_order=False)
    be.rnn_forward(x, k, rk, b, None, None, bufs["seq"], bufs["cs"], bufs["gates"],
                   bufs["hprev"], bufs["aux"], bufs["work"], bufs["h_last"], bufs["c_last"],
                   **sizes)
    assert_close(bufs["seq"], R["seq"], err_msg="seq")
    dseq = rng.standard_normal((n, steps, u)).astype(np.float32)
    D = ref.rnn_backward(dseq, None, None, x, k, rk, R, None, None, **opts)
    outs = {"dkernel": np.zeros_like(k), "drkernel": np.zeros_like(rk),
            "dbias": np.zeros_like(b), "dx": np.zeros_like(x)}
    be.rnn_backward(x, k, rk, bufs["seq"], bufs["cs"], bufs["gates"], bufs["hprev"],
                    bufs["aux"], None, None, dseq, None, None,
                    np.zeros((n, steps, G * u), np.float32), np.zeros((n, steps, G * u), np.float32),
                    np.zeros((n, 4 * u + G * u), np.float32), outs["dkernel"], outs["drkernel"],
                    outs["dbias"], outs["dx"], **sizes)
    for name, out in outs.items():
        assert_close(out, D[name], rtol=1e-4, err_msg=name)

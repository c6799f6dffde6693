"""What is specific to pynn._core.PlanRunner (csrc/plan.c): the C executor of a compiled plan.

* Hand-built plans -- a 2-layer MLP (Dense relu, Dense logits, sparse CCE, accuracy on the
  softmax, Adam) and a small CNN (the direct convolution, dropout, Dense, sparse CCE, SGD
  with Nesterov momentum) -- trained for two epochs in one C call each, in one C call per
  step, and op by op from Python through the cpu backend's methods (the walk the numpy and
  cuda executors make) give bitwise the same weights, losses, metrics and row counts; and
  bitwise the same on 1 and 2 threads.
* A forward-only plan writes each step's outputs at the order's positions; set_reals
  changes an op's settings (an optimizer's learning rate) between runs.
* Refusals -- a label out of range, a NaN with check_inputs, a malformed plan, a bad run --
  come before anything changes: the parameters stay bitwise as they were.

The kernels each op calls are tests/test_kernels.py's; here only the runner.  Plans are
built by hand, as pynn/models/plan.py compiles them: buffers (batched ones hold `capacity`
rows) and ops naming them by index.  To add a case, build a plan with Plan / Params (see
mlp_plan), teach python_step its op if it is new, and compare the three executions as
test_one_call_per_epoch_per_step_and_op_by_op_agree_bitwise does.
"""
import functools

import numpy as np
import pytest

from pynn import _core, ids
from pynn import backend as backends
from pynn.backend import reference as ref

from conftest import assert_bitwise, assert_close

CPU = backends.get("cpu")
ACT_NAMES = {v: k for k, v in ids.ACTIVATIONS.items()}
LOSS_NAMES = {v: k for k, v in ids.LOSSES.items()}
METRIC_NAMES = {v: k for k, v in ids.METRICS.items()}
OPT_NAMES = {v: k for k, v in ids.OPTIMIZERS.items()}
OP_NAMES = {v: k for k, v in ids.OPS.items()}


class Plan:
    """A plan under construction: buffers (array, row_size) and ops (kind, bufs, ints, reals)."""

    def __init__(self, capacity):
        self.capacity, self.buffers, self.ops = capacity, [], []
        self.inputs, self.targets, self.classes, self.outputs = [], [], [], []
        self.n_losses = self.n_metrics = 0

    def batched(self, row_size, dtype=np.float32):
        self.buffers.append((np.zeros(self.capacity * row_size, dtype), row_size))
        return len(self.buffers) - 1

    def fixed(self, array):
        self.buffers.append((array, 0))
        return len(self.buffers) - 1

    def op(self, name, bufs, ints=(), reals=()):
        self.ops.append((ids.OPS[name], list(bufs), [int(i) for i in ints], [float(r) for r in reals]))

    def runner(self, max_steps=64):
        return _core.PlanRunner(self.ops, self.buffers, self.capacity, self.inputs, self.targets,
                                self.classes, self.outputs, self.n_losses, self.n_metrics,
                                max_steps)


class Params:
    """One flat float32 array with views (a model's parameter store), and a buffer per view."""

    def __init__(self, plan, shapes, init):
        self.flat = init(sum(int(np.prod(s)) for s in shapes)).astype(np.float32)
        self.index = plan.fixed(self.flat)
        self.views, at = [], 0
        for shape in shapes:
            size = int(np.prod(shape))
            self.views.append(plan.fixed(self.flat[at:at + size]))
            at += size


HYPER_ADAM = [0.01, 0.0, 0.0, 0.9, 0.999, 0.9, 1e-7, 0.0, 0.0]         # pynn.ids.HYPER order
HYPER_SGD_MOMENTUM = [0.05, 0.9, 1.0, 0.9, 0.999, 0.9, 1e-7, 0.0, 0.0]   # nesterov


def mlp_plan(capacity, n_in=64, hidden=32, classes=10, seed=0, outputs=False, reduce_sum=0):
    """Dense(hidden, relu), Dense(classes) on logits, sparse CCE, accuracy on the softmax,
    Adam: a model's compiled training step (outputs: the softmax is copied out; reduce_sum:
    the loss's reduction "sum")."""
    p = Plan(capacity)
    rng = np.random.default_rng(seed)
    shapes = [(n_in, hidden), (hidden,), (hidden, classes), (classes,)]
    params = Params(p, shapes, lambda n: rng.standard_normal(n) * 0.3)
    grads = Params(p, shapes, np.zeros)
    m, v = p.fixed(np.zeros(params.flat.size, np.float32)), p.fixed(np.zeros(params.flat.size, np.float32))
    w1, b1, w2, b2 = params.views
    dw1, db1, dw2, db2 = grads.views
    x, labels = p.batched(n_in), p.batched(1, np.int64)
    z1, y1, z2, grad, dx1, probs = (p.batched(n) for n in (hidden, hidden, classes, classes,
                                                            hidden, classes))
    relu, linear, softmax = (ids.ACTIVATIONS[a] for a in ("relu", "linear", "softmax"))
    p.op("dense", [x, w1, b1, z1, y1], [n_in, hidden, relu], [0.0])
    p.op("dense", [y1, w2, b2, z2, z2], [hidden, classes, linear], [0.0])
    p.op("loss", [z2, labels, grad, -1], [ids.LOSSES["scce"], 1, classes, 0, 0, 0, reduce_sum],
         [1.0, 0.0, 0.0])
    p.op("activation", [z2, probs], [classes, softmax], [0.0])
    p.op("metric", [probs, labels, -1],
         [ids.METRICS["sparse_categorical_accuracy"], classes, 0, 1, 1, 1], [0.5])
    p.op("dense_backward", [y1, w2, z2, z2, grad, dw2, db2, dx1], [hidden, classes, linear], [0.0])
    p.op("dense_backward", [x, w1, z1, y1, dx1, dw1, db1, -1], [n_in, hidden, relu], [0.0])
    p.op("optimizer", [params.index, grads.index, m, v, -1], [ids.OPTIMIZERS["adam"]], HYPER_ADAM)
    p.inputs, p.targets, p.classes = [x], [labels], [classes]
    p.outputs = [probs] if outputs else []
    p.n_losses, p.n_metrics = 1, 1
    return p, params


def cnn_plan(capacity, seed=0):
    """Conv2D(8, 3) relu on 8x8x1 images (the direct kernel), SpatialDropout-like dropout,
    Flatten (the dense op reads the dropout's buffer), Dense(10) logits, sparse CCE, SGD with
    Nesterov momentum."""
    p = Plan(capacity)
    rng = np.random.default_rng(seed)
    shapes = [(3, 3, 1, 8), (8,), (288, 10), (10,)]
    params = Params(p, shapes, lambda n: rng.standard_normal(n) * 0.2)
    grads = Params(p, shapes, np.zeros)
    mom = p.fixed(np.zeros(params.flat.size, np.float32))
    k, b, w2, b2 = params.views
    dk, db, dw2, db2 = grads.views
    x, labels = p.batched(64), p.batched(1, np.int64)
    cols, z1, y1, mask, d, z2, grad, dd, dy1 = (p.batched(n) for n in (36 * 9, 288, 288, 288, 288,
                                                                        10, 10, 288, 288))
    work = p.fixed(np.zeros(CPU.conv2d_backward_work_size((capacity, 8, 8, 1), (3, 3, 1, 8),
                                                          (1, 1), (6, 6)), np.float32))
    relu, linear = ids.ACTIVATIONS["relu"], ids.ACTIVATIONS["linear"]
    geometry = [8, 8, 1, 3, 3, 1, 1, 0, 0, 6, 6, 8, relu]
    dropout_ints = [1234, 3, 6, 6, 8, 0, 1, 1, 0]               # seed, ndim, dims, broadcast
    p.op("conv2d", [x, k, b, cols, z1, y1], geometry, [0.0])
    p.op("dropout", [y1, mask, d], dropout_ints, [0.25])
    p.op("dense", [d, w2, b2, z2, z2], [288, 10, linear], [0.0])
    p.op("loss", [z2, labels, grad, -1], [ids.LOSSES["scce"], 1, 10, 0, 0, 0, 0], [1.0, 0.0, 0.0])
    p.op("metric", [z2, labels, -1], [ids.METRICS["sparse_categorical_accuracy"], 10, 0, 1, 1, 1],
         [0.5])
    p.op("dense_backward", [d, w2, z2, z2, grad, dw2, db2, dd], [288, 10, linear], [0.0])
    p.op("dropout_backward", [dd, mask, dy1])
    p.op("conv2d_backward", [x, k, z1, y1, dy1, cols, work, dk, db, -1], geometry, [0.0])
    p.op("optimizer", [params.index, grads.index, mom, -1, -1], [ids.OPTIMIZERS["sgd"]],
         HYPER_SGD_MOMENTUM)
    p.inputs, p.targets, p.classes = [x], [labels], [10]
    p.n_losses, p.n_metrics = 1, 1
    return p, params


def python_step(p, rows, step, losses, metrics):
    """One step of plan p (its inputs already gathered) through the cpu backend's methods."""
    def view(b, *shape):
        array, row_size = p.buffers[b]
        if b == -1:
            return None
        if row_size:
            return array[:rows * row_size].reshape((rows,) + shape)
        return array.reshape(shape) if shape else array

    for kind, bufs, ints, reals in p.ops:
        name = OP_NAMES[kind]
        if name == "dense":
            n_in, n_out, act = ints
            x, w, b, z, y = bufs
            CPU.dense_forward(view(x, n_in), view(w, n_in, n_out), view(b, n_out), ACT_NAMES[act],
                              reals[0], view(z, n_out), view(y, n_out))
        elif name == "dense_backward":
            n_in, n_out, act = ints
            x, w, z, y, dy, dw, db, dx = bufs
            CPU.dense_backward(view(x, n_in), view(w, n_in, n_out), view(z, n_out), view(y, n_out),
                               view(dy, n_out), ACT_NAMES[act], reals[0],
                               None if dw == -1 else view(dw, n_in, n_out),
                               None if db == -1 else view(db, n_out),
                               None if dx == -1 else view(dx, n_in))
        elif name in ("conv2d", "conv2d_backward"):
            h, w, c, kh, kw, sh, sw, pt, pl, oh, ow, f, act = ints
            args = dict(strides=(sh, sw), padding=(pt, pl), activation=ACT_NAMES[act], alpha=reals[0])
            if name == "conv2d":
                x, k, b, cols, z, y = bufs
                CPU.conv2d_forward(view(x, h, w, c), view(k, kh, kw, c, f), view(b, f),
                                   cols=view(cols, oh * ow * kh * kw * c).reshape(-1, kh * kw * c),
                                   z=view(z, oh, ow, f), y=view(y, oh, ow, f), **args)
            else:
                x, k, z, y, dy, cols, work, dw, db, dx = bufs
                CPU.conv2d_backward(view(x, h, w, c), view(k, kh, kw, c, f), view(z, oh, ow, f),
                                    view(y, oh, ow, f), view(dy, oh, ow, f),
                                    cols=view(cols, oh * ow * kh * kw * c).reshape(-1, kh * kw * c),
                                    work=view(work), dw=None if dw == -1 else view(dw, kh, kw, c, f),
                                    db=None if db == -1 else view(db, f),
                                    dx=None if dx == -1 else view(dx, h, w, c), **args)
        elif name == "dropout":
            seed, ndim = ints[:2]
            dims, broadcast = ints[2:2 + ndim], [bool(f) for f in ints[2 + ndim:]]
            x, mask, y = bufs
            CPU.dropout_forward(view(x, *dims), seed, step, reals[0], broadcast, view(mask, *dims),
                                view(y, *dims))
        elif name == "dropout_backward":
            dy, mask, dx = bufs
            CPU.dropout_backward(view(dy, p.buffers[dy][1]), view(mask, p.buffers[dy][1]),
                                 view(dx, p.buffers[dy][1]))
        elif name == "activation":
            cols, act = ints
            CPU.activation_forward(view(bufs[0], cols), ACT_NAMES[act], reals[0], view(bufs[1], cols))
        elif name == "loss":
            kind_id, from_logits, cols, index, has_ignore, ignore, reduce_sum = ints
            pred, target, grad, weights = bufs
            labels = p.buffers[target][0].dtype == np.int64
            losses[index] = CPU.loss(LOSS_NAMES[kind_id], view(pred, cols),
                                     view(target) if labels else view(target, cols),
                                     bool(from_logits), view(grad, cols), reals[1],
                                     None if weights < 0 else view(weights), reals[2],
                                     ignore if has_ignore else None, bool(reduce_sum))
        elif name == "metric":
            kind_id, cols, index, k, width, per_weight = ints
            pred, target, weights = bufs
            labels = p.buffers[target][0].dtype == np.int64
            metrics[index] = CPU.metric_sum(METRIC_NAMES[kind_id], view(pred, cols),
                                            view(target) if labels else view(target, cols), k,
                                            reals[0], None if weights < 0 else view(weights),
                                            per_weight)
        elif name == "optimizer":
            w, g, *slots = bufs
            CPU.optimizer_step(OPT_NAMES[ints[0]], view(w),
                               [view(s) if s != -1 else None for s in slots], view(g), step,
                               dict(zip(ids.HYPER, reals)))
        else:
            raise AssertionError(f"no Python executor for op {name}")


def python_run(p, x, labels, order, first_row, batch, n_steps, iterations):
    """pynn_plan_run's loop in Python: gather each step's rows, then python_step."""
    n_order = len(order)
    losses, metrics, rows_seen = [], [], []
    for s in range(n_steps):
        r0 = first_row + s * batch
        idx = order[r0:min(r0 + batch, n_order)]
        rows = len(idx)
        for b, data in zip(p.inputs + p.targets, (x, labels)):
            array, row_size = p.buffers[b]
            array[:rows * row_size].reshape((rows, row_size))[...] = data.reshape(len(data), -1)[idx]
        step_losses, step_metrics = [0.0] * p.n_losses, [0.0] * p.n_metrics
        python_step(p, rows, iterations + s + 1, step_losses, step_metrics)
        losses.append(step_losses)
        metrics.append(step_metrics)
        rows_seen.append(rows)
    return np.array(losses), np.array(metrics), np.array(rows_seen)


def learnable_data(n, n_in, classes, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, n_in)).astype(np.float32)
    labels = np.argmax(x[:, :classes], axis=1).astype(np.int64)
    return x, labels


def run_three_ways(build, x, labels, order, batch, epochs=2):
    """The same training (epochs of `batch` rows over `order`) by one C call per epoch, one
    C call per step and op by op from Python: [(params, [per-epoch (losses, metrics,
    rows)])] for each."""
    n, steps = len(order), -(-len(order) // batch)
    runs = []
    p, params = build(batch)                  # one C call an epoch; iterations carries
    runner = p.runner()                       # Adam's step and dropout's counter on
    runs.append((params, [tuple(a.copy() for a in runner.run([x], [labels], None, order, n, 0,
                                                             batch, steps, e * steps))
                          for e in range(epochs)]))
    p, params = build(batch)                  # one C call a step
    runner = p.runner()
    per_epoch = []
    for e in range(epochs):
        parts = [tuple(a.copy() for a in runner.run([x], [labels], None, order, n, s * batch,
                                                    batch, 1, e * steps + s))
                 for s in range(steps)]
        per_epoch.append(tuple(np.concatenate(k) for k in zip(*parts)))
    runs.append((params, per_epoch))
    p, params = build(batch)                  # op by op through the cpu backend
    runs.append((params, [python_run(p, x, labels, order, 0, batch, steps, e * steps)
                          for e in range(epochs)]))
    return runs


@pytest.mark.parametrize("build", [mlp_plan, functools.partial(mlp_plan, reduce_sum=1), cnn_plan],
                         ids=["mlp", "mlp-sum", "cnn"])
def test_one_call_per_epoch_per_step_and_op_by_op_agree_bitwise(build):
    n, batch = 200, 32                              # 6 full steps and one of 8 rows
    x, labels = learnable_data(n, 64, 10, 1)
    order = np.random.default_rng(2).permutation(n).astype(np.int64)
    (params, epochs), *others = run_three_ways(build, x, labels, order, batch)
    for other_params, other_epochs in others:
        assert_bitwise(other_params.flat, params.flat)
        for got, want in zip(other_epochs, epochs):
            for a, b in zip(got, want):          # losses, metrics, rows of each step
                assert_bitwise(np.asarray(a, b.dtype).reshape(b.shape), b)
    assert list(epochs[0][2]) == [32] * 6 + [8]
    assert epochs[1][0][:, 0].mean() < epochs[0][0][:, 0].mean()       # it learns


def test_the_runner_is_bitwise_the_same_on_1_and_2_threads(threads):
    x, labels = learnable_data(300, 64, 10, 3)
    trained = []
    for count in (1, 2):
        threads(count)
        p, params = cnn_plan(64)
        p.runner().run([x], [labels], None, None, 300, 0, 64, 5, 0)
        trained.append(params.flat)
    assert_bitwise(trained[1], trained[0])


def test_outputs_land_at_the_orders_positions():
    """A plan with an output copies each step's predictions (made with the parameters
    before that step's update) to the rows of the order's positions."""
    x, labels = learnable_data(50, 64, 10, 4)
    p, params = mlp_plan(16, outputs=True)
    order = np.random.default_rng(5).permutation(50).astype(np.int64)
    probs = np.full((50, 10), np.nan, np.float32)
    p.runner().run([x], [labels], [probs], order, 50, 0, 16, 4, 0)
    # the same plan with a learning rate of 0 moves nothing: its predictions are all of the
    # initial parameters, and step 1's are the trained plan's
    q, q_params = mlp_plan(16, outputs=True)
    q_runner = q.runner()
    q_runner.set_reals(len(q.ops) - 1, [0.0] + HYPER_ADAM[1:])
    before = q_params.flat.copy()
    expect = np.full((50, 10), np.nan, np.float32)
    q_runner.run([x], [labels], [expect], order, 50, 0, 16, 4, 0)
    assert_bitwise(q_params.flat, before)
    w1, b1, w2, b2 = (q.buffers[i][0] for i in q_params.views)
    h = np.maximum(x[order] @ w1.reshape(64, 32) + b1, 0)
    assert_close(expect, ref.activation_forward(h @ w2.reshape(32, 10) + b2, "softmax"))
    assert np.isfinite(probs).all()
    assert_bitwise(probs[:16], expect[:16])


def test_set_reals_changes_an_ops_settings_between_runs():
    """Lowering Adam's learning rate with set_reals trains exactly as a plan built with the
    lower rate; set_reals refuses another op count or length and changes nothing then."""
    x, labels = learnable_data(96, 64, 10, 10)
    p, params = mlp_plan(32)
    runner = p.runner()
    optimizer = len(p.ops) - 1
    assert runner.reals(optimizer) == pytest.approx(HYPER_ADAM)
    runner.set_reals(optimizer, [0.003] + HYPER_ADAM[1:])
    assert runner.reals(optimizer)[0] == pytest.approx(0.003)
    for bad_index, values in ((len(p.ops), HYPER_ADAM), (-1, HYPER_ADAM), (optimizer, HYPER_ADAM[:-1])):
        with pytest.raises(ValueError, match="set_reals"):
            runner.set_reals(bad_index, values)
    assert runner.reals(optimizer)[0] == pytest.approx(0.003)
    runner.run([x], [labels], None, None, 96, 0, 32, 3, 0)
    q, q_params = mlp_plan(32)
    q.ops[-1] = q.ops[-1][:3] + ([0.003] + HYPER_ADAM[1:],)
    q.runner().run([x], [labels], None, None, 96, 0, 32, 3, 0)
    assert_bitwise(params.flat, q_params.flat)


def test_a_bad_label_is_refused_before_its_step_changes_anything():
    x, labels = learnable_data(96, 64, 10, 6)
    bad = labels.copy()
    bad[70] = 10                                   # in the third step of 32 rows
    p, params = mlp_plan(32)
    runner = p.runner()
    with pytest.raises(_core.KernelInputError):
        runner.run([x], [bad], None, None, 96, 0, 32, 3, 0)
    q, q_params = mlp_plan(32)
    q.runner().run([x], [labels], None, None, 96, 0, 32, 2, 0)
    assert_bitwise(params.flat, q_params.flat)     # two steps applied, not three
    before = params.flat.copy()
    bad[5] = -1
    with pytest.raises(_core.KernelInputError):
        runner.run([x], [bad], None, None, 96, 0, 32, 1, 2)
    assert_bitwise(params.flat, before)


def test_non_finite_inputs_are_refused_when_asked():
    x, labels = learnable_data(64, 64, 10, 7)
    x[40, 3] = np.nan
    p, params = mlp_plan(32)
    runner = p.runner()
    before = params.flat.copy()
    with pytest.raises(_core.KernelInputError):
        runner.run([x], [labels], None, None, 64, 32, 32, 1, 0, True)
    assert_bitwise(params.flat, before)
    runner.run([x], [labels], None, None, 64, 0, 32, 1, 0, True)      # the clean first half
    assert not np.array_equal(params.flat, before)


# (what is broken, how) -- the MLP plan's ops: 0 dense, 1 dense, 2 loss, 3 activation,
# 4 metric, 5 and 6 dense_backward, 7 optimizer.  pynn_plan_run finds all but
# FOUND_IN_PYTHON's, which PlanRunner's constructor refuses (with these messages) before C
# sees them.
MALFORMED = {
    "dense without its activation": lambda p: p.ops.__setitem__(0, (p.ops[0][0], p.ops[0][1],
                                                                     p.ops[0][2][:2], p.ops[0][3])),
    "unknown activation": lambda p: p.ops[0][2].__setitem__(2, 99),
    "a kernel too small for in x out": lambda p: p.ops[0][2].__setitem__(1, 40),
    "an output buffer too small": lambda p: p.ops[0][1].__setitem__(3, p.ops[1][1][3]),
    "a buffer index out of range": lambda p: p.ops[6][1].__setitem__(7, -2),
    "labels given to a float loss": lambda p: p.ops[2][2].__setitem__(0, ids.LOSSES["cce"]),
    "labels of more classes than columns": lambda p: p.classes.__setitem__(0, 11),
    "labels that are no plan target": lambda p: (p.targets.clear(), p.classes.clear()),
    "a loss slot out of range": lambda p: p.ops[2][2].__setitem__(3, 1),
    "a loss reduce_sum other than 0 or 1": lambda p: p.ops[2][2].__setitem__(6, 2),
    "a loss without its reduce_sum": lambda p: p.ops[2][2].pop(),
    "a metric id out of range": lambda p: p.ops[4][2].__setitem__(0, 99),
    "a metric of width 2": lambda p: p.ops[4][2].__setitem__(4, 2),
    "a metric without its threshold": lambda p: p.ops[4][3].pop(),
    "confusion counts of 1 threshold in 1 slot":
        lambda p: p.ops[4][2].__setitem__(0, ids.METRICS["confusion"]),
    "int64 labels as sample weights": lambda p: p.ops[4][1].__setitem__(2, p.targets[0]),
    "Adam without its second moment": lambda p: p.ops[-1][1].__setitem__(3, -1),
    "hyper-parameters missing": lambda p: p.ops[-1][3].pop(),
    "an int64 buffer as a kernel": lambda p: p.ops[0][1].__setitem__(1, p.targets[0]),
    "a merge of nothing": lambda p: p.ops.append((ids.OPS["merge"], [p.inputs[0]],
                                                  [ids.MERGES["add"]], [])),
    "a target that is a fixed buffer": lambda p: p.targets.__setitem__(0, 2),
}
FOUND_IN_PYTHON = {"a buffer index out of range": "names buffer",
                   "a target that is a fixed buffer": "batched buffer"}


@pytest.mark.parametrize("what", sorted(MALFORMED))
def test_a_malformed_plan_is_refused_before_anything_changes(what):
    x, labels = learnable_data(64, 64, 10, 8)
    p, params = mlp_plan(32)
    MALFORMED[what](p)
    before = params.flat.copy()
    with pytest.raises(ValueError, match=FOUND_IN_PYTHON.get(what, "refused the plan")):
        p.runner().run([x], [labels] if p.targets else None, None, None, 64, 0, 32, 2, 0)
    assert_bitwise(params.flat, before)


def test_bad_runs_are_refused_before_anything_changes():
    x, labels = learnable_data(64, 64, 10, 9)
    p, params = mlp_plan(32)
    runner = p.runner(max_steps=4)
    before = params.flat.copy()
    cases = [
        lambda: runner.run([x], [labels], None, None, 64, 0, 33, 1, 0),        # batch > capacity
        lambda: runner.run([x], [labels], None, None, 64, 0, 32, 3, 0),        # a step of no rows
        lambda: runner.run([x], [labels], None, None, 65, 0, 32, 1, 0),        # n_order > rows
        lambda: runner.run([x], [labels], None, None, 64, 0, 32, 5, 0),        # > max_steps
        lambda: runner.run([x], [labels[:10]], None, None, 10, 0, 32, 1, 0),   # rows differ
        lambda: runner.run([x.astype(np.float64)], [labels], None, None, 64, 0, 32, 1, 0),
        lambda: runner.run([x[:, :10]], [labels], None, None, 64, 0, 32, 1, 0),
        lambda: runner.run([x], [labels], None, np.array([0, 64], np.int64), 2, 0, 32, 1, 0),
        lambda: runner.run([x], [labels], [np.empty((10, 10), np.float32)], None, 64, 0, 32, 1, 0),
    ]
    for case in cases:
        with pytest.raises(ValueError):
            case()
    assert_bitwise(params.flat, before)
    with pytest.raises(ValueError, match="buffer"):
        _core.PlanRunner([(ids.OPS["scale"], [0, 5], [], [1.0])], [(np.zeros(4, np.float32), 0)],
                         1, [], [], [], [], 0, 0)

"""Regularization penalties and weight constraints in the plan (engineer F), as Keras 3
trains them (keras/src/trainers/trainer.py compute_loss, keras/src/layers/layer.py):

  * the reported loss is the compiled loss plus the sum of `model.losses`: the trainable
    weights' penalties and the activity penalties of the layer outputs;
  * a weight's penalty gradient is added to its gradient: one OP_PENALTY per regularized
    trainable weight after the backward, before OP_OPTIMIZER (test plans: the value only);
  * an activity penalty is computed on the layer's output, divided by the batch size: an
    OP_PENALTY in the forward (the value), and one in the backward adding its gradient to
    the output's gradient;
  * a trainable weight's constraint is applied after each optimizer update: an
    OP_CONSTRAINT after OP_OPTIMIZER.

The values go to extra loss slots, after the outputs' losses, each weighted 1 in the
reported loss: one slot "regularization" for the weights' penalties, added in a fixed
order (the layers' order in the plan, each layer's weights in creation order), and one
slot per activity penalty (so layer.losses can show each after a step).  Their names never
reach the logs (Keras logs only the total).
"""
from .. import constraints, ids, regularizers
from .plan import Tensor

WEIGHTS_SLOT = "regularization"


def _pending(plan):
    if not hasattr(plan, "_penalty_ops"):
        plan._penalty_ops = []          # (op index, slot name, layer or None)
    return plan._penalty_ops


def activity(b, layer, t):
    """The plan tensor that carries `layer`'s output `t` with its activity penalty."""
    where = f"{type(layer).__name__} '{layer.name}': activity_regularizer"
    l1, l2 = regularizers.penalty_factors(layer.activity_regularizer, where)
    index = b.op("penalty", [t.buf, -1], [-1, 0, 1], [l1, l2],
                 label=f"{layer.name} activity penalty")
    _pending(b.plan).append((index, f"{layer.name}/activity_regularization", layer))
    out = Tensor(b._alias_buffer(t.buf, t.shape[1:]), t.shape)

    def backward(b, dys, need):
        b.op("penalty", [t.buf, dys[0]], [-1, 1, 1], [l1, l2],
             label=f"{layer.name} activity penalty")
        return [dys[0]]

    b.differentiate([t], [out], backward, inplace=True)
    return out


def _distinct_layers(plan):
    seen, out = set(), []
    for layer, _ in plan.layers:
        if id(layer) not in seen:
            seen.add(id(layer))
            out.append(layer)
    return out


def emit_weight_penalties(b, plan):
    """One OP_PENALTY per trainable weight with a regularizer (train plans: before
    OP_OPTIMIZER, adding the gradient; test plans: the value only)."""
    train = plan.kind == "train"
    for layer in _distinct_layers(plan):
        for v in layer.trainable_weights:
            if v.regularizer is None:
                continue
            where = f"{type(layer).__name__} '{layer.name}': the regularizer of {v.path}"
            l1, l2 = regularizers.penalty_factors(v.regularizer, where)
            grad, accumulate = -1, 0
            if train and b.is_trainable(v):
                accumulate = int(id(v) in b._grad_views)
                grad = b._grad_views[id(v)] if accumulate else b.grad(v)
            index = b.op("penalty", [b.param(v), grad], [-1, accumulate, 0], [l1, l2],
                         label=f"{v.path} penalty")
            _pending(plan).append((index, WEIGHTS_SLOT, None))


def emit_constraints(b, plan):
    """One OP_CONSTRAINT per trainable weight with a constraint, after OP_OPTIMIZER."""
    for layer in _distinct_layers(plan):
        for v in layer.trainable_weights:
            if v.constraint is None or not b.is_trainable(v):
                continue
            where = f"{type(layer).__name__} '{layer.name}': the constraint of {v.path}"
            kind, outer, red, inner, a, c, rate = constraints.plan_spec(v.constraint, v.shape,
                                                                       where)
            b.op("constraint", [b.param(v)], [_KINDS[kind], outer, red, inner], [a, c, rate],
                 label=f"{v.path} constraint")


def assign_slots(plan):
    """Give the penalty ops their loss slots (after the outputs' losses, weight 1)."""
    slots = {}
    plan.activity_slots = []
    for index, name, layer in _pending(plan):
        if name not in slots:
            slots[name] = len(plan.loss_names)
            plan.loss_names.append(name)
            plan.loss_weights.append(1.0)
            if layer is not None:
                plan.activity_slots.append((layer, slots[name]))
        op = plan.ops[index]
        op.ints = (slots[name],) + op.ints[1:]
    del plan._penalty_ops


def _constraint_kinds():
    from .. import _core
    return dict(_core.CONSTRAINT_KINDS)


_KINDS = _constraint_kinds()
assert "penalty" in ids.OPS and "constraint" in ids.OPS

"""Engineer G (issue #16): the mask mechanism, Embedding, Masking and TimeDistributed.

Masks: a plan Tensor's `mask` is None or a (batch, T) float32 1/0 plan Tensor; layers
whose `supports_masking` is True pass their input's on, others drop it (Keras 3)."""
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

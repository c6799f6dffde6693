"""ActivityRegularization (engineer F): the identity, whose output carries an L1/L2 activity
penalty (Keras 3's layer: activity_regularizer=L1L2(l1, l2), divided by the batch size)."""
from .. import regularizers
from ..checks import check_number
from .base import Layer


class ActivityRegularization(Layer):
    def __init__(self, l1=0.0, l2=0.0, **kwargs):
        where = "ActivityRegularization"
        l1 = check_number(l1, "l1", where, 0)
        l2 = check_number(l2, "l2", where, 0)
        kwargs.pop("activity_regularizer", None)      # Keras's config never holds it
        super().__init__(activity_regularizer=regularizers.L1L2(l1=l1, l2=l2), **kwargs)
        self.l1, self.l2 = l1, l2
        self.supports_masking = True

    def plan_forward(self, b, inputs, training, logits=False):
        # the identity; the plan adds the penalty on the output (pynn/models/penalties.py)
        return inputs[0]

    def get_config(self):
        config = super().get_config()
        config.pop("activity_regularizer", None)
        return {**config, "l1": self.l1, "l2": self.l2}

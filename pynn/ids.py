"""The ids that cross into C, by name: activations, losses, metrics, optimizers, merges and
plan ops.

Their one source is csrc/pynn.h (the PYNN_*_LIST macros); pynn._core reads the names from
the compiled core at import, so the Python side never repeats a number.  Everything that
names an activation, loss, metric, optimizer or op kind (the layers, the plan, the
backends) uses these tables.
"""
from . import _core

ACTIVATIONS = dict(_core.ID_TABLES["activation"])   # "relu" -> PYNN_ACT_RELU, ...
LOSSES = dict(_core.ID_TABLES["loss"])               # "mse", "bce", "cce", "scce"
METRICS = dict(_core.ID_TABLES["metric"])            # "binary_accuracy", ...
OPTIMIZERS = dict(_core.ID_TABLES["optimizer"])      # "sgd", "adam", "rmsprop", "adagrad", ...
MERGES = dict(_core.ID_TABLES["merge"])              # "add", "subtract", ...
SCHEDULES = dict(_core.ID_TABLES["schedule"])      # "none", "ExponentialDecay", ...
OPS = dict(_core.ID_TABLES["op"])                    # "dense", "dense_backward", ...

HYPER = ("learning_rate", "momentum", "nesterov", "beta_1", "beta_2", "rho", "epsilon",
         "weight_decay", "amsgrad")
"""The order of an optimizer's settings in pynn_optimizer_step's hyper array."""

OPTIONS = ("clipnorm", "clipvalue", "global_clipnorm", "ema_momentum",
           "ema_overwrite_frequency")
"""The order of the base-optimizer options (gradient clipping, EMA) in the options block
of an OP_OPTIMIZER's reals (PYNN_OPTION_*), after the hyper and schedule blocks."""

OPT_SLOTS = _core.OPT_SLOTS
"""How many state arrays an optimizer step takes (PYNN_OPT_SLOTS)."""

"""The parameter store: a model's weights as flat arrays on its backend.

At compile, the model's weights are laid out in two flat arrays on the backend it trains
on: `params`, the trainable weights in `model.trainable_weights` order (what the
optimizer updates, one kernel call per step), and `state`, everything else (frozen
weights, BatchNormalization's moving statistics).  `grads` has `params`' layout.  Each
Variable then holds a view into its array, so layers, `get_weights()` and the plan all
see the same memory.

A variable belongs to one store at a time.  When a layer is shared by two compiled
models (a base model inside a bigger one), the last store to bind it holds it; a store
about to run checks that it still holds all its variables and takes back, values first,
those another store took (`ensure_bound`, O(1) when nothing moved).
"""
import numpy as np

from ..variables import bindings_version


class Layout:
    """Where each variable lives: (variable, start) in `params` or in `state`."""

    def __init__(self, backend, variables, trainable_ids):
        self.backend = backend
        self.trainable_offsets, self.state_offsets = [], []
        n_train = n_state = 0
        for v in variables:
            if id(v) in trainable_ids:
                self.trainable_offsets.append((v, n_train))
                n_train += v.size
            else:
                self.state_offsets.append((v, n_state))
                n_state += v.size
        self.n_trainable, self.n_state = n_train, n_state

    @property
    def trainable_variables(self):
        return [v for v, _ in self.trainable_offsets]


class ParameterStore:
    def __init__(self, backend, variables, trainable_ids):
        self.backend = backend
        self.variables = list(variables)
        self.layout = Layout(backend, self.variables, set(trainable_ids))
        # at least one element, so every array has a data pointer
        self.params = backend.zeros((max(self.layout.n_trainable, 1),))
        self.grads = backend.zeros((max(self.layout.n_trainable, 1),))
        self.state = backend.zeros((max(self.layout.n_state, 1),))
        self._views = {}
        for v, start in self.layout.trainable_offsets:
            self._views[id(v)] = (backend.view(self.params, start, v.shape),
                                  backend.view(self.grads, start, v.shape))
        for v, start in self.layout.state_offsets:
            self._views[id(v)] = (backend.view(self.state, start, v.shape), None)
        self.generation = 0            # bumped whenever a variable is taken back
        for v in self.variables:
            self._take(v)
        self._version = bindings_version()

    @property
    def n_trainable(self):
        return self.layout.n_trainable

    def _take(self, v):
        value, _ = self._views[id(v)]
        self.backend.copy_from_host(value, v.numpy())
        v._bind(self.backend, value, self)

    def is_current(self):
        """True when no variable was rebound anywhere since the last check."""
        return bindings_version() == self._version

    def ensure_bound(self):
        """Take back the variables another store bound since (values first)."""
        if bindings_version() == self._version:
            return
        moved = [v for v in self.variables if v._store is not self]
        for v in moved:
            self._take(v)
        if moved:
            self.generation += 1
        self._version = bindings_version()

    def grad_view(self, v):
        return self._views[id(v)][1]

    def holds(self, v):
        return id(v) in self._views

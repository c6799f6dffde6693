"""The recurrent layers: SimpleRNN, LSTM, GRU (Keras 3's names, arguments, defaults, weight
layouts) and the Bidirectional wrapper.

Weights (Keras 3's layouts; G gate blocks of `units` columns each):
  kernel (features, G*units), recurrent_kernel (units, G*units), bias (G*units,), or for
  the GRU (reset_after=True) bias (2, 3*units): row 0 the input bias, row 1 the recurrent.
  LSTM gate order i, f, c, o; GRU z, r, h; SimpleRNN one block.

Each call is one OP_RNN (csrc/rnn.c): one GEMM over the whole sequence for the input
projections (one per gate with per-gate dropout masks), then per step the recurrent
product (per gate with per-gate masks) and a fused gate pass; its
backward one OP_RNN_BACKWARD (backpropagation through time, the weight gradients as a few
GEMMs over the whole sequence).  The per-step gates and states the backward reads live in
plan-owned batched workspaces.

Options as Keras 3: return_sequences, return_state (the layer call then has several
outputs: [output, h] or [output, h, c] for the LSTM), go_backwards (the output sequence is
in processing order, reversed, as Keras's), masking (a plan tensor's `mask`, (batch, T) of
1.0/0.0: a masked step keeps the previous state and outputs it), dropout and
recurrent_dropout as Keras 3 draws them: masks drawn once per sequence and used at every
step; by default one input mask shared by the gates; in Keras's "implementation 1" of the
LSTM and GRU (which recurrent_dropout selects, as does implementation=1) each gate has its
own input mask and its own mask on the state it reads (SimpleRNN: one of each), unroll
(accepted, ignored).  stateful=True and GRU's
reset_after=False are refused; a call's initial_state is not supported (every sequence
starts from zero states).  zero_output_for_mask (Keras's; a Bidirectional sets it on its
sublayers when they return sequences): a masked step of the returned sequence outputs 0.
"""
from .. import activations, constraints, ids, initializers, regularizers
from ..checks import check_bool, check_int, check_number, check_seed, invalid, shown
from .base import Layer, shape_text
from .node import KerasTensor

_SUPPORTED_ACTS = ("linear", "relu", "sigmoid", "tanh")
_CELLS = {"SimpleRNN": 0, "LSTM": 1, "GRU": 2}
_GATES = {0: 1, 1: 4, 2: 3}
# the recurrent dropout's seed differs from the input dropout's (one layer seed)
_REC_SEED_SALT = 0x5DEECE66D


def _activation(value, arg, where):
    try:
        name, _ = activations.get(value, where)
    except (ValueError, TypeError):
        raise invalid(where, arg, "one of " + ", ".join(repr(a) for a in _SUPPORTED_ACTS) +
                      " or None", value) from None
    if name not in _SUPPORTED_ACTS:
        raise invalid(where, arg, "one of " + ", ".join(repr(a) for a in _SUPPORTED_ACTS) +
                      " or None (pynn's recurrent kernels support these)", value)
    return name


def _set_mask(t, mask):
    """Attach a mask to a plan tensor (engineer G's `mask` attribute; a plan without it
    carries no masks, and then none reach here)."""
    try:
        t.mask = mask
    except AttributeError:
        pass


class _ForgetBias(initializers.Initializer):
    """LSTM's unit_forget_bias: the bias initializer's values with the forget block 1."""

    def __init__(self, base, units):
        super().__init__()
        self.base, self.units = base, units

    def __call__(self, shape, dtype="float32"):
        import numpy as np
        u = self.units
        return np.concatenate([self.base((u,)), np.ones((u,), np.float32),
                               self.base((2 * u,))]).astype(dtype)


class RNNBase(Layer):
    """What SimpleRNN, LSTM and GRU share (not a Keras class)."""

    supports_masking = True
    _cell_name = None
    implementation = 2          # Keras's default; LSTM and GRU take it as an argument

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0,
                 recurrent_dropout=0.0, seed=None, return_sequences=False, return_state=False,
                 go_backwards=False, stateful=False, unroll=False, zero_output_for_mask=False,
                 **kwargs):
        cls = type(self).__name__
        units = check_int(units, "units", cls)
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        where = f"{cls} '{self.name}'"
        # Keras's regularizers and constraints of the kernel, the recurrent kernel and the bias
        # (resolved with regularizers.get / constraints.get; the plan adds their penalties and
        # applies the constraints, pynn/models/penalties.py)
        for key, value in (("kernel_regularizer", kernel_regularizer),
                           ("recurrent_regularizer", recurrent_regularizer),
                           ("bias_regularizer", bias_regularizer)):
            setattr(self, key, regularizers.get(value, where, key))
        for key, value in (("kernel_constraint", kernel_constraint),
                           ("recurrent_constraint", recurrent_constraint),
                           ("bias_constraint", bias_constraint)):
            setattr(self, key, constraints.get(value, where, key))
        self.units = units
        self.activation = _activation(activation, "activation", where)
        self.recurrent_activation = _activation(recurrent_activation, "recurrent_activation",
                                                where)
        self.use_bias = check_bool(use_bias, "use_bias", where)
        self.kernel_initializer = initializers.get(kernel_initializer, where,
                                                   "kernel_initializer")
        self.recurrent_initializer = initializers.get(recurrent_initializer, where,
                                                      "recurrent_initializer")
        self.bias_initializer = initializers.get(bias_initializer, where, "bias_initializer")
        self.dropout = check_number(dropout, "dropout", where, 0, 1, high_open=True)
        self.recurrent_dropout = check_number(recurrent_dropout, "recurrent_dropout", where, 0,
                                              1, high_open=True)
        self.seed = check_seed(seed, "seed", where)
        self._seed = None
        self.return_sequences = check_bool(return_sequences, "return_sequences", where)
        self.return_state = check_bool(return_state, "return_state", where)
        self.go_backwards = check_bool(go_backwards, "go_backwards", where)
        if check_bool(stateful, "stateful", where):
            raise ValueError(f"{where}: stateful=True is not supported (pynn's recurrent layers "
                             "start every batch from zero states), received stateful=True")
        self.stateful = False
        self.unroll = check_bool(unroll, "unroll", where)     # accepted, changes nothing
        # Keras's: masked steps of a returned sequence output zeros instead of the previous
        # output (Keras's Bidirectional sets it)
        self.zero_output_for_mask = check_bool(zero_output_for_mask, "zero_output_for_mask",
                                               where)
        self._time_order = False      # Bidirectional's backward layer: outputs in time order

    @property
    def _cell(self):
        return _CELLS[self._cell_name]

    @property
    def _gates(self):
        return _GATES[self._cell]

    @property
    def state_size(self):
        return [self.units, self.units] if self._cell == 1 else self.units

    # ---- shapes ------------------------------------------------------------------------
    def check_input_shape(self, input_shape):
        self._require_rank(input_shape, 3, what=" (batch, timesteps, features)")
        if input_shape[2] is None:       # the timesteps may be free (Input(shape=(None, F)))
            raise ValueError(f"{type(self).__name__} '{self.name}': pynn needs the number of "
                             "features known when the model is built, received input shape "
                             f"{shape_text(input_shape)}")
        if self._build_input_shape is not None and \
                input_shape[-1] != self._build_input_shape[-1]:
            raise ValueError(
                f"Input of layer '{self.name}' ({type(self).__name__}) is incompatible with the "
                f"layer: expected axis -1 of input shape to have value "
                f"{self._build_input_shape[-1]}, but received input with shape "
                f"{shape_text(input_shape)}")

    def compute_output_shape(self, input_shape):
        n, t = input_shape[0], input_shape[1]
        out = (n, t, self.units) if self.return_sequences else (n, self.units)
        if not self.return_state:
            return out
        return [out] + [(n, self.units)] * (2 if self._cell == 1 else 1)

    def _make_outputs(self, output_shape):
        if isinstance(output_shape, list):
            return [KerasTensor(s) for s in output_shape]
        return KerasTensor(output_shape)

    def compute_mask(self, inputs, mask=None):
        out = mask if self.return_sequences else None
        if self.return_state:
            return [out] + [None] * (2 if self._cell == 1 else 1)
        return out

    # ---- weights -----------------------------------------------------------------------
    def build(self, input_shape):
        import numpy as np
        from .. import utils
        f, u, g = input_shape[-1], self.units, self._gates
        self._kernel = self.add_weight(shape=(f, g * u), initializer=self.kernel_initializer,
                                       name="kernel", regularizer=self.kernel_regularizer,
                                       constraint=self.kernel_constraint)
        self._recurrent_kernel = self.add_weight(shape=(u, g * u),
                                                 initializer=self.recurrent_initializer,
                                                 name="recurrent_kernel",
                                                 regularizer=self.recurrent_regularizer,
                                                 constraint=self.recurrent_constraint)
        self._bias = None
        if self.use_bias:
            init = self.bias_initializer
            if self._cell == 1 and getattr(self, "unit_forget_bias", False):
                init = _ForgetBias(self.bias_initializer, u)
            shape = (2, g * u) if self._cell == 2 else (g * u,)
            self._bias = self.add_weight(shape=shape, initializer=init, name="bias",
                                         regularizer=self.bias_regularizer,
                                         constraint=self.bias_constraint)
        self._seed = self.seed if self.seed is not None else \
            int(utils.rng().integers(0, 1 << 62))
        del np

    @property
    def kernel(self):
        return self._kernel

    @property
    def recurrent_kernel(self):
        return self._recurrent_kernel

    @property
    def bias(self):
        return self._bias

    @property
    def cell(self):
        return self

    # ---- the plan ----------------------------------------------------------------------
    def plan_forward(self, b, inputs, training, logits=False):
        from ..models.plan import dropout_seed
        (x,) = inputs
        _, T, f = x.shape
        u, G, cell = self.units, self._gates, self._cell
        call = b.call_counts.get(id(self), 0)
        mask = getattr(x, "mask", None)
        zero_output = mask is not None and self.zero_output_for_mask and self.return_sequences
        xin = x
        # Keras 3's LSTM and GRU in "implementation 1" (chosen by recurrent_dropout, or by
        # implementation=1) draw a dropout mask per gate, for the state and for the inputs:
        # the op applies them gate by gate
        gate_masks = bool(training and cell != 0 and (
            self.recurrent_dropout > 0 or
            (self.implementation == 1 and self.dropout > 0)))
        in_mask = -1
        if training and self.dropout > 0 and gate_masks:
            in_mask = b.scratch((G * f,), batched=True)
            junk = b.scratch((G * f,), batched=True)
            b.op("dropout", [junk, in_mask, junk],
                 [dropout_seed(self._seed, call), 1, G * f, 0, 0], [self.dropout],
                 label=f"{self.name} dropout")
        elif training and self.dropout > 0:
            dmask, xd = b.new(x.shape, role="mask"), b.new(x.shape)
            b.op("dropout", [x.buf, dmask.buf, xd.buf],
                 [dropout_seed(self._seed, call), 2, T, f, 0, 1, 0], [self.dropout],
                 label=f"{self.name} dropout")

            def dropout_backward(b, dys, need):
                b.op("dropout_backward", [dys[0], dmask.buf, dys[0]], label=f"{self.name} dropout")
                return [dys[0]]

            b.differentiate([x], [xd], dropout_backward, inplace=True)
            xin = xd
        rec_mask = -1
        if training and self.recurrent_dropout > 0:
            width = G * u if gate_masks else u
            rec_mask = b.scratch((width,), batched=True)
            junk = b.scratch((width,), batched=True)
            b.op("dropout", [junk, rec_mask, junk],
                 [dropout_seed(self._seed ^ _REC_SEED_SALT, call), 1, width, 0, 0],
                 [self.recurrent_dropout], label=f"{self.name} recurrent dropout")
        seq = b.new((x.shape[0], T, u))
        cs = b.scratch((T, u), batched=True) if cell == 1 else -1
        gates = b.scratch((T, G * u), batched=True)
        hprev = b.scratch((T, u), batched=True)
        aux = b.scratch((T, u), batched=True) if cell != 0 else -1    # GRU, LSTM
        work = b.scratch((max(G * u, 4 * u),), batched=True)
        h_last = b.new((x.shape[0], u))
        c_last = b.new((x.shape[0], u)) if cell == 1 else None
        mask_buf = -1 if mask is None else mask.buf
        out = b.new((x.shape[0], T, u)) if zero_output else None
        w, rw, bias = b.param(self._kernel), b.param(self._recurrent_kernel), \
            b.param_or_none(self._bias)
        ints = [T, f, u, cell, ids.ACTIVATIONS[self.activation],
                ids.ACTIVATIONS[self.recurrent_activation], int(self.go_backwards),
                int(self._time_order), int(zero_output), int(gate_masks)]
        b.op("rnn", [xin.buf, w, rw, bias, mask_buf, rec_mask, seq.buf, cs, gates, hprev, aux,
                     work, h_last.buf, -1 if c_last is None else c_last.buf,
                     -1 if out is None else out.buf, in_mask], ints, label=self.name)
        states = seq                 # the state history the backward reads
        if out is not None:          # Keras's zero_output_for_mask: 0 at the masked steps
            seq = out
        outs = ([seq] if self.return_sequences else []) + [h_last] + \
            ([c_last] if c_last is not None else [])

        def backward(b, dys, need):
            grads = dict(zip((id(t) for t in outs), dys))
            dseq = grads.get(id(seq)) if self.return_sequences else None
            dh, dc = grads.get(id(h_last)), grads.get(id(c_last)) if c_last is not None else None
            dgates = b.scratch((T, G * u), batched=True)
            dgr = b.scratch((T, G * u), batched=True) if cell == 2 else -1
            dx = b.buffer(xin.shape[1:], role="gradient") if need[0] else -1
            b.op("rnn_backward",
                 [xin.buf, w, rw, states.buf, cs, gates, hprev, aux, mask_buf, rec_mask,
                  -1 if dseq is None else dseq, -1 if dh is None else dh,
                  -1 if dc is None else dc, dgates, dgr, work, b.grad(self._kernel),
                  b.grad(self._recurrent_kernel), b.grad(self._bias), dx, in_mask], ints,
                 label=self.name)
            return [None if dx < 0 else dx]

        b.differentiate([xin], outs, backward,
                        params=[self._kernel, self._recurrent_kernel, self._bias])
        if self.return_sequences and mask is not None:
            _set_mask(seq, mask)       # the mask passes on with the sequence (Keras's)
        main = seq if self.return_sequences else h_last
        if self.return_state:
            return [main, h_last] + ([c_last] if c_last is not None else [])
        return main

    # ---- configuration -----------------------------------------------------------------
    def get_config(self):
        config = {**super().get_config(), "units": self.units,
                  "activation": self.activation, "use_bias": self.use_bias,
                  "kernel_initializer": initializers.serialize(self.kernel_initializer),
                  "recurrent_initializer": initializers.serialize(self.recurrent_initializer),
                  "bias_initializer": initializers.serialize(self.bias_initializer),
                  "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
                  "recurrent_regularizer": regularizers.serialize(self.recurrent_regularizer),
                  "bias_regularizer": regularizers.serialize(self.bias_regularizer),
                  "activity_regularizer": regularizers.serialize(self.activity_regularizer),
                  "kernel_constraint": constraints.serialize(self.kernel_constraint),
                  "recurrent_constraint": constraints.serialize(self.recurrent_constraint),
                  "bias_constraint": constraints.serialize(self.bias_constraint),
                  "dropout": self.dropout,
                  "recurrent_dropout": self.recurrent_dropout,
                  "seed": self.seed if self.seed is not None else self._seed,
                  "return_sequences": self.return_sequences,
                  "return_state": self.return_state, "go_backwards": self.go_backwards,
                  "stateful": False, "unroll": self.unroll,
                  "zero_output_for_mask": self.zero_output_for_mask}
        if self._cell != 0:
            config["recurrent_activation"] = self.recurrent_activation
        return config


class _GatedRNN(RNNBase):
    """What LSTM and GRU share beyond RNNBase: Keras's `implementation` (1: a dropout mask
    per gate, which recurrent_dropout also selects) and `use_cudnn` (accepted)."""

    def _gated_options(self, implementation, use_cudnn, where):
        if implementation not in (1, 2):
            raise invalid(where, "implementation", "1 or 2", implementation)
        self.implementation = int(implementation)
        self.use_cudnn = use_cudnn


class SimpleRNN(RNNBase):
    """Fully-connected RNN: h_t = activation(x_t kernel + h_{t-1} recurrent_kernel + bias)."""

    _cell_name = "SimpleRNN"

    def __init__(self, units, activation="tanh", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", **kwargs):
        super().__init__(units, activation=activation, recurrent_activation="sigmoid",
                         use_bias=use_bias, kernel_initializer=kernel_initializer,
                         recurrent_initializer=recurrent_initializer,
                         bias_initializer=bias_initializer, **kwargs)


class LSTM(_GatedRNN):
    """Long Short-Term Memory (Hochreiter 1997), Keras 3's: gates i, f, c, o."""

    _cell_name = "LSTM"

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", unit_forget_bias=True, implementation=2,
                 use_cudnn="auto", **kwargs):
        super().__init__(units, activation=activation,
                         recurrent_activation=recurrent_activation, use_bias=use_bias,
                         kernel_initializer=kernel_initializer,
                         recurrent_initializer=recurrent_initializer,
                         bias_initializer=bias_initializer, **kwargs)
        where = f"LSTM '{self.name}'"
        self.unit_forget_bias = check_bool(unit_forget_bias, "unit_forget_bias", where)
        self._gated_options(implementation, use_cudnn, where)

    def get_config(self):
        return {**super().get_config(), "unit_forget_bias": self.unit_forget_bias,
                "implementation": self.implementation}


class GRU(_GatedRNN):
    """Gated Recurrent Unit (Cho 2014), Keras 3's reset_after=True form: gates z, r, h,
    bias (2, 3*units)."""

    _cell_name = "GRU"

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", reset_after=True, implementation=2,
                 use_cudnn="auto", **kwargs):
        super().__init__(units, activation=activation,
                         recurrent_activation=recurrent_activation, use_bias=use_bias,
                         kernel_initializer=kernel_initializer,
                         recurrent_initializer=recurrent_initializer,
                         bias_initializer=bias_initializer, **kwargs)
        where = f"GRU '{self.name}'"
        if not check_bool(reset_after, "reset_after", where):
            raise ValueError(f"{where}: only reset_after=True (Keras 3's default) is supported, "
                             "received reset_after=False")
        self.reset_after = True
        self._gated_options(implementation, use_cudnn, where)

    def get_config(self):
        return {**super().get_config(), "reset_after": True,
                "implementation": self.implementation}


# ---- Bidirectional ---------------------------------------------------------------------

_MERGE_MODES = ("concat", "sum", "mul", "ave", None)


class Bidirectional(Layer):
    """Runs a recurrent layer forwards and a copy backwards over the sequence and merges
    their outputs (Keras 3's: sublayers forward_<name> and backward_<name>; with
    return_sequences the backward layer's outputs are put back in time order)."""

    def __init__(self, layer, merge_mode="concat", weights=None, backward_layer=None,
                 **kwargs):
        where = "Bidirectional"
        if not isinstance(layer, RNNBase):
            raise ValueError(f"{where}: received an invalid value for `layer`, expected a "
                             "recurrent layer instance (SimpleRNN, LSTM or GRU). Received: "
                             f"layer={shown(layer)}")
        if backward_layer is not None and not isinstance(backward_layer, RNNBase):
            raise ValueError(f"{where}: received an invalid value for `backward_layer`, expected "
                             "a recurrent layer instance (SimpleRNN, LSTM or GRU) or None. "
                             f"Received: backward_layer={shown(backward_layer)}")
        if merge_mode not in _MERGE_MODES:
            raise ValueError(f"{where}: received an invalid value for `merge_mode`, expected one "
                             "of 'sum', 'mul', 'ave', 'concat' or None. Received: "
                             f"merge_mode={shown(merge_mode)}")
        super().__init__(**kwargs)
        config = layer.get_config()
        base = layer.name[len("forward_"):] if layer.name.startswith("forward_") else layer.name
        config["name"] = f"forward_{base}"
        self.forward_layer = type(layer).from_config(config)
        if backward_layer is None:
            config = layer.get_config()
            config["go_backwards"] = not layer.go_backwards
            bbase = layer.name[len("backward_"):] if layer.name.startswith("backward_") \
                else layer.name
            config["name"] = f"backward_{bbase}"
            self.backward_layer = type(layer).from_config(config)
        else:
            self.backward_layer = backward_layer
        fl, bl = self.forward_layer, self.backward_layer
        if fl.go_backwards == bl.go_backwards:
            raise ValueError("Forward layer and backward layer should have different "
                             f"`go_backwards` value. Received: forward_layer.go_backwards "
                             f"{fl.go_backwards}, backward_layer.go_backwards={bl.go_backwards}")
        for a in ("return_sequences", "return_state"):
            if getattr(fl, a) != getattr(bl, a):
                raise ValueError("Forward layer and backward layer are expected to have the same "
                                 f'value for attribute "{a}", got "{getattr(fl, a)}" for forward '
                                 f'layer and "{getattr(bl, a)}" for backward layer')
        bl._time_order = True
        fl._time_order = False
        # Keras's: a returned sequence outputs 0 at the masked steps
        fl.zero_output_for_mask = fl.return_sequences
        bl.zero_output_for_mask = bl.return_sequences
        self.merge_mode = merge_mode
        self.return_sequences = fl.return_sequences
        self.return_state = fl.return_state
        self.stateful = False
        self._initial_weights = list(weights) if weights else None

    supports_masking = True

    def _sublayers(self):
        return [self.forward_layer, self.backward_layer]

    def check_input_shape(self, input_shape):
        self.forward_layer.check_input_shape(input_shape)

    def build(self, input_shape):
        self.forward_layer._maybe_build(input_shape)
        self.backward_layer._maybe_build(input_shape)
        if self._initial_weights is not None:
            self.set_weights(self._initial_weights)
            self._initial_weights = None

    def compute_output_shape(self, input_shape):
        out = self.forward_layer.compute_output_shape(input_shape)
        states = []
        if self.return_state:
            out, states = out[0], list(out[1:])
        bout = self.backward_layer.compute_output_shape(input_shape)
        if self.return_state:
            bout = bout[0]
        if self.merge_mode == "concat":
            out = tuple(out[:-1]) + (out[-1] + bout[-1],)
            outs = [out]
        elif self.merge_mode is None:
            outs = [tuple(out), tuple(bout)]
        else:
            outs = [tuple(out)]
        if self.return_state:
            return outs + states + states
        return outs[0] if len(outs) == 1 else outs

    def _make_outputs(self, output_shape):
        if isinstance(output_shape, list):
            return [KerasTensor(s) for s in output_shape]
        return KerasTensor(output_shape)

    def compute_mask(self, inputs, mask=None):
        out = mask if self.return_sequences else None
        outs = [out, out] if self.merge_mode is None else [out]
        if self.return_state:
            n = 2 if self.forward_layer._cell == 1 else 1
            return outs + [None] * (2 * n)
        return outs[0] if len(outs) == 1 else outs

    def plan_forward(self, b, inputs, training, logits=False):
        from .merging import Add, Average, Concatenate, Multiply
        fwd = self._sublayer_forward(b, self.forward_layer, inputs, training)
        bwd = self._sublayer_forward(b, self.backward_layer, inputs, training)
        b.call_counts[id(self.forward_layer)] = b.call_counts.get(id(self.forward_layer), 0) + 1
        b.call_counts[id(self.backward_layer)] = b.call_counts.get(id(self.backward_layer), 0) + 1
        fstates, bstates = [], []
        if self.return_state:
            fwd, fstates = fwd[0], list(fwd[1:])
            bwd, bstates = bwd[0], list(bwd[1:])
        if self.merge_mode is None:
            outs = [fwd, bwd]
        else:
            merge = {"concat": Concatenate, "sum": Add, "mul": Multiply,
                     "ave": Average}[self.merge_mode](name=f"{self.name}_merge")
            y = merge.plan_forward(b, [fwd, bwd], training)
            mask = getattr(fwd, "mask", None)
            if mask is not None:
                _set_mask(y, mask)
            outs = [y]
        if self.return_state:
            return outs + fstates + bstates
        return outs[0] if len(outs) == 1 else outs

    @staticmethod
    def _sublayer_forward(b, layer, inputs, training):
        """A sublayer's forward, with its activity penalty (Keras calls the sublayers, so
        their activity regularizers add their losses as a layer's own do)."""
        out = layer.plan_forward(b, inputs, training)
        if layer.activity_regularizer is None or b.plan.kind not in ("train", "test"):
            return out
        from ..models import penalties
        if isinstance(out, (list, tuple)):
            return [penalties.activity(b, layer, t) for t in out]
        return penalties.activity(b, layer, out)

    def get_config(self):
        from ..serialization import serialize as serialize_layer
        config = {**super().get_config(), "merge_mode": self.merge_mode,
                  "layer": serialize_layer(self.forward_layer)}
        config["layer"]["config"]["name"] = self.forward_layer.name
        config["backward_layer"] = serialize_layer(self.backward_layer)
        for key in ("layer", "backward_layer"):      # built by the Bidirectional, not alone
            config[key].pop("build_config", None)
        return config

    @classmethod
    def from_config(cls, config):
        from ..serialization import deserialize_layer
        config = dict(config)

        def unbuilt(entry):      # Keras writes build_config: the Bidirectional builds them
            return {k: v for k, v in entry.items() if k != "build_config"} \
                if isinstance(entry, dict) else entry
        layer = deserialize_layer(unbuilt(config.pop("layer", None)))
        backward = config.pop("backward_layer", None)
        if backward is not None:
            backward = deserialize_layer(unbuilt(backward))
        return cls(layer, backward_layer=backward, **config)


__all__ = ["SimpleRNN", "LSTM", "GRU", "Bidirectional", "RNNBase"]

# The fused training path of a Dense network (csrc/mlp.c).
# Textually included by _core.pyx.
#
# An MLPTrainer holds the network's description (a pynn_mlp_config) and the workspace
# for one batch size, both built once per fit/compile; `train` is then one C call for
# a whole run of training steps.

import numpy as _np

MLP_MAX_LAYERS = PYNN_MLP_MAX_LAYERS
MLP_MAX_METRICS = PYNN_MLP_MAX_METRICS
LOSS_SPARSE_CCE = PYNN_LOSS_SPARSE_CCE
OPT_SGD = PYNN_OPT_SGD
OPT_ADAM = PYNN_OPT_ADAM
OPT_RMSPROP = PYNN_OPT_RMSPROP
METRIC_BINARY_ACCURACY = PYNN_METRIC_BINARY_ACCURACY
METRIC_CATEGORICAL_ACCURACY = PYNN_METRIC_CATEGORICAL_ACCURACY
METRIC_SPARSE_CATEGORICAL_ACCURACY = PYNN_METRIC_SPARSE_CATEGORICAL_ACCURACY
METRIC_MAE = PYNN_METRIC_MAE


cdef class MLPTrainer:
    cdef pynn_mlp_config cfg
    cdef readonly int64_t batch
    cdef readonly int64_t num_params
    cdef readonly object workspace
    cdef readonly object labels_ws
    cdef readonly object step_losses
    cdef readonly object step_metrics

    def __init__(self, sizes, acts, alphas, use_bias, int loss, bint from_logits, int predict_act,
                 metrics, int optimizer, bint nesterov, double lr, double momentum, double beta1,
                 double beta2, double rho, double epsilon, int64_t batch, int64_t max_steps=1):
        cdef Py_ssize_t l, n_layers = len(acts)
        if n_layers < 1 or n_layers > PYNN_MLP_MAX_LAYERS:
            raise ValueError(f"MLPTrainer: expected 1 to {PYNN_MLP_MAX_LAYERS} layers, received {n_layers}")
        if len(sizes) != n_layers + 1 or len(alphas) != n_layers or len(use_bias) != n_layers:
            raise ValueError("MLPTrainer: expected len(sizes) == len(acts) + 1 == len(alphas) + 1 "
                             "== len(use_bias) + 1")
        if len(metrics) > PYNN_MLP_MAX_METRICS:
            raise ValueError(f"MLPTrainer: at most {PYNN_MLP_MAX_METRICS} metrics, received {len(metrics)}")
        if batch < 1 or max_steps < 1:
            raise ValueError(f"MLPTrainer: expected batch >= 1 and max_steps >= 1, received "
                             f"{batch} and {max_steps}")
        self.cfg.n_layers = n_layers
        for l in range(n_layers + 1):
            self.cfg.sizes[l] = sizes[l]
        for l in range(n_layers):
            self.cfg.acts[l] = acts[l]
            self.cfg.alphas[l] = alphas[l]
            self.cfg.use_bias[l] = 1 if use_bias[l] else 0
        self.cfg.loss = loss
        self.cfg.from_logits = from_logits
        self.cfg.predict_act = predict_act
        self.cfg.n_metrics = len(metrics)
        for l in range(len(metrics)):
            self.cfg.metrics[l] = metrics[l]
        self.cfg.optimizer = optimizer
        self.cfg.nesterov = nesterov
        self.set_hyperparameters(lr, momentum, beta1, beta2, rho, epsilon)
        cdef int64_t n = pynn_mlp_num_params(&self.cfg)
        cdef int64_t size = pynn_mlp_workspace_size(&self.cfg, batch)
        if n < 0 or size < 0:
            raise ValueError("MLPTrainer: the C core rejected the network description")
        self.batch = batch
        self.num_params = n
        self.workspace = _np.empty(size, dtype=_np.float32)
        self.labels_ws = _np.empty(batch, dtype=_np.int64)
        self.step_losses = _np.empty(max_steps, dtype=_np.float64)
        self.step_metrics = _np.empty((max_steps, max(1, len(metrics))), dtype=_np.float64)

    def set_hyperparameters(self, double lr, double momentum, double beta1, double beta2,
                            double rho, double epsilon):
        """The optimizer's settings (a callback may change the learning rate between calls)."""
        self.cfg.lr = <float>lr
        self.cfg.momentum = <float>momentum
        self.cfg.beta1 = <float>beta1
        self.cfg.beta2 = <float>beta2
        self.cfg.rho = <float>rho
        self.cfg.epsilon = <float>epsilon
        self.cfg.lr_d = lr
        self.cfg.beta1_d = beta1
        self.cfg.beta2_d = beta2

    def train(self, float[::1] params,             # IN/OUT (num_params,)
              float[::1] grads,                    # OUT    (num_params,)
              slot1, slot2,                        # IN/OUT optimizer state or None
              const float[:, ::1] x,               # IN     (n_rows, inputs)
              targets,                             # IN     (n_rows, outputs) float32, or None
              labels,                              # IN     (n_rows,) int64, or None
              order,                               # IN     (n_order,) int64 row indices, or None
              int64_t n_order, int64_t first_row, int64_t n_steps, int64_t iterations):
        """Run n_steps training steps; the losses and metric sums of each step are left
        in self.step_losses[:n_steps] and self.step_metrics[:n_steps]."""
        cdef float[::1] s1, s2
        cdef const float[:, ::1] t
        cdef const int64_t[::1] lab, order_v
        cdef float *p_s1 = NULL
        cdef float *p_s2 = NULL
        cdef const float *p_t = NULL
        cdef const int64_t *p_lab = NULL
        cdef const int64_t *p_order = NULL
        cdef double[::1] losses = self.step_losses
        cdef double[:, ::1] metrics = self.step_metrics
        cdef float[::1] ws = self.workspace
        cdef int64_t[::1] lws = self.labels_ws
        cdef int64_t n_rows = x.shape[0]
        cdef int64_t out = self.cfg.sizes[self.cfg.n_layers]
        cdef int status
        if params.shape[0] != self.num_params or grads.shape[0] != self.num_params:
            raise ValueError(f"MLPTrainer.train: expected params and grads of {self.num_params} "
                             f"values, received {params.shape[0]} and {grads.shape[0]}")
        if x.shape[1] != self.cfg.sizes[0]:
            raise ValueError(f"MLPTrainer.train: expected x with {self.cfg.sizes[0]} columns, "
                             f"received {x.shape[1]}")
        if n_steps < 0 or n_steps > losses.shape[0]:
            raise ValueError(f"MLPTrainer.train: expected 0 <= n_steps <= {losses.shape[0]}, "
                             f"received {n_steps}")
        for slot in (slot1, slot2):
            if slot is not None and slot.shape[0] != self.num_params:
                raise ValueError(f"MLPTrainer.train: expected optimizer state of {self.num_params} "
                                 f"values, received {slot.shape[0]}")
        if slot1 is not None:
            s1 = slot1
            p_s1 = &s1[0]
        if slot2 is not None:
            s2 = slot2
            p_s2 = &s2[0]
        if targets is not None:
            t = targets
            if t.shape[0] != n_rows or t.shape[1] != out:
                raise ValueError(f"MLPTrainer.train: expected targets of shape ({n_rows}, {out}), "
                                 f"received ({t.shape[0]}, {t.shape[1]})")
            p_t = &t[0, 0]
        if labels is not None:
            lab = labels
            if lab.shape[0] != n_rows:
                raise ValueError(f"MLPTrainer.train: expected {n_rows} labels, received {lab.shape[0]}")
            p_lab = &lab[0]
        if order is not None:
            order_v = order
            if order_v.shape[0] < n_order:
                raise ValueError(f"MLPTrainer.train: order holds {order_v.shape[0]} indices, "
                                 f"n_order is {n_order}")
            p_order = &order_v[0]
        with nogil:
            status = pynn_mlp_train(&params[0], &grads[0], p_s1, p_s2, &losses[0], &metrics[0, 0],
                                    &ws[0], &lws[0], &x[0, 0], p_t, p_lab, p_order, n_rows, n_order,
                                    first_row, self.batch, n_steps, iterations, &self.cfg)
        _check(status, "mlp_train")

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


cdef float *_float_data(object arr, Py_ssize_t n, str what) except NULL:
    """The data pointer of a float32 C-contiguous array of n values (checked)."""
    cdef float[::1] v = arr.reshape(-1)
    if v.shape[0] != n:
        raise ValueError(f"MLPTrainer.train: expected {what} of {n} values, received {v.shape[0]}")
    if n == 0:
        raise ValueError(f"MLPTrainer.train: {what} is empty")
    return &v[0]


cdef class MLPTrainer:
    """The C description of a Dense network plus its workspace for one batch size.

    `train` remembers the arrays it was last given (parameters, gradients, optimizer
    state, data) and takes their data pointers again only when a different array
    object comes: the arrays are owned by the model and kept alive by this object, and
    a training step of a small network should not spend its time converting buffers."""
    cdef pynn_mlp_config cfg
    cdef readonly int64_t batch
    cdef readonly int64_t num_params
    cdef readonly object workspace
    cdef readonly object labels_ws
    cdef readonly object step_losses
    cdef readonly object step_metrics
    cdef float *ws_ptr
    cdef int64_t *labels_ws_ptr
    cdef double *losses_ptr
    cdef double *metrics_ptr
    cdef int64_t max_steps
    # the arrays of the last call and their data pointers
    cdef object params_obj, grads_obj, slot1_obj, slot2_obj, x_obj, data_obj, order_obj
    cdef float *params_ptr
    cdef float *grads_ptr
    cdef float *slot1_ptr
    cdef float *slot2_ptr
    cdef const float *x_ptr
    cdef const void *data_ptr
    cdef const int64_t *order_ptr
    cdef int64_t n_rows, n_order_max

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
        self.max_steps = max_steps
        self.num_params = n
        self.workspace = _np.empty(size, dtype=_np.float32)
        self.labels_ws = _np.empty(batch, dtype=_np.int64)
        self.step_losses = _np.empty(max_steps, dtype=_np.float64)
        self.step_metrics = _np.empty((max_steps, max(1, len(metrics))), dtype=_np.float64)
        cdef float[::1] ws = self.workspace
        cdef int64_t[::1] lws = self.labels_ws
        cdef double[::1] losses = self.step_losses
        cdef double[:, ::1] mets = self.step_metrics
        self.ws_ptr = &ws[0]
        self.labels_ws_ptr = &lws[0]
        self.losses_ptr = &losses[0]
        self.metrics_ptr = &mets[0, 0]

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

    def release(self):
        """Forget the arrays of the last call (so the trainer does not keep data alive)."""
        self.params_obj = self.grads_obj = self.slot1_obj = self.slot2_obj = None
        self.x_obj = self.data_obj = self.order_obj = None
        self.params_ptr = self.grads_ptr = self.slot1_ptr = self.slot2_ptr = NULL
        self.x_ptr = NULL
        self.data_ptr = NULL
        self.order_ptr = NULL

    def train(self, params,      # IN/OUT (num_params,) float32
              grads,             # OUT    (num_params,) float32
              slot1, slot2,      # IN/OUT optimizer state (num_params,) float32, or None
              x,                 # IN     (n_rows, inputs) float32 C-contiguous
              data,              # IN     targets (n_rows, outputs) float32, or labels (n_rows,) int64
              order,             # IN     (n_order,) int64 row indices, or None
              int64_t n_order, int64_t first_row, int64_t n_steps, int64_t iterations,
              bint check_inputs=False):
        """Run n_steps training steps; the losses and metric sums of each step are left
        in self.step_losses[:n_steps] and self.step_metrics[:n_steps].  check_inputs:
        refuse a batch holding NaN or infinity (KernelInputError) before it changes
        anything, for callers that did not check the data themselves."""
        cdef const float[:, ::1] xv
        cdef const float[:, ::1] tv
        cdef const int64_t[::1] lv
        cdef const int64_t[::1] ov
        cdef int64_t out = self.cfg.sizes[self.cfg.n_layers]
        cdef bint sparse = self.cfg.loss == PYNN_LOSS_SPARSE_CCE
        cdef int status
        if params is not self.params_obj:
            self.params_ptr = _float_data(params, self.num_params, "params")
            self.params_obj = params
        if grads is not self.grads_obj:
            self.grads_ptr = _float_data(grads, self.num_params, "grads")
            self.grads_obj = grads
        if slot1 is not self.slot1_obj:
            self.slot1_ptr = NULL if slot1 is None else _float_data(slot1, self.num_params, "slot1")
            self.slot1_obj = slot1
        if slot2 is not self.slot2_obj:
            self.slot2_ptr = NULL if slot2 is None else _float_data(slot2, self.num_params, "slot2")
            self.slot2_obj = slot2
        if x is not self.x_obj:
            xv = x
            if xv.shape[1] != self.cfg.sizes[0] or xv.shape[0] == 0:
                raise ValueError(f"MLPTrainer.train: expected x of shape (n, {self.cfg.sizes[0]}) "
                                 f"with n >= 1, received ({xv.shape[0]}, {xv.shape[1]})")
            self.x_ptr = &xv[0, 0]
            self.n_rows = xv.shape[0]
            self.x_obj = x
        if data is not self.data_obj:
            if sparse:
                lv = data
                if lv.shape[0] != self.n_rows:
                    raise ValueError(f"MLPTrainer.train: expected {self.n_rows} labels, received {lv.shape[0]}")
                self.data_ptr = &lv[0]
            else:
                tv = data
                if tv.shape[0] != self.n_rows or tv.shape[1] != out:
                    raise ValueError(f"MLPTrainer.train: expected targets of shape ({self.n_rows}, {out}), "
                                     f"received ({tv.shape[0]}, {tv.shape[1]})")
                self.data_ptr = &tv[0, 0]
            self.data_obj = data
        if order is None:
            self.order_ptr = NULL
            self.order_obj = None
            self.n_order_max = self.n_rows
        elif order is not self.order_obj:
            ov = order
            self.order_ptr = &ov[0]
            self.n_order_max = ov.shape[0]
            self.order_obj = order
        if n_order > self.n_order_max:
            raise ValueError(f"MLPTrainer.train: n_order {n_order} exceeds the {self.n_order_max} "
                             "rows available")
        if n_steps < 0 or n_steps > self.max_steps:
            raise ValueError(f"MLPTrainer.train: expected 0 <= n_steps <= {self.max_steps}, "
                             f"received {n_steps}")
        self.cfg.check_inputs = check_inputs
        with nogil:
            status = pynn_mlp_train(self.params_ptr, self.grads_ptr, self.slot1_ptr, self.slot2_ptr,
                                    self.losses_ptr, self.metrics_ptr, self.ws_ptr, self.labels_ws_ptr,
                                    self.x_ptr, NULL if sparse else <const float *>self.data_ptr,
                                    <const int64_t *>self.data_ptr if sparse else NULL,
                                    self.order_ptr, self.n_rows, n_order, first_row, self.batch,
                                    n_steps, iterations, &self.cfg)
        _check(status, "mlp_train")

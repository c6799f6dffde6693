# The plan runner (csrc/plan.c).  Textually included by _core.pyx.
#
# A PlanRunner packs a compiled plan -- ops naming buffers by index, and the buffers
# themselves (NumPy arrays the model owns) -- into the C structs of csrc/pynn.h once, at
# construction.  `run` is then one C call for a step or a whole epoch.  It is the fast
# path of training a small network, so it does as little Python as it can: the data
# pointers of the arrays of the last call are kept and taken again only when a different
# array object comes, and the result views are reused.
#
# What is checked where: this file checks what C cannot see (dtypes, contiguity, that an
# array holds the rows it claims); pynn_plan_run checks the plan itself (operand indices,
# counts, sizes for the step's rows) and refuses a malformed one with PYNN_EINVAL, which
# becomes a ValueError here, before any step changes anything.

cdef int _dtype_code(object arr, str what) except -1:
    """PYNN_DTYPE_* of a C-contiguous float32 or int64 array."""
    if not isinstance(arr, _np.ndarray) or not arr.flags.c_contiguous:
        raise ValueError(f"PlanRunner: expected {what} to be a C-contiguous NumPy array, "
                         f"received {type(arr).__name__}")
    if arr.dtype == _np.float32:
        return PYNN_DTYPE_F32
    if arr.dtype == _np.int64:
        return PYNN_DTYPE_I64
    raise ValueError(f"PlanRunner: expected {what} of dtype float32 or int64, received {arr.dtype}")


cdef int _buffer_dtype(Py_buffer *view) noexcept:
    """PYNN_DTYPE_* of a native float32 or int64 buffer (NumPy's formats "f", "l" or "q"),
    or -1."""
    cdef const char *f = view.format
    if f == NULL or f[0] == 0 or f[1] != 0:
        return -1
    if f[0] == b'f' and view.itemsize == 4:
        return PYNN_DTYPE_F32
    if (f[0] == b'l' or f[0] == b'q') and view.itemsize == 8:
        return PYNN_DTYPE_I64
    return -1


cdef void *_array_data(object arr) except? NULL:
    """The data pointer of a C-contiguous float32 or int64 array (any size)."""
    cdef const float[::1] f
    cdef const int64_t[::1] i
    if arr.size == 0:
        # a zero-size array still has an address; C only needs it to be non-NULL
        return <void *><size_t>arr.__array_interface__["data"][0]
    if arr.dtype == _np.float32:
        f = arr.reshape(-1)
        return <void *>&f[0]
    i = arr.reshape(-1)
    return <void *>&i[0]


cdef int _plan_hook(void *ctx, int64_t phase, int64_t offset, int64_t count, int64_t rows,
                    int64_t step) noexcept nogil:
    """OP_GRAD_HOOK's callback (csrc/plan.c calls it on the thread running the plan, with
    the GIL released): the runner's Python hook, called with the GIL held.  A hook that
    raises ends the run (PYNN_EHOOK); `run` raises its exception."""
    with gil:
        runner = <PlanRunner>ctx
        try:
            runner._hook(phase, offset, count, rows, step)
        except BaseException as e:
            runner._hook_error = e
            return 1
        return 0


cdef class PlanRunner:
    """A compiled plan, packed for pynn_plan_run.

    PlanRunner(ops, buffers, capacity, input_bufs, target_bufs, target_classes, output_bufs,
               n_losses, n_metrics, max_steps=1, target_ignore=None)
      ops            list of (kind, bufs, ints, reals): kind an id of pynn.ids.OPS, bufs a
                     list of buffer indices (-1: absent), ints a list of ints, reals a list
                     of floats, as csrc/pynn.h documents per op kind
      buffers        list of (array, row_size): a C-contiguous float32 or int64 array, and
                     the elements per batch row (0: a fixed buffer); a batched buffer's
                     array holds at least capacity * row_size elements.  Entries may be
                     views of one array.
      capacity       the rows every batched buffer holds (the largest batch)
      input_bufs, target_bufs, output_bufs   batched buffer indices fed from / copied to
                     the data of `run`
      target_classes per target: labels lie in [0, classes) (an int64 buffer of row size
                     1), or 0 for float targets
      n_losses, n_metrics   the slots the OP_LOSS / OP_METRIC ops write per step
      max_steps      the most steps one `run` may take (sizes the result arrays)
      target_ignore  None, or per target None or an int: a label the step's check accepts
                     besides [0, classes) (a loss's ignore_class)
      input_direct   None, or per input a bool: True where the ops only read that input's
                     buffer (and those sharing its memory), so that a run over rows in order
                     reads them where the caller holds them (csrc/pynn.h, input_direct)
    """
    cdef pynn_plan plan
    cdef pynn_op *ops
    cdef pynn_buffer *bufs
    cdef list _keep                 # every array the structs point into
    cdef double[::1] _reals
    cdef list _reals_at             # per op: (offset, count) in _reals
    cdef readonly int64_t max_steps
    cdef readonly int64_t capacity
    # the data of the last call: the arrays, their pointers and row counts
    cdef const void **in_ptrs
    cdef const void **tgt_ptrs
    cdef void **out_ptrs
    cdef int64_t *in_rows
    cdef int64_t *tgt_rows
    cdef int64_t *out_rows
    cdef list in_objs, tgt_objs, out_objs
    cdef object order_obj
    cdef const int64_t *order_ptr
    cdef int64_t order_len
    # results, reused between calls
    cdef readonly object step_losses
    cdef readonly object step_metrics
    cdef readonly object step_rows
    cdef double *losses_ptr
    cdef double *metrics_ptr
    cdef int64_t *rows_ptr
    cdef int64_t last_n_steps
    cdef object last_result
    # row counts whose ops pynn_plan_check has passed (pynn_plan_run then skips the check)
    cdef int64_t checked[8]
    # OP_GRAD_HOOK's Python callable (set_hook) and the exception it raised in a run
    cdef object _hook
    cdef object _hook_error

    def __cinit__(self):
        self.ops = NULL
        self.bufs = NULL
        self.in_ptrs = self.tgt_ptrs = NULL
        self.out_ptrs = NULL
        self.in_rows = self.tgt_rows = self.out_rows = NULL

    def __dealloc__(self):
        PyMem_Free(self.ops)
        PyMem_Free(self.bufs)
        PyMem_Free(<void *>self.in_ptrs)
        PyMem_Free(<void *>self.tgt_ptrs)
        PyMem_Free(self.out_ptrs)
        PyMem_Free(self.in_rows)
        PyMem_Free(self.tgt_rows)
        PyMem_Free(self.out_rows)

    def __init__(self, ops, buffers, int64_t capacity, input_bufs, target_bufs, target_classes,
                 output_bufs, int64_t n_losses, int64_t n_metrics, int64_t max_steps=1,
                 target_ignore=None, input_direct=None):
        cdef Py_ssize_t n_ops = len(ops), n_bufs = len(buffers), j, at
        cdef int64_t[::1] index
        cdef int64_t row_size
        if capacity < 1 or max_steps < 1 or n_losses < 0 or n_metrics < 0:
            raise ValueError(f"PlanRunner: expected capacity >= 1, max_steps >= 1, n_losses >= 0 "
                             f"and n_metrics >= 0, received {capacity}, {max_steps}, {n_losses} "
                             f"and {n_metrics}")
        if len(target_classes) != len(target_bufs):
            raise ValueError(f"PlanRunner: expected one class count per target, received "
                             f"{len(target_classes)} for {len(target_bufs)} targets")
        self.capacity = capacity
        self.max_steps = max_steps
        self._keep = []

        # buffers
        self.bufs = <pynn_buffer *>PyMem_Malloc(max(n_bufs, 1) * sizeof(pynn_buffer))
        if self.bufs == NULL:
            raise MemoryError()
        for j in range(n_bufs):
            arr, row_size = buffers[j]
            self.bufs[j].dtype = _dtype_code(arr, f"buffer {j}")
            if row_size < 0 or (row_size > 0 and arr.size < capacity * row_size):
                raise ValueError(f"PlanRunner: buffer {j} has {arr.size} elements, expected "
                                 f"capacity * row_size = {capacity} * {row_size} "
                                 "(row_size >= 0; 0 for a fixed buffer)")
            self.bufs[j].data = _array_data(arr)
            self.bufs[j].row_size = row_size
            self.bufs[j].size = arr.size
            self._keep.append(arr)

        # ops: their buffer indices and ints in one int64 array, their reals in one double
        # array, each op pointing into them
        cdef list flat_ints = [], flat_reals = []
        _OP_IDS = set(ID_TABLES["op"].values())
        self._reals_at = []
        for j in range(n_ops):
            kind, op_bufs, op_ints, op_reals = ops[j]
            if kind not in _OP_IDS:
                raise ValueError(f"PlanRunner: op {j} has kind {kind}, expected one of "
                                 "pynn.ids.OPS' ids")
            for b in op_bufs:
                if b < -1 or b >= n_bufs:
                    raise ValueError(f"PlanRunner: op {j} names buffer {b}, expected -1 or "
                                     f"0 .. {n_bufs - 1}")
            flat_ints.extend(op_bufs)
            flat_ints.extend(op_ints)
            self._reals_at.append((len(flat_reals), len(op_reals)))
            flat_reals.extend(op_reals)
        if target_ignore is not None and len(target_ignore) != len(target_bufs):
            raise ValueError(f"PlanRunner: expected one ignore class (or None) per target, "
                             f"received {len(target_ignore)} for {len(target_bufs)} targets")
        ignore_pairs = []
        for v in (target_ignore or ()):
            ignore_pairs.extend((0, 0) if v is None else (1, int(v)))
        if input_direct is not None and len(input_direct) != len(input_bufs):
            raise ValueError(f"PlanRunner: expected one input_direct flag per input, received "
                             f"{len(input_direct)} for {len(input_bufs)} inputs")
        direct_flags = [1 if d else 0 for d in (input_direct or ())]
        lists = (input_bufs, target_bufs, target_classes, output_bufs, ignore_pairs,
                 direct_flags)
        for values in lists:
            flat_ints.extend(values)
        index = _np.array(flat_ints + [0], dtype=_np.int64)
        self._reals = _np.array(flat_reals + [0.0], dtype=_np.float64)
        self._keep.append(index.base)
        self._keep.append(self._reals.base)
        self.ops = <pynn_op *>PyMem_Malloc(max(n_ops, 1) * sizeof(pynn_op))
        if self.ops == NULL:
            raise MemoryError()
        at = 0
        for j in range(n_ops):
            kind, op_bufs, op_ints, op_reals = ops[j]
            self.ops[j].kind = kind
            self.ops[j].n_bufs = len(op_bufs)
            self.ops[j].n_ints = len(op_ints)
            self.ops[j].n_reals = len(op_reals)
            self.ops[j].bufs = &index[at]
            self.ops[j].ints = &index[at + len(op_bufs)]
            self.ops[j].reals = &self._reals[self._reals_at[j][0]]
            at += len(op_bufs) + len(op_ints)

        self.plan.ops = self.ops
        self.plan.n_ops = n_ops
        self.plan.bufs = self.bufs
        self.plan.n_bufs = n_bufs
        self.plan.capacity = capacity
        self.plan.n_inputs = len(input_bufs)
        self.plan.input_bufs = &index[at]
        at += len(input_bufs)
        self.plan.n_targets = len(target_bufs)
        self.plan.target_bufs = &index[at]
        at += len(target_bufs)
        self.plan.target_classes = &index[at]
        at += len(target_classes)
        self.plan.n_outputs = len(output_bufs)
        self.plan.output_bufs = &index[at]
        at += len(output_bufs)
        self.plan.target_ignore = &index[at] if target_ignore is not None else NULL
        at += len(ignore_pairs)
        self.plan.input_direct = &index[at] if input_direct is not None else NULL
        self.plan.n_losses = n_losses
        self.plan.n_metrics = n_metrics
        self.plan.n_checked = 0
        self.plan.checked_rows = self.checked
        self.plan.hook = NULL
        self.plan.hook_ctx = NULL
        for values, what in ((input_bufs, "input"), (target_bufs, "target"), (output_bufs, "output")):
            for b in values:
                if b < 0 or b >= n_bufs or self.bufs[b].row_size < 1:
                    raise ValueError(f"PlanRunner: {what} buffer {b} is not a batched buffer "
                                     f"of the plan")

        # the feed's pointer arrays, refreshed by `run` when a different array comes
        self.in_ptrs = <const void **>PyMem_Malloc(max(self.plan.n_inputs, 1) * sizeof(void *))
        self.tgt_ptrs = <const void **>PyMem_Malloc(max(self.plan.n_targets, 1) * sizeof(void *))
        self.out_ptrs = <void **>PyMem_Malloc(max(self.plan.n_outputs, 1) * sizeof(void *))
        self.in_rows = <int64_t *>PyMem_Malloc(max(self.plan.n_inputs, 1) * sizeof(int64_t))
        self.tgt_rows = <int64_t *>PyMem_Malloc(max(self.plan.n_targets, 1) * sizeof(int64_t))
        self.out_rows = <int64_t *>PyMem_Malloc(max(self.plan.n_outputs, 1) * sizeof(int64_t))
        if (self.in_ptrs == NULL or self.tgt_ptrs == NULL or self.out_ptrs == NULL or
                self.in_rows == NULL or self.tgt_rows == NULL or self.out_rows == NULL):
            raise MemoryError()
        self.in_objs = [None] * self.plan.n_inputs
        self.tgt_objs = [None] * self.plan.n_targets
        self.out_objs = [None] * self.plan.n_outputs
        self.order_obj = None
        self.order_ptr = NULL
        self.order_len = 0

        # results
        self.step_losses = _np.zeros((max_steps, n_losses), dtype=_np.float64)
        self.step_metrics = _np.zeros((max_steps, n_metrics), dtype=_np.float64)
        self.step_rows = _np.zeros(max_steps, dtype=_np.int64)
        cdef double[:, ::1] lv = self.step_losses
        cdef double[:, ::1] mv = self.step_metrics
        cdef int64_t[::1] rv = self.step_rows
        self.losses_ptr = &lv[0, 0] if n_losses > 0 else NULL
        self.metrics_ptr = &mv[0, 0] if n_metrics > 0 else NULL
        self.rows_ptr = &rv[0]
        self.last_n_steps = -1
        self.last_result = None

    def set_reals(self, Py_ssize_t op_index, values):
        """Replace op `op_index`'s reals in place (the learning rate changes between calls);
        as many values as the op was built with."""
        if op_index < 0 or op_index >= self.plan.n_ops:
            raise ValueError(f"PlanRunner.set_reals: expected 0 <= op_index < {self.plan.n_ops}, "
                             f"received {op_index}")
        offset, count = self._reals_at[op_index]
        if len(values) != count:
            raise ValueError(f"PlanRunner.set_reals: op {op_index} takes {count} reals, "
                             f"received {len(values)}")
        cdef Py_ssize_t j
        for j in range(count):
            self._reals[offset + j] = values[j]
        self.plan.n_checked = 0           # an op's reals may change what it accepts

    def set_hook(self, hook):
        """The callable the plan's OP_GRAD_HOOK ops call, hook(phase, offset, count, rows,
        step) (csrc/pynn.h documents the op), or None: the hook ops do nothing.  It runs
        with the GIL held, between the kernels of a step; an exception it raises ends the
        run and is raised by `run`."""
        if hook is not None and not callable(hook):
            raise TypeError(f"PlanRunner.set_hook: expected a callable or None, received "
                            f"{type(hook).__name__}")
        self._hook = hook
        if hook is None:
            self.plan.hook = NULL
            self.plan.hook_ctx = NULL
        else:
            self.plan.hook = _plan_hook
            self.plan.hook_ctx = <void *>self

    def reals(self, Py_ssize_t op_index):
        """Op `op_index`'s reals (a list)."""
        offset, count = self._reals_at[op_index]
        return [self._reals[offset + j] for j in range(count)]

    cdef int _take(self, object arr, Py_ssize_t j, int role) except -1:
        """Check the data array `arr` for input/target/output j (role 0/1/2) against its
        buffer and remember its pointer and rows.  A NumPy array that passes every check
        is read through one buffer request (a fraction of a microsecond: a call of a few
        rows takes a new output array each time); anything else, or a failed check, goes
        the long way, which gives the messages."""
        cdef int64_t b = (self.plan.input_bufs[j] if role == 0 else
                          self.plan.target_bufs[j] if role == 1 else self.plan.output_bufs[j])
        cdef int64_t row_size = self.bufs[b].row_size
        cdef Py_buffer view
        cdef void *data = NULL
        cdef int64_t rows = -1
        if type(arr) is _np.ndarray:
            try:
                PyObject_GetBuffer(arr, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
            except BufferError:
                pass                # not C-contiguous: the long way says so
            else:
                if (view.ndim >= 1 and _buffer_dtype(&view) == self.bufs[b].dtype and
                        view.len == view.shape[0] * row_size * view.itemsize and
                        (role != 2 or not view.readonly)):
                    data = view.buf
                    rows = view.shape[0]
                PyBuffer_Release(&view)
        if rows >= 0:
            self._keep_array(arr, data, rows, j, role)
            return 0
        return self._take_checked(arr, j, role, b, row_size)

    cdef int _keep_array(self, object arr, void *data, int64_t rows, Py_ssize_t j,
                         int role) except -1:
        if role == 0:
            self.in_ptrs[j] = data
            self.in_rows[j] = rows
            self.in_objs[j] = arr
        elif role == 1:
            self.tgt_ptrs[j] = data
            self.tgt_rows[j] = rows
            self.tgt_objs[j] = arr
        else:
            self.out_ptrs[j] = data
            self.out_rows[j] = rows
            self.out_objs[j] = arr
        return 0

    cdef int _take_checked(self, object arr, Py_ssize_t j, int role, int64_t b,
                           int64_t row_size) except -1:
        cdef str what = ("input", "target", "output")[role]
        cdef int code = _dtype_code(arr, f"{what} {j}")
        if code != self.bufs[b].dtype:
            raise ValueError(f"PlanRunner.run: {what} {j} has dtype {arr.dtype}, expected "
                             f"{'float32' if self.bufs[b].dtype == PYNN_DTYPE_F32 else 'int64'}")
        if arr.ndim < 1 or arr.size != arr.shape[0] * row_size:
            raise ValueError(f"PlanRunner.run: expected {what} {j} of shape (n, ...) with "
                             f"{row_size} elements per row, received shape {arr.shape}")
        if role == 2 and not arr.flags.writeable:
            raise ValueError(f"PlanRunner.run: output {j} must be writeable")
        self._keep_array(arr, _array_data(arr), arr.shape[0], j, role)
        return 0

    cdef int _check_rows(self, int64_t rows) except -1:
        """Check the plan's ops for steps of `rows` rows once (pynn_plan_check) and list the
        row count in the plan, so later runs skip that check."""
        cdef int64_t j
        cdef int status
        for j in range(self.plan.n_checked):
            if self.checked[j] == rows:
                return 0
        if rows < 1 or rows > self.plan.capacity:
            return 0              # pynn_plan_run refuses it, with its message below
        with nogil:
            status = pynn_plan_check(&self.plan, rows)
        if status != PYNN_OK:
            return 0              # not listed: pynn_plan_run checks again and refuses
        if self.plan.n_checked == 8:
            self.plan.n_checked = 0          # many row counts seen: start over
        self.checked[self.plan.n_checked] = rows
        self.plan.n_checked += 1
        self.plan.checked_rows = self.checked
        return 0

    def release(self):
        """Forget the data arrays of the last call (so the runner does not keep them alive)."""
        self.in_objs = [None] * self.plan.n_inputs
        self.tgt_objs = [None] * self.plan.n_targets
        self.out_objs = [None] * self.plan.n_outputs
        self.order_obj = None
        self.order_ptr = NULL

    def run(self, inputs,            # IN  list of (n_rows, ...) arrays, one per input buffer
            targets,                 # IN  list of (n_rows, ...) arrays (labels: (n_rows,) int64), or None
            outputs,                 # OUT list of (>= n_order, ...) arrays, or None
            order,                   # IN  (>= n_order,) int64 row indices, or None: rows in order
            int64_t n_order, int64_t first_row, int64_t batch, int64_t n_steps,
            int64_t iterations, bint check_inputs=False):
        """Run n_steps steps of `batch` rows: step s takes the rows order[first_row + s*batch
        ...] (clipped to n_order) and has step number iterations + s + 1.  Returns
        (step_losses (n_steps, n_losses), step_metrics (n_steps, n_metrics), step_rows
        (n_steps,)): views of arrays this runner reuses, valid until the next call.  On the
        main thread, while pynn.interrupts has armed the SIGINT flag, a Ctrl-C ends the run
        after the step it arrived in: the arrays then hold the steps that ran.
        KernelInputError for a label out of range or (check_inputs) a NaN or infinity in a
        step's inputs or float targets, raised before that step changes anything (the
        steps before it stay applied); ValueError for a malformed plan or bad arguments."""
        cdef Py_ssize_t j
        cdef int64_t n_rows = -1
        cdef const int64_t[::1] ov
        cdef pynn_plan_feed feed
        cdef int status
        cdef int64_t done = 0
        if n_steps < 0 or n_steps > self.max_steps:
            raise ValueError(f"PlanRunner.run: expected 0 <= n_steps <= {self.max_steps}, "
                             f"received {n_steps}")
        if self.plan.n_inputs > 0 or inputs is not None:
            if inputs is None or len(inputs) != self.plan.n_inputs:
                raise ValueError(f"PlanRunner.run: expected {self.plan.n_inputs} input arrays")
            for j in range(self.plan.n_inputs):
                arr = inputs[j]
                if arr is not self.in_objs[j]:
                    self._take(arr, j, 0)
                if n_rows < 0:
                    n_rows = self.in_rows[j]
                elif self.in_rows[j] != n_rows:
                    raise ValueError("PlanRunner.run: the inputs and targets differ in rows")
        if self.plan.n_targets > 0 or targets is not None:
            if targets is None or len(targets) != self.plan.n_targets:
                raise ValueError(f"PlanRunner.run: expected {self.plan.n_targets} target arrays")
            for j in range(self.plan.n_targets):
                arr = targets[j]
                if arr is not self.tgt_objs[j]:
                    self._take(arr, j, 1)
                if n_rows < 0:
                    n_rows = self.tgt_rows[j]
                elif self.tgt_rows[j] != n_rows:
                    raise ValueError("PlanRunner.run: the inputs and targets differ in rows")
        if self.plan.n_outputs > 0 or outputs is not None:
            if outputs is None or len(outputs) != self.plan.n_outputs:
                raise ValueError(f"PlanRunner.run: expected {self.plan.n_outputs} output arrays")
            for j in range(self.plan.n_outputs):
                arr = outputs[j]
                if arr is not self.out_objs[j]:
                    self._take(arr, j, 2)
                if self.out_rows[j] < n_order:
                    raise ValueError(f"PlanRunner.run: output {j} has {self.out_rows[j]} rows, "
                                     f"expected at least n_order = {n_order}")
        if n_rows < 0:
            n_rows = 0
        if order is None:
            self.order_obj = None
            self.order_ptr = NULL
            if n_order > n_rows:
                raise ValueError(f"PlanRunner.run: n_order {n_order} exceeds the {n_rows} rows")
        else:
            if order is not self.order_obj:
                ov = order
                self.order_ptr = &ov[0] if ov.shape[0] > 0 else NULL
                self.order_len = ov.shape[0]
                self.order_obj = order
            if n_order > self.order_len:
                raise ValueError(f"PlanRunner.run: n_order {n_order} exceeds the order's "
                                 f"{self.order_len} entries")
        if n_steps > 0 and 0 <= first_row < n_order:
            # check the ops once per row count: a full step, and the last (shorter) one
            last = min(first_row + n_steps * batch, n_order) - (first_row + (n_steps - 1) * batch)
            if n_steps > 1:
                self._check_rows(batch)
            if last >= 1:
                self._check_rows(last)
        feed.inputs = self.in_ptrs
        feed.targets = self.tgt_ptrs
        feed.outputs = self.out_ptrs
        feed.n_rows = n_rows
        feed.order = self.order_ptr
        feed.n_order = n_order
        feed.stop = _stop_flag()
        feed.steps_done = &done
        with nogil:
            status = pynn_plan_run(&self.plan, &feed, first_row, batch, n_steps, iterations,
                                   check_inputs, self.losses_ptr, self.metrics_ptr,
                                   self.rows_ptr)
        if status == PYNN_EHOOK:
            error, self._hook_error = self._hook_error, None
            if error is None:
                error = RuntimeError("PlanRunner.run: the plan's hook failed")
            raise error
        if status == PYNN_EINVAL:
            raise ValueError("PlanRunner.run: pynn_plan_run refused the plan or the run's "
                             "arguments (an op's operands, counts or buffer sizes, or the rows "
                             "asked for); nothing was changed")
        _check(status, "PlanRunner.run")
        if done < n_steps:            # stopped by Ctrl-C (feed.stop): the steps it ran
            return (self.step_losses[:done], self.step_metrics[:done], self.step_rows[:done])
        if n_steps != self.last_n_steps:
            self.last_result = (self.step_losses[:n_steps], self.step_metrics[:n_steps],
                                self.step_rows[:n_steps])
            self.last_n_steps = n_steps
        return self.last_result

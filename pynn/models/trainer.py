"""The trainer: fit / evaluate / predict / train_on_batch / test_on_batch /
predict_on_batch, with callbacks and progress output, over a model's engine.

Each call checks all its input first (validation.py), then runs the engine's executors:
`fit` hands a whole epoch to one executor call when no callback needs each batch (a
progress bar redrawn on a terminal gets a call per stretch of steps), and one call per
step otherwise.  Both run the same plan, so the weights are bitwise the same either way.
The logs are accumulated step by step in step order in both cases, so the History agrees
too.
"""
import math
import warnings

import numpy as np

from .. import callbacks as callbacks_module
from .. import distributed, interrupts
from ..distributed import training as dist_training
from ..utils import rng
from . import data_source, validation


class NotCompiledError(RuntimeError, ValueError):
    """A model method that needs `compile()` was called first (a RuntimeError as in
    Keras, and a ValueError like every other refused call in pynn)."""


class _Accumulator:
    """Running sums of an epoch (or an evaluation): loss, per-output losses, metrics."""

    def __init__(self, plan, losses, world=None):
        self.plan = plan
        self.world = world                  # distributed: logs() sums over the ranks
        self.weights = np.asarray(plan.loss_weights, dtype=np.float64)
        self.loss_sum = 0.0
        self.loss_sums = [0.0] * plan.n_losses
        self.metric_sums = [0.0] * plan.n_metrics
        self.seen = 0
        self.keys = losses.log_keys()

    def add(self, step_losses, step_metrics, step_rows):
        """Add steps in order (a sequential sum, the same for one step or many)."""
        rows = step_rows.astype(np.float64)
        totals = step_losses @ self.weights if self.plan.n_losses else np.zeros(len(rows))
        self.loss_sum = _sequential_sum(self.loss_sum, totals * rows)
        for j in range(self.plan.n_losses):
            self.loss_sums[j] = _sequential_sum(self.loss_sums[j], step_losses[:, j] * rows)
        for j in range(self.plan.n_metrics):
            self.metric_sums[j] = _sequential_sum(self.metric_sums[j], step_metrics[:, j])
        self.seen += int(step_rows.sum())
        if len(step_rows):                  # engineer F: layer.losses after a step
            for layer, slot in self.plan.activity_slots:
                layer._activity_losses = [float(step_losses[-1, slot])]

    def state(self):
        """The running sums, as JSON can hold them (a mid-epoch backup)."""
        return {"loss": self.loss_sum, "losses": list(self.loss_sums),
                "metrics": list(self.metric_sums), "seen": self.seen}

    def restore(self, state):
        """Running sums from state(); the counts must fit this plan (else left at zero)."""
        if isinstance(state, dict) and len(state.get("losses", ())) == len(self.loss_sums) \
                and len(state.get("metrics", ())) == len(self.metric_sums):
            self.loss_sum = float(state["loss"])
            self.loss_sums = [float(v) for v in state["losses"]]
            self.metric_sums = [float(v) for v in state["metrics"]]
            self.seen = int(state["seen"])

    def logs(self):
        """The logs of the steps so far; distributed, of every rank's steps (the sums added
        over the ranks: the averages weighted by the ranks' samples).  A collective then:
        every rank calls it at the same points."""
        loss_sum, loss_sums, metric_sums, seen = \
            self.loss_sum, self.loss_sums, self.metric_sums, self.seen
        if self.world is not None:
            total = dist_training.sum_logs(self.world, [loss_sum] + list(loss_sums) +
                                           list(metric_sums) + [seen])
            k = len(loss_sums)
            loss_sum, loss_sums = float(total[0]), [float(v) for v in total[1:1 + k]]
            metric_sums = [float(v) for v in total[1 + k:-1]]
            seen = int(round(total[-1]))
        values = {"loss": loss_sum / max(seen, 1)}
        for metric, ops, positions in self.plan.metric_groups:
            values[metric.key] = metric.value([metric_sums[i] for i in ops], seen, positions)
        if self.plan.n_losses > 1:
            for key, total in zip(self.plan.loss_names, loss_sums):
                # setdefault: a single output's loss slot, also named "loss", beside the
                # penalties' slots (engineer F) must not replace the total
                values.setdefault(key, total / max(seen, 1))
        return {k: values[k] for k in self.keys if k in values}


class _Position:
    """Where a fit is, for a backup that resumes it bitwise (BackupAndRestore):
      epoch, step   the epoch running and the steps of it done (0 at an epoch's end, epoch
                    then being the next one)
      seen          batches of the current pass over the data done before this epoch
      pass_rng      the random generator's state the pass's order was drawn from (kept
                    only when `wanted`: a callback asked for it)
      sums          the epoch's running sums so far (its logs)"""

    def __init__(self):
        self.wanted = False
        self.epoch = self.step = self.seen = 0
        self.pass_rng = None
        self._acc = None

    def at(self, epoch, seen, acc):
        self.epoch, self.seen, self.step, self._acc = epoch, seen, 0, acc

    def end_of_epoch(self, epoch, seen):
        self.epoch, self.step, self._acc = epoch + 1, 0, None
        if seen == 0:                       # the next epoch starts a new pass
            self.seen = 0
            self.pass_rng = rng().bit_generator.state if self.wanted else None
        else:
            self.seen = seen

    def snapshot(self):
        """A JSON-ready dict of the position."""
        return {"epoch": self.epoch, "step": self.step, "seen": self.seen,
                "rng": self.pass_rng, "sums": self._acc.state() if self._acc else None}


class Resume:
    """A position to resume from (what BackupAndRestore read): set as model._resume in
    on_train_begin."""

    def __init__(self, snapshot):
        self.seen, self.step = int(snapshot["seen"]), int(snapshot["step"])
        self.rng_state, self.sums = snapshot["rng"], snapshot.get("sums")


def _sequential_sum(start, values):
    if len(values) == 0:
        return start
    return float(np.cumsum(np.concatenate(([start], values)))[-1])


class Trainer:
    """fit / evaluate / predict for one model (Model delegates to it)."""

    def __init__(self, model):
        self.model = model
        self._inference_steps = 0

    def _fast_batch(self, x, y):
        """(engine, [x], [y]) when a training step needs no conversion of its data: a
        compiled model with one input and one loss, x a float32 C-contiguous batch of the
        input's shape and y already what the loss reads (int64 labels or float32 rows).  The
        C step itself then checks the values (finite numbers, labels in range) before it
        changes anything, so a small network's step is not dominated by input checking;
        what it refuses goes through the general checks and their messages."""
        engine = self.model.engine
        if type(x) is not np.ndarray or type(y) is not np.ndarray:
            return None
        want = engine.fast_batch_signature()
        if want is None:
            return None
        x_dtype, x_shape, y_dtype, y_shape = want
        if x.dtype is not x_dtype or x.shape[1:] != x_shape or y.dtype is not y_dtype or \
                y.shape[1:] != y_shape or x.shape[0] != y.shape[0] or not x.shape[0] or \
                not x.flags.c_contiguous or not y.flags.c_contiguous:
            return None
        return engine, [x], [y]

    # ---- checks -----------------------------------------------------------------------
    def _require_compiled(self, where):
        engine = self.model.engine
        if not engine.compiled:
            raise NotCompiledError(f"{where}: you must call compile() before using model "
                                   f"'{self.model.name}' to train or evaluate")
        self.model.ensure_graph(None, where)
        if not engine.losses.has_loss:
            raise ValueError(f"{where}: model '{self.model.name}' was compiled without a loss; "
                             "pass loss= to compile()")
        return engine

    def _prepare(self, x, y, where, names=("x", "y")):
        model = self.model
        model.ensure_graph(x, where)
        engine = self._require_compiled(where)
        inputs = validation.model_inputs(model, x, where, names[0])
        targets = validation.model_targets(model, engine.losses, y, inputs[0].shape[0], where,
                                           names[1])
        return engine, inputs, targets

    # ---- fit ----------------------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, validation_freq=1):
        model = self.model
        where = f"{type(model).__name__}.fit ('{model.name}')"
        batch_size = validation.check_batch_size(batch_size, where)
        if steps_per_epoch is not None:
            steps_per_epoch = validation.check_int(steps_per_epoch, "steps_per_epoch", where, 1)
        if validation_steps is not None:
            validation_steps = validation.check_int(validation_steps, "validation_steps", where,
                                                    1)
        val_batch = batch_size if validation_batch_size is None else \
            validation.check_batch_size(validation_batch_size, where, "validation_batch_size")
        epochs = validation.check_int(epochs, "epochs", where, 0)
        initial_epoch = validation.check_int(initial_epoch, "initial_epoch", where, 0)
        validation_freq = validation.check_int(validation_freq, "validation_freq", where, 1)
        verbose = validation.check_verbose(verbose, where)
        if isinstance(validation_split, bool) or not isinstance(validation_split, (int, float)) \
                or not 0.0 <= validation_split < 1.0:
            raise ValueError(f"{where}: expected validation_split in [0, 1), received "
                             f"{validation_split!r}")
        if not isinstance(shuffle, (bool, np.bool_)):
            raise ValueError(f"{where}: expected shuffle to be a bool, received {shuffle!r}")
        callbacks = _checked_callbacks(callbacks, where)
        world = distributed.active()
        if world is not None and val_batch < world.size:
            dist_training.check_data(world, [], val_batch, where)
        if data_source.is_stream(x):
            return self._fit_stream(x, y, sample_weight, class_weight, validation_split,
                                    validation_data, shuffle, epochs, initial_epoch,
                                    validation_freq, verbose, callbacks, steps_per_epoch,
                                    validation_steps, val_batch, where)
        engine, inputs, targets = self._prepare(x, y, where)
        weights = validation.sample_weights(model, engine.losses, targets, sample_weight,
                                            class_weight, inputs[0].shape[0], where)
        val = None
        if validation_data is not None:
            val = self._validation_source(validation_data, where)
        elif validation_split > 0:
            # Keras takes the validation samples from the end, before any shuffling.
            n = inputs[0].shape[0]
            split = int(n * (1.0 - validation_split))
            if split < 1 or split >= n:
                raise ValueError(f"{where}: validation_split={validation_split} leaves "
                                 f"{split} training and {n - split} validation samples "
                                 f"out of {n}; both must be at least one")
            # the weights are split with the data; class weights weigh training alone (Keras)
            val_weights = validation.slice_rows(weights, split, n) \
                if weights is not None and sample_weight is not None else None
            val = (validation.slice_rows(inputs, split, n), validation.slice_rows(targets, split, n),
                   val_weights)
            inputs, targets = validation.slice_rows(inputs, 0, split), \
                validation.slice_rows(targets, 0, split)
            if weights is not None:
                weights = validation.slice_rows(weights, 0, split)
        kind = "train"
        if weights is not None:               # the weights are fed after the targets
            targets, kind = targets + weights, "train+weights"
        world = distributed.active()
        if world is not None:
            dist_training.check_data(world, inputs + targets, batch_size, where)
            if val is not None and not isinstance(val, data_source.Stream):
                dist_training.check_data(world, val[0] + val[1] + (val[2] or []), val_batch,
                                         where + " (validation data)")
        # Everything is checked: from here on the model changes.
        with engine.train_lock, interrupts.guard():
            return self._fit_loop(engine, inputs, targets, val, val_batch, batch_size, epochs,
                                  initial_epoch, validation_freq, verbose, shuffle, callbacks,
                                  steps_per_epoch, validation_steps, kind)

    def _fit_loop(self, engine, inputs, targets, val, val_batch, batch_size, epochs,
                  initial_epoch, validation_freq, verbose, shuffle, callbacks,
                  steps_per_epoch=None, validation_steps=None, kind="train"):
        """fit's epochs.  A Ctrl-C ends it after the step it arrived in (interrupts.py),
        once that step is counted: the optimizer's iterations count the steps applied and
        the History holds the epochs completed.

        steps_per_epoch, as Keras 3 runs it on arrays: an epoch is that many batches of a
        pass over the data that goes on from epoch to epoch; when the pass ends inside an
        epoch, that epoch ends there (with Keras's warning) and the next starts a new pass,
        shuffled anew."""
        model = self.model
        world = distributed.active()
        n = inputs[0].shape[0]
        batch_size = min(batch_size, n)     # Keras: a batch_size beyond the data is one batch
        if world is not None and batch_size < world.size:
            dist_training.check_data(world, [], batch_size, "fit")
        # distributed: each rank runs its part of every batch (at most ceil(B / N) rows)
        local_batch = batch_size if world is None else -(-batch_size // world.size)
        kind = engine.shaped(kind, inputs, targets)
        ex = engine.executor(kind, local_batch)
        num_batches = math.ceil(n / batch_size)
        steps = steps_per_epoch or num_batches
        history, progbar, cb_list, position, start, resume = self._start_fit(
            callbacks, verbose, {"epochs": epochs, "steps": steps, "verbose": verbose,
                                 "batch_size": batch_size})
        if world is not None:               # rank 0's weights, state and position everywhere
            start, resume = dist_training.sync_position(world, engine.optimizer, start, resume)
            dist_training.sync_weights(world, engine)
        # a callback may have restored a later epoch (BackupAndRestore), as in Keras, or a
        # step inside one: the pass's order is drawn again from the generator state it was
        # drawn from, and the epoch goes on after the last step saved
        initial_epoch = start or initial_epoch
        per_batch = cb_list.wants_batch_hooks
        optimizer = engine.optimizer
        logs = None
        seen, order = 0, None               # batches of the current pass already trained
        for epoch in range(initial_epoch, epochs):
            cb_list.on_epoch_begin(epoch)
            s0 = 0
            if resume is not None:
                seen, s0 = resume.seen, resume.step
                rng().bit_generator.state = resume.rng_state
                position.pass_rng = resume.rng_state
                if shuffle:
                    order = rng().permutation(n).astype(np.int64)
            elif seen == 0:                 # a new pass over the data
                position.pass_rng = rng().bit_generator.state if position.wanted else None
                order = rng().permutation(n).astype(np.int64) if shuffle else None
            steps = min(steps_per_epoch or num_batches, num_batches - seen)
            shard = None if world is None else \
                dist_training.Shard(order, n, batch_size, world)
            acc = _Accumulator(ex.plan, engine.losses, world)
            if resume is not None:
                acc.restore(resume.sums)
                resume = None
            position.at(epoch, seen, acc)
            if per_batch or optimizer.steps_in_python:
                stretch = 1                   # a callable learning rate: called per step
            elif progbar is not None and progbar.redraws and world is None:
                stretch = max(1, steps // 20)
            else:
                stretch = steps
            while s0 < steps:
                k = min(stretch, steps - s0)
                if per_batch:
                    cb_list.on_train_batch_begin(s0)
                    interrupts.check()
                if world is None:
                    ex = engine.executor(kind, batch_size)
                    losses, metrics, rows = ex.run(inputs, targets, None, order, n,
                                                   (seen + s0) * batch_size, batch_size, k,
                                                   optimizer.iterations)
                else:
                    ex = engine.executor(kind, local_batch)
                    losses, metrics, rows = dist_training.run_steps(
                        ex, inputs, targets, None, shard, seen + s0, k, optimizer.iterations,
                        True)
                done = len(rows)              # k, unless a Ctrl-C stopped the run early
                if ex.plan.optimizer_op is not None:
                    optimizer.iterations += done
                acc.add(losses, metrics, rows)
                s0 += done
                position.step = s0
                if s0 == steps:
                    break                     # the epoch's steps are done: finish it below
                interrupts.check()
                if done == k:
                    cb_list.on_train_batch_end(s0 - 1, acc.logs())
                    interrupts.check()
                if model.stop_training:
                    break
            seen = 0 if seen + s0 >= num_batches else seen + s0
            if steps_per_epoch is not None and s0 < steps_per_epoch and not model.stop_training:
                warnings.warn("Your input ran out of data; interrupting epoch. Make sure that "
                              "your dataset can generate at least `steps_per_epoch * epochs` "
                              "batches.", stacklevel=3)
            # the end of the epoch, also when a Ctrl-C came during its last step: without
            # validation the History and the backups then have the epoch its steps completed
            if s0 == steps:
                with interrupts.hold():
                    cb_list.on_train_batch_end(s0 - 1, acc.logs())
            logs = acc.logs()
            if world is not None:
                dist_training.average_state(world, engine)
            if self._end_epoch(cb_list, position, epoch, seen, logs, val, validation_freq,
                               val_batch, validation_steps):
                break
        return self._finish_fit(cb_list, history, logs, epochs > 0)       # as Keras 3

    # ---- what the arrays' and the streams' fit loops share ------------------------------------
    def _start_fit(self, callbacks, verbose, params):
        """A fit's History, progress bar and CallbackList, with on_train_begin run: (history,
        progbar, callback list, position, the epoch a callback said to start from or None,
        the position inside it to resume from or None) -- what BackupAndRestore restored."""
        model = self.model
        history = callbacks_module.History()
        progbar = callbacks_module.ProgbarLogger(verbose) if verbose else None
        cbs = ([progbar] if progbar else []) + callbacks + [history]
        world = distributed.active()
        if world is not None:               # only rank 0 prints and writes files
            cbs = dist_training.rank0_only(world, cbs)
        cb_list = callbacks_module.CallbackList(cbs, model, params)
        model.stop_training = False
        model._initial_epoch = model._resume = None
        position = _Position()
        model._fit_position = position      # where the fit is (BackupAndRestore saves it)
        cb_list.on_train_begin()
        start, resume = model._initial_epoch, model._resume
        model._initial_epoch = model._resume = None
        return history, progbar, cb_list, position, start, resume

    def _end_epoch(self, cb_list, position, epoch, seen, logs, val, validation_freq,
                   val_batch, validation_steps):
        """The end of an epoch whose training logs are `logs`: validation when due (it is
        interrupted between its steps like training; the epoch then has not ended: no
        History entry, no end-of-epoch callbacks), the position for backups, the epoch-end
        callbacks.  True when training is to stop."""
        if val is not None and (epoch + 1) % validation_freq == 0:
            val_logs = self._validate(val, epoch, val_batch, validation_steps, cb_list)
            logs.update({"val_" + k: v for k, v in val_logs.items()})
        position.end_of_epoch(epoch, seen)
        with interrupts.hold():
            cb_list.on_epoch_end(epoch, logs)
        interrupts.check()
        return self.model.stop_training

    def _finish_fit(self, cb_list, history, logs, trained):
        model = self.model
        if trained:                         # Keras 3: the EMA replaces the weights (use_ema)
            model.engine.optimizer.finalize_variable_values(model.trainable_weights)
        cb_list.on_train_end(logs)          # the last epoch's logs, as Keras passes them
        model._fit_position = None
        model.history = history
        return history

    def _validation_source(self, data, where):
        """validation_data, checked once before training: a Stream, or the prepared arrays
        (inputs, targets, sample weights or None) of (x_val, y_val[, val_sample_weight])."""
        if data_source.is_stream(data):
            return data_source.Stream(data, where, "validation_data")
        if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
            raise ValueError(f"{where}: expected validation_data as a tuple (x_val, y_val) or "
                             "(x_val, y_val, val_sample_weight), a dataset or a generator, "
                             f"received {type(data).__name__}"
                             + (f" of {len(data)} items" if isinstance(data, (tuple, list))
                                else ""))
        engine, vin, vtg = self._prepare(data[0], data[1], where, ("x_val", "y_val"))
        vw = None
        if len(data) == 3 and data[2] is not None:
            vw = validation.sample_weights(self.model, engine.losses, vtg, data[2], None,
                                           vin[0].shape[0], where, "val_sample_weight")
        return vin, vtg, vw

    def _validate(self, val, epoch, batch_size, steps, cb_list):
        """Epoch `epoch`'s validation logs from a _validation_source."""
        if isinstance(val, data_source.Stream):
            return self._evaluate_stream(val, epoch, steps, None, cb_list, val.where)
        vin, vtg, vw = val
        return self._evaluate_arrays(self.model.engine, vin, vtg if vw is None else vtg + vw,
                                     batch_size, callbacks=cb_list, steps=steps,
                                     kind="test" if vw is None else "test+weights")

    # ---- evaluate -------------------------------------------------------------------------
    def _evaluate_arrays(self, engine, inputs, targets, batch_size, progbar=None,
                         callbacks=None, steps=None, kind="test"):
        """The logs of one pass over the data (the first `steps` batches if given), with
        the on_test_* hooks of `callbacks` (a CallbackList) run as Keras runs them.  kind
        "test+weights": the sample weights follow the targets in `targets`."""
        n = inputs[0].shape[0]
        batch_size = min(batch_size, n)
        steps = math.ceil(n / batch_size) if steps is None else \
            min(steps, math.ceil(n / batch_size))
        n = min(n, steps * batch_size)
        world = distributed.active()
        shard = None if world is None else dist_training.Shard(None, n, batch_size, world)
        per_batch = callbacks is not None and callbacks.wants_every_batch("test")
        if callbacks is not None:
            callbacks.on_test_begin()
        kind = engine.shaped(kind, inputs, targets, "evaluate")
        with interrupts.guard(), engine.borrow(kind, batch_size if shard is None
                                               else max(shard.batch, 1)) as ex:
            acc = _Accumulator(ex.plan, engine.losses, world)
            stretch = 1 if per_batch or (progbar is not None and progbar.interactive and
                                         world is None) else steps
            s0 = 0
            while s0 < steps:
                k = min(stretch, steps - s0)
                if per_batch:
                    callbacks.on_test_batch_begin(s0)
                if shard is None:
                    losses, metrics, rows = ex.run(inputs, targets, None, None, n,
                                                   s0 * batch_size, batch_size, k, 0)
                else:
                    losses, metrics, rows = dist_training.run_steps(
                        ex, inputs, targets, None, shard, s0, k, 0, False)
                acc.add(losses, metrics, rows)
                interrupts.check()
                s0 += len(rows)
                if callbacks is not None:
                    callbacks.on_test_batch_end(s0 - 1, acc.logs())
                if progbar is not None:
                    progbar.update(s0, acc.logs())
        logs = acc.logs()
        if progbar is not None:
            progbar.update(steps, logs, final=True)
        if callbacks is not None:
            callbacks.on_test_end(logs)
        return logs

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 steps=None, callbacks=None, return_dict=False):
        model = self.model
        where = f"{type(model).__name__}.evaluate ('{model.name}')"
        batch_size = validation.check_batch_size(batch_size, where)
        verbose = validation.check_verbose(verbose, where)
        return_dict = validation.check_bool(return_dict, "return_dict", where)
        if steps is not None:
            steps = validation.check_int(steps, "steps", where, 1)
        callbacks = _checked_callbacks(callbacks, where)
        if data_source.is_stream(x):
            stream = self._stream(x, y, sample_weight, None, where)
            cb_list = callbacks_module.CallbackList(
                callbacks, model, {"verbose": verbose, "epochs": 1,
                                   "steps": _min_known(stream.length(), steps)})
            bar = callbacks_module.Progbar(_min_known(stream.length(), steps),
                                           verbose if distributed.rank() == 0 else 0) \
                if verbose else None
            logs = self._evaluate_stream(stream, 0, steps, bar, cb_list, where)
            return logs if return_dict else _flatten_in_keras_order(logs, model.engine.losses)
        engine, inputs, targets = self._prepare(x, y, where)
        n = inputs[0].shape[0]
        weights = validation.sample_weights(model, engine.losses, targets, sample_weight, None,
                                            n, where)
        total = math.ceil(n / min(batch_size, n))
        total = total if steps is None else min(total, steps)
        world = distributed.active()
        if world is not None:
            dist_training.check_data(world, inputs + targets + (weights or []),
                                     min(batch_size, n), where)
            callbacks = dist_training.rank0_only(world, callbacks)
        cb_list = callbacks_module.CallbackList(callbacks, model,
                                                {"verbose": verbose, "epochs": 1, "steps": total})
        bar = callbacks_module.Progbar(total, verbose if distributed.rank() == 0 else 0) \
            if verbose else None
        logs = self._evaluate_arrays(engine, inputs, targets if weights is None else
                                     targets + weights, batch_size, bar, cb_list, steps,
                                     "test" if weights is None else "test+weights")
        return logs if return_dict else _flatten_in_keras_order(logs, engine.losses)

    # ---- predict --------------------------------------------------------------------------
    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        model = self.model
        where = f"{type(model).__name__}.predict ('{model.name}')"
        batch_size = validation.check_batch_size(batch_size, where)
        verbose = validation.check_verbose(verbose, where)
        if steps is not None:
            steps = validation.check_int(steps, "steps", where, 1)
        callbacks = _checked_callbacks(callbacks, where)
        if not verbose and steps is None and not callbacks and type(x) is np.ndarray and \
                x.ndim and x.shape[0] <= batch_size:
            out = self._lean_predict(x)       # one quiet batch: predict_on_batch's path
            if out is not None:
                return out
        if data_source.is_stream(x):
            return self._predict_stream(data_source.Stream(x, where), steps, verbose,
                                        callbacks, where)
        model.ensure_graph(x, where)
        inputs = validation.model_inputs(model, x, where)
        if steps is not None:             # the first `steps` batches, as Keras
            keep = min(inputs[0].shape[0], steps * batch_size)
            inputs = validation.slice_rows(inputs, 0, keep)
        n = inputs[0].shape[0]
        cb_list = None
        if callbacks:
            cb_list = callbacks_module.CallbackList(
                callbacks, model,
                {"verbose": verbose, "epochs": 1, "steps": math.ceil(n / min(batch_size, n))})
        return self._predict_arrays(inputs, batch_size, verbose, "predict", cb_list)

    def _predict_arrays(self, inputs, batch_size, verbose, kind, callbacks=None):
        model = self.model
        engine = model.engine
        n = inputs[0].shape[0]
        batch_size = min(batch_size, n)
        kind = engine.shaped(kind, inputs)
        outputs = _output_arrays(engine.plan(kind), n)
        steps = math.ceil(n / batch_size)
        bar = callbacks_module.Progbar(steps, verbose) if verbose else None
        per_batch = callbacks is not None and callbacks.wants_every_batch("predict")
        stretch = 1 if per_batch or (bar is not None and bar.interactive) else steps
        with engine.lock:                   # dropout called with training=True draws anew
            counter = self._inference_steps
            self._inference_steps += steps
        if callbacks is not None:
            callbacks.on_predict_begin()
        with interrupts.guard(), engine.borrow(kind, batch_size) as ex:
            s0 = 0
            while s0 < steps:
                k = min(stretch, steps - s0)
                if per_batch:
                    callbacks.on_predict_batch_begin(s0)
                _, _, rows = ex.run(inputs, [], outputs, None, n, s0 * batch_size, batch_size,
                                    k, counter + s0)
                interrupts.check()
                r0, s0 = s0 * batch_size, s0 + len(rows)
                if callbacks is not None:      # Keras: {"outputs": the batch's predictions}
                    r1 = min(s0 * batch_size, n)
                    callbacks.on_predict_batch_end(
                        s0 - 1, {"outputs": model.pack_outputs([o[r0:r1] for o in outputs])})
                if bar is not None:
                    bar.update(s0, final=s0 == steps)
        if callbacks is not None:
            callbacks.on_predict_end()
        return model.pack_outputs(outputs)

    # ---- streams: datasets, PyDatasets, generators (data_source.py) ----------------------
    def _stream(self, x, y, sample_weight, class_weight, where, shuffle=False):
        """x as a Stream, with Keras's refusals of what must come inside it."""
        stream = data_source.Stream(x, where, shuffle=shuffle)
        for name, value, what in (("y", y, "the targets"),
                                  ("sample_weight", sample_weight, "the sample weights")):
            if value is not None:
                raise ValueError(f"{where}: when providing x as a {stream.kind}, `{name}` "
                                 f"should not be passed; {what} should be included as part "
                                 f"of the {stream.kind}")
        if class_weight is not None and stream.once:
            raise ValueError(f"{where}: `class_weight` is not supported for Python generator "
                             f"inputs, received class_weight={class_weight!r:.80}")
        return stream

    def _stream_batch(self, batch, class_weight, where, need_targets=True):
        """One streamed batch checked and converted as arrays are: (engine, inputs,
        targets with the sample weights after them, plan kind suffix)."""
        x, y, w = data_source.unpack(batch, where)
        model = self.model
        model.ensure_graph(x, where)
        engine = self._require_compiled(where)
        inputs = validation.model_inputs(model, x, where, "x")
        if not need_targets:
            return engine, inputs, None, ""
        targets = validation.model_targets(model, engine.losses, y, inputs[0].shape[0], where,
                                           "y")
        weights = validation.sample_weights(model, engine.losses, targets, w, class_weight,
                                            inputs[0].shape[0], where)
        if weights is None:
            return engine, inputs, targets, ""
        return engine, inputs, targets + weights, "+weights"

    def _fit_stream(self, x, y, sample_weight, class_weight, validation_split,
                    validation_data, shuffle, epochs, initial_epoch, validation_freq, verbose,
                    callbacks, steps_per_epoch, validation_steps, val_batch, where):
        """fit on a stream: each batch is one step of the same plans as arrays' (one C call
        per batch; the dataset prepares the next batches meanwhile).  steps_per_epoch as
        Keras 3: the batches of one pass go on from epoch to epoch, and an epoch that finds
        the pass ended ends there (with Keras's warning); the next starts a new pass."""
        model = self.model
        stream = self._stream(x, y, sample_weight, class_weight, where, shuffle)
        if validation_split:
            raise ValueError(f"{where}: validation_split is only supported for arrays, not a "
                             f"{stream.kind}; pass validation_data instead")
        if shuffle and stream.kind != "PyDataset":      # Keras's warning
            warnings.warn(f"`shuffle=True` was passed, but will be ignored since the data `x` "
                          f"was provided as a {stream.kind}. The {stream.kind} is expected to "
                          "already be shuffled.", stacklevel=3)
        engine = model.engine
        if not engine.compiled:
            raise NotCompiledError(f"{where}: you must call compile() before using model "
                                   f"'{model.name}' to train or evaluate")
        val = None if validation_data is None else \
            self._validation_source(validation_data, where)
        steps = steps_per_epoch or stream.length()
        with engine.train_lock, interrupts.guard():
            history, _, cb_list, position, start, resume = self._start_fit(
                callbacks, verbose, {"epochs": epochs, "steps": steps, "verbose": verbose})
            world = distributed.active()
            synced = world is None          # rank 0's weights: once the first batch built it
            if world is not None:
                start, resume = dist_training.sync_position(world, engine.optimizer, start,
                                                            resume)
            initial_epoch = start or initial_epoch
            logs, iterator, passes = None, None, 0
            for epoch in range(initial_epoch, epochs):
                cb_list.on_epoch_begin(epoch)
                if steps_per_epoch is None or iterator is None:
                    passes = max(passes, epoch)
                    iterator = iter(stream.epoch(passes))
                    passes += 1
                acc, s = None, 0
                if resume is not None:      # a backup inside this epoch: its batches again
                    for _ in range(resume.step):
                        next(iterator, None)
                    s = resume.step
                position.at(epoch, 0, None)
                while steps_per_epoch is None or s < steps_per_epoch:
                    try:
                        batch = next(iterator)
                    except StopIteration:
                        iterator = None
                        if steps_per_epoch is not None:
                            warnings.warn("Your input ran out of data; interrupting epoch. "
                                          "Make sure that your dataset or generator can "
                                          "generate at least `steps_per_epoch * epochs` "
                                          "batches.", stacklevel=3)
                        break
                    engine, inputs, targets, suffix = self._stream_batch(batch, class_weight,
                                                                         where)
                    n = inputs[0].shape[0]
                    if world is not None:   # this rank's part of the batch
                        if n < world.size:
                            dist_training.check_data(world, [], n, where + ", a batch of the "
                                                     f"{stream.kind}")
                        if not synced:
                            dist_training.sync_weights(world, engine)
                            synced = True
                        if s == 0:          # the ranks must read the same batches
                            dist_training.check_same_batch(world, inputs, stream.kind)
                        inputs = dist_training.slice_batch(world, inputs)
                        targets = dist_training.slice_batch(world, targets)
                        n = inputs[0].shape[0]
                    cb_list.on_train_batch_begin(s)
                    interrupts.check()
                    kind = engine.shaped("train" + suffix, inputs, targets)
                    ex = engine.executor(kind, max(n, 1))
                    optimizer = engine.optimizer
                    if n:
                        losses, metrics, rows = ex.run(inputs, targets, None, None, n, 0, n, 1,
                                                       optimizer.iterations)
                    else:                   # no rows here: the exchange and the update only
                        losses, metrics, rows = dist_training.run_steps(
                            ex, inputs, targets, None, dist_training.EMPTY_STEP, 0, 1,
                            optimizer.iterations, True)
                    if ex.plan.optimizer_op is not None:
                        optimizer.iterations += len(rows)
                    if acc is None:
                        acc = _Accumulator(ex.plan, engine.losses, world)
                        if resume is not None:
                            acc.restore(resume.sums)
                        position.at(epoch, 0, acc)
                    resume = None
                    acc.add(losses, metrics, rows)
                    s += 1
                    position.step = s
                    interrupts.check()
                    cb_list.on_train_batch_end(s - 1, acc.logs())
                    interrupts.check()
                    if model.stop_training:
                        break
                if acc is None:
                    raise ValueError(
                        f"{where}: the {stream.kind} gave no batches in epoch {epoch + 1}"
                        + ("; a generator can be iterated only once: pass steps_per_epoch for "
                           "an endless generator, or a dataset" if stream.once else ""))
                logs = acc.logs()
                if self._end_epoch(cb_list, position, epoch, 0, logs, val, validation_freq,
                                   val_batch, validation_steps):
                    break
            return self._finish_fit(cb_list, history, logs, epochs > 0)   # as Keras 3

    def _evaluate_stream(self, stream, pass_index, steps, progbar, callbacks, where):
        """The logs of one pass over a stream (its first `steps` batches if given)."""
        if callbacks is not None:
            callbacks.on_test_begin()
        acc, s = None, 0
        with interrupts.guard():
            for batch in stream.epoch(pass_index):
                if steps is not None and s >= steps:
                    break
                engine, inputs, targets, suffix = self._stream_batch(batch, None, where)
                world = distributed.active()
                if world is not None:           # this rank's part of the batch
                    inputs = dist_training.slice_batch(world, inputs)
                    targets = dist_training.slice_batch(world, targets)
                n = inputs[0].shape[0]
                if callbacks is not None:
                    callbacks.on_test_batch_begin(s)
                kind = engine.shaped("test" + suffix, inputs, targets, where)
                if acc is None:
                    acc = _Accumulator(engine.plan(kind), engine.losses, world)
                if n:
                    with engine.borrow(kind, n) as ex:
                        losses, metrics, rows = ex.run(inputs, targets, None, None, n, 0, n, 1,
                                                       0)
                        acc.add(losses, metrics, rows)
                s += 1
                interrupts.check()
                if callbacks is not None:
                    callbacks.on_test_batch_end(s - 1, acc.logs())
                if progbar is not None:
                    progbar.update(s, acc.logs())
        if acc is None:
            raise ValueError(f"{where}: the {stream.what} {stream.kind} gave no batches"
                             + ("; a generator can be iterated only once: pass "
                                "validation_steps, or a dataset" if stream.once else ""))
        logs = acc.logs()
        if progbar is not None:
            if progbar.target is None:
                progbar.target = s
            progbar.update(s, logs, final=True)
        if callbacks is not None:
            callbacks.on_test_end(logs)
        return logs

    def _predict_stream(self, stream, steps, verbose, callbacks, where):
        model = self.model
        cb_list = callbacks_module.CallbackList(
            callbacks, model, {"verbose": verbose, "epochs": 1,
                               "steps": _min_known(stream.length(), steps)}) \
            if callbacks else None
        bar = callbacks_module.Progbar(_min_known(stream.length(), steps), verbose) \
            if verbose else None
        parts, s = [], 0
        if cb_list is not None:
            cb_list.on_predict_begin()
        with interrupts.guard():
            for batch in stream.epoch(0):
                if steps is not None and s >= steps:
                    break
                engine, inputs, _, _ = self._stream_batch(batch, None, where, need_targets=False)
                n = inputs[0].shape[0]
                if cb_list is not None:
                    cb_list.on_predict_batch_begin(s)
                with engine.lock:
                    counter = self._inference_steps
                    self._inference_steps += 1
                kind = engine.shaped("predict", inputs)
                outputs = _output_arrays(engine.plan(kind), n)
                with engine.borrow(kind, n) as ex:
                    ex.run(inputs, [], outputs, None, n, 0, n, 1, counter)
                parts.append(outputs)
                s += 1
                interrupts.check()
                if cb_list is not None:
                    cb_list.on_predict_batch_end(s - 1, {"outputs": model.pack_outputs(outputs)})
                if bar is not None:
                    bar.update(s)
        if not parts:
            raise ValueError(f"{where}: the {stream.kind} gave no batches to predict")
        if bar is not None:
            if bar.target is None:
                bar.target = s
            bar.update(s, final=True)
        if cb_list is not None:
            cb_list.on_predict_end()
        return model.pack_outputs([np.concatenate([p[j] for p in parts])
                                   for j in range(len(model.outputs))])

    # ---- one batch ---------------------------------------------------------------------------
    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        """One training step on one batch; returns the loss (before the update), or
        [loss, *metrics] when metrics were compiled (a dict with return_dict=True)."""
        with self.model.engine.train_lock:
            return self._train_on_batch(x, y, sample_weight, class_weight, return_dict)

    def _train_on_batch(self, x, y, sample_weight, class_weight, return_dict):
        model = self.model
        fast = None
        if sample_weight is None and class_weight is None and type(return_dict) is bool:
            fast = self._fast_batch(x, y)     # else the checks below refuse before any change
        if fast is not None:
            engine, inputs, targets = fast
            n = x.shape[0]
            ex = engine.executor("train", n)
            try:
                losses, metrics, rows = ex.run(inputs, targets, None, None, n, 0, n, 1,
                                               engine.optimizer.iterations, True)
            except ValueError:            # NaN or a bad label, refused before any change
                fast = None
        if fast is None:
            where = f"{type(model).__name__}.train_on_batch ('{model.name}')"
            return_dict = validation.check_bool(return_dict, "return_dict", where)
            engine, inputs, targets = self._prepare(x, y, where)
            n = inputs[0].shape[0]
            weights = validation.sample_weights(model, engine.losses, targets, sample_weight,
                                                class_weight, n, where)
            kind = "train"
            if weights is not None:
                targets, kind = targets + weights, "train+weights"
            ex = engine.executor(engine.shaped(kind, inputs, targets, where), n)
            losses, metrics, rows = ex.run(inputs, targets, None, None, n, 0, n, 1,
                                           engine.optimizer.iterations)
        if ex.plan.optimizer_op is not None:
            engine.optimizer.iterations += 1
        return self._batch_result(ex.plan, engine, losses, metrics, rows, return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        model = self.model
        where = f"{type(model).__name__}.test_on_batch ('{model.name}')"
        return_dict = validation.check_bool(return_dict, "return_dict", where)
        engine, inputs, targets = self._prepare(x, y, where)
        n = inputs[0].shape[0]
        weights = validation.sample_weights(model, engine.losses, targets, sample_weight, None,
                                            n, where)
        kind = "test"
        if weights is not None:
            targets, kind = targets + weights, "test+weights"
        with engine.borrow(engine.shaped(kind, inputs, targets, where), n) as ex:
            losses, metrics, rows = ex.run(inputs, targets, None, None, n, 0, n, 1, 0)
            return self._batch_result(ex.plan, engine, losses, metrics, rows, return_dict)

    @staticmethod
    def _batch_result(plan, engine, losses, metrics, rows, return_dict):
        if not return_dict and plan.n_losses == 1 and len(engine.losses.outputs) == 1:
            # one output: [loss, *metrics] (the common case, kept lean for small steps)
            value = float(losses[0, 0])
            if not plan.n_metrics:
                return value
            n = int(rows[0])
            return [value] + [metric.value([float(metrics[0, i]) for i in ops], n, positions)
                              for metric, ops, positions in plan.metric_groups]
        acc = _Accumulator(plan, engine.losses)
        acc.add(losses, metrics, rows)
        logs = acc.logs()
        if return_dict:
            return logs
        return _flatten_in_keras_order(logs, engine.losses)

    def predict_on_batch(self, x):
        out = self._lean_predict(x)
        if out is not None:
            return out
        model = self.model
        where = f"{type(model).__name__}.predict_on_batch ('{model.name}')"
        model.ensure_graph(x, where)
        inputs = validation.model_inputs(model, x, where)
        return self._predict_arrays(inputs, inputs[0].shape[0], 0, "predict")

    def _lean_predict(self, x, kind="predict"):
        """One batch's predictions with nothing around the C call, or None to take the
        general path: for a built single-input model on the cpu backend and a batch that
        needs no conversion (a float32 C-contiguous array of the input's shape), whose
        values the C step checks itself (NaN, infinity) before it runs, as train_on_batch's
        lean path does.  No SIGINT guard: a one-step call is short, and a Ctrl-C arriving
        during it is raised by Python as soon as it returns.  What it refuses goes the
        general way, with its messages."""
        model = self.model
        if type(x) is not np.ndarray or x.dtype != np.float32 or not x.flags.c_contiguous:
            return None
        engine = model.engine
        shape = engine.lean_predict_shape()
        if shape is None or x.shape[1:] != shape or not x.shape[0]:
            return None
        n = x.shape[0]
        outputs = [np.empty((n,) + tuple(t.shape[1:]), dtype=np.float32) for t in model.outputs]
        with engine.lock:                   # dropout called with training=True draws anew
            counter = self._inference_steps
            self._inference_steps += 1
        ex, epoch = engine.take(kind, n)
        try:
            ex.run([x], [], outputs, None, n, 0, n, 1, counter, True)
        except ValueError:                  # NaN or infinity, refused before it ran
            return None
        finally:
            engine.put_back(kind, ex, epoch)
        return model.pack_outputs(outputs)


def _output_arrays(plan, n):
    """Arrays for `n` rows of each output of `plan` (its shapes are concrete, where the
    model's may have free axes)."""
    return [np.empty((n,) + plan.buffers[b].shape, dtype=np.float32) for b in plan.output_bufs]


def _min_known(a, b):
    """min(a, b) where None means unknown (or no limit)."""
    if a is None:
        return b
    return a if b is None else min(a, b)


def _checked_callbacks(callbacks, where):
    """fit/evaluate/predict's `callbacks` as a list, checked before anything runs: a list
    or tuple of pynn.callbacks.Callback instances (or None)."""
    if callbacks is None:
        return []
    if not isinstance(callbacks, (list, tuple)):
        raise TypeError(f"{where}: expected callbacks as a list of Callback instances, "
                        f"received {type(callbacks).__name__}")
    for cb in callbacks:
        if not isinstance(cb, callbacks_module.Callback):
            raise TypeError(f"{where}: expected pynn.callbacks.Callback instances, received "
                            f"{type(cb).__name__}")
    return list(callbacks)


def _flatten_in_keras_order(logs, losses):
    """evaluate()'s list: the loss, the per-output losses, then the other keys sorted
    (Keras 3's _flatten_metrics_in_order); a lone value for a lone key."""
    names = ["loss"]
    if sum(o.loss is not None for o in losses.outputs) > 1:
        names += [o.loss_key for o in losses.outputs if o.loss is not None]
    if len(losses.outputs) == 1:
        names[1:1] = [m.key for m in losses.outputs[0].metrics]
    values = [logs[k] for k in names if k in logs]
    values += [logs[k] for k in sorted(logs) if k not in names]
    return values[0] if len(values) == 1 else values

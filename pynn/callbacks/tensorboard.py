"""Keras's TensorBoard callback, without TensorFlow: event files written with the
`tensorboard` package's own writer (pip install "pynn[tensorboard]").

Layout and tags as Keras 3 writes them:
  log_dir/train/       epoch_<name> for each training log (loss, metrics) and
                       epoch_learning_rate, at step = epoch; with update_freq="batch" or N
                       also batch_<name> every N batches, at step = the global batch count;
                       with histogram_freq=N, a histogram of every weight every N epochs
                       (tag: the weight's path + "/histogram")
  log_dir/validation/  epoch_<name> for each val_ log (the prefix dropped), and
                       evaluation_<name>_vs_iterations at step = optimizer.iterations
Run `tensorboard --logdir log_dir` to see them.
"""
import os
import time

import numpy as np

from ..checks import check_int, is_int
from .base import Callback, check_folder


def _writer_api():
    try:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import HistogramProto, Summary
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError as exc:
        raise ImportError("pynn.callbacks.TensorBoard writes event files with the tensorboard "
                          "package (no TensorFlow needed): pip install \"pynn[tensorboard]\" "
                          f"({exc})") from None
    return EventFileWriter, Event, Summary, HistogramProto


class TensorBoard(Callback):
    """Scalars (loss, metrics, learning rate) per epoch or batch and weight histograms, in
    event files TensorBoard reads.  write_graph, write_images, profile_batch and the
    embeddings options of Keras are accepted at their defaults only (pynn has no graph or
    profile to write)."""

    def __init__(self, log_dir="logs", histogram_freq=0, write_graph=True, write_images=False,
                 write_steps_per_second=False, update_freq="epoch", profile_batch=0,
                 embeddings_freq=0, embeddings_metadata=None):
        super().__init__()
        where = "TensorBoard"
        check_folder(log_dir, "log_dir", where)
        histogram_freq = check_int(histogram_freq, "histogram_freq", where, 0)
        if update_freq not in ("epoch", "batch") and not (is_int(update_freq) and
                                                          update_freq >= 1):
            raise ValueError(f"{where}: expected update_freq 'epoch', 'batch' or a positive "
                             f"integer, received update_freq={update_freq!r}")
        for name, value, default in (("write_images", write_images, False),
                                     ("profile_batch", profile_batch, 0),
                                     ("embeddings_freq", embeddings_freq, 0),
                                     ("embeddings_metadata", embeddings_metadata, None)):
            if value != default:
                raise ValueError(f"{where}: `{name}` is not supported, received "
                                 f"{name}={value!r}")
        self._api = _writer_api()
        self.log_dir = os.fspath(log_dir)
        self.histogram_freq = int(histogram_freq)
        self.write_graph = bool(write_graph)
        self.write_steps_per_second = bool(write_steps_per_second)
        self.update_freq = 1 if update_freq == "batch" else update_freq
        self._writers = {}
        self._train_step = 0
        self._epoch_start = None

    # ---- writing ---------------------------------------------------------------------------
    def _writer(self, name):
        writer = self._writers.get(name)
        if writer is None:
            EventFileWriter = self._api[0]
            path = os.path.join(self.log_dir, name)
            os.makedirs(path, exist_ok=True)
            writer = self._writers[name] = EventFileWriter(path)
        return writer

    def _scalars(self, writer_name, values, step):
        _, Event, Summary, _ = self._api
        items = [Summary.Value(tag=tag, simple_value=float(v)) for tag, v in values.items()
                 if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)]
        if items:
            self._writer(writer_name).add_event(
                Event(wall_time=time.time(), step=int(step), summary=Summary(value=items)))

    def _histograms(self, step):
        _, Event, Summary, HistogramProto = self._api
        items = []
        for v in self.model.weights:
            values = np.asarray(v.numpy(), dtype=np.float64).ravel()
            if values.size == 0:
                continue
            counts, edges = np.histogram(values, bins=30)
            hist = HistogramProto(min=float(values.min()), max=float(values.max()),
                                  num=float(values.size), sum=float(values.sum()),
                                  sum_squares=float(np.dot(values, values)),
                                  bucket_limit=[float(e) for e in edges[1:]],
                                  bucket=[float(c) for c in counts])
            items.append(Summary.Value(tag=f"{v.path}/histogram", histo=hist))
        if items:
            self._writer("train").add_event(
                Event(wall_time=time.time(), step=int(step), summary=Summary(value=items)))

    def _flush(self):
        for writer in self._writers.values():
            writer.flush()

    # ---- hooks -------------------------------------------------------------------------------
    def needs_batch_hooks(self, kind):
        return kind == "train" and self.update_freq != "epoch"

    def on_train_begin(self, logs=None):
        self._train_step = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self.update_freq == "epoch":
            return
        self._train_step += 1
        if self._train_step % self.update_freq == 0:
            self._scalars("train", {f"batch_{k}": v for k, v in (logs or {}).items()},
                          self._train_step)

    def on_test_end(self, logs=None):
        if self.model is not None and getattr(self.model, "optimizer", None) is not None:
            step = int(self.model.optimizer.iterations)
            self._scalars("validation", {f"evaluation_{k}_vs_iterations": v
                                         for k, v in (logs or {}).items()}, step)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        train = {f"epoch_{k}": v for k, v in logs.items() if not k.startswith("val_")}
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None:
            train["epoch_learning_rate"] = float(optimizer.learning_rate)
        if self.write_steps_per_second and self._epoch_start is not None:
            steps = self.params.get("steps") or 0
            train["epoch_steps_per_second"] = steps / max(time.perf_counter() -
                                                          self._epoch_start, 1e-9)
        self._scalars("train", train, epoch)
        self._scalars("validation", {f"epoch_{k[4:]}": v for k, v in logs.items()
                                     if k.startswith("val_")}, epoch)
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            self._histograms(epoch)
        self._flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

"""The script tests/test_distributed.py starts under mpiexec (and alone, as the one-rank
reference).  `python worker.py SCENARIO OUT_DIR`; each rank writes OUT_DIR/r<rank>.json.

Scenarios:
  main     the checks of one job: fit on arrays (weights after every epoch, logs, files,
           EarlyStopping), the rows each rank trained on (arrays, Dataset, PyDataset),
           a second identical fit (bitwise repeat), a resume from BackupAndRestore, and the
           refused uses (data shapes that differ on one rank, batch_size < ranks)
  raise    rank 1 raises an uncaught exception in its second epoch
  kill     rank 1 kills itself (SIGKILL) in its second epoch
  hang     rank 1 stops answering (sleeps) in its second epoch
"""
import hashlib
import json
import os
import signal
import sys
import time

import numpy as np

import pynn
from pynn.distributed import training as dist_training

scenario, out = sys.argv[1], sys.argv[2]
pynn.distributed.init()
rank, size = pynn.distributed.rank(), pynn.distributed.size()
result = {"rank": rank, "size": size}

N_TRAIN, FEATURES, CLASSES = 61, 6, 3


def data():
    g = np.random.default_rng(0)
    x = g.standard_normal((N_TRAIN, FEATURES)).astype(np.float32)
    x[:, 0] = np.arange(N_TRAIN)            # the sample's id, read back by the spies below
    x[:, 0] /= 100.0
    y = (g.integers(0, CLASSES, N_TRAIN)).astype(np.int64)
    return x, y


def model(seed=7):
    pynn.utils.set_random_seed(seed)
    m = pynn.Sequential([pynn.layers.Input((FEATURES,)),
                         pynn.layers.Dense(16, activation="relu"),
                         pynn.layers.Dense(16, activation="tanh"),
                         pynn.layers.Dense(CLASSES, activation="softmax")])
    m.compile(optimizer=pynn.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
    return m


def flat(m):
    return np.concatenate([w.ravel() for w in m.get_weights()])


class EpochWeights(pynn.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.hashes = []

    def on_epoch_end(self, epoch, logs=None):
        self.hashes.append(hashlib.sha1(flat(self.model).tobytes()).hexdigest())


class Fail(pynn.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1 and rank == 1:
            if scenario == "raise":
                raise RuntimeError("a failure in rank 1's callback")
            if scenario == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if scenario == "hang":
                time.sleep(600)


# ---- the rows each rank trains on (the spies record what the executors are given) ------------
seen = [[]]                                  # per epoch


class Epochs(pynn.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        seen.append([])


def rows_per_epoch():
    rows = [e for e in seen if e]
    seen[:] = [[]]
    return rows

_run_steps, _slice = dist_training.run_steps, dist_training.slice_batch


def spy_steps(ex, inputs, targets, outputs, shard, first_step, k, iterations, train):
    res = _run_steps(ex, inputs, targets, outputs, shard, first_step, k, iterations, train)
    if train:
        start = first_step * shard.batch
        seen[-1].extend(int(i) for i in shard.order[start:start + int(res[2].sum())])
    return res


def spy_slice(world, arrays):
    part = _slice(world, arrays)
    if arrays[0].ndim == 2 and arrays[0].shape[1] == FEATURES:
        seen[-1].extend(int(round(v * 100)) for v in part[0][:, 0])
    return part


dist_training.run_steps, dist_training.slice_batch = spy_steps, spy_slice


class Rows(pynn.data.PyDataset):
    def __init__(self, x, y, batch):
        super().__init__()
        self.x, self.y, self.batch = x, y, batch

    @property
    def num_batches(self):
        return -(-len(self.x) // self.batch)

    def __getitem__(self, i):
        return self.x[i * self.batch:(i + 1) * self.batch], self.y[i * self.batch:(i + 1) * self.batch]


x, y = data()
B = 8
if scenario in ("raise", "kill", "hang"):
    m = model()
    m.fit(x, y, batch_size=B, epochs=4, verbose=0, callbacks=[Fail()])
    result["finished"] = True
else:
    # 1. arrays: weights after every epoch, logs, validation, files, EarlyStopping
    here = os.path.join(out, f"files_r{rank}")
    os.makedirs(here, exist_ok=True)
    m = model()
    ew = EpochWeights()
    cbs = [ew, Epochs(), pynn.callbacks.CSVLogger(os.path.join(here, "log.csv")),
           pynn.callbacks.ModelCheckpoint(os.path.join(here, "ckpt.keras")),
           pynn.callbacks.EarlyStopping(monitor="val_loss", patience=1, min_delta=1.0)]
    h = m.fit(x, y, batch_size=B, epochs=4, verbose=2, validation_split=0.2, callbacks=cbs)
    result["arrays_rows"] = rows_per_epoch()
    result["history"] = h.history
    result["epoch_hashes"] = ew.hashes
    result["arrays_weights"] = flat(m).tolist()
    result["evaluate"] = m.evaluate(x, y, batch_size=7, verbose=0, return_dict=True)
    m.save(os.path.join(here, "model.keras"))
    result["files"] = sorted(os.listdir(here))

    # 2. a second identical fit repeats bitwise
    m2 = model()
    m2.fit(x, y, batch_size=B, epochs=4, verbose=0, validation_split=0.2,
           callbacks=[pynn.callbacks.EarlyStopping(monitor="val_loss", patience=1, min_delta=1.0)])
    result["repeat_bitwise"] = bool(np.array_equal(flat(m2), flat(m)))

    # 3. a Dataset and a PyDataset, sharded the same way
    rows_per_epoch()                             # forget the rows of the fits above
    ds = pynn.data.Dataset.from_tensor_slices((x, y)).shuffle(64, seed=3).batch(B)
    m3 = model()
    h3 = m3.fit(ds, epochs=2, verbose=0, shuffle=False, callbacks=[Epochs()])
    result["dataset_rows"] = rows_per_epoch()
    result["dataset_weights"] = flat(m3).tolist()
    result["dataset_history"] = h3.history
    m4 = model()
    m4.fit(Rows(x, y, B), epochs=2, verbose=0, shuffle=True, callbacks=[Epochs()])
    result["pydataset_rows"] = rows_per_epoch()
    result["pydataset_weights"] = flat(m4).tolist()

    # 4. resume: an interrupted fit, then a new model resumes from the backup
    backup = os.path.join(out, "backup")

    class Stop(pynn.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise KeyboardInterrupt          # on every rank: the job goes on
    m5 = model()
    try:
        m5.fit(x, y, batch_size=B, epochs=4, verbose=0,
               callbacks=[pynn.callbacks.BackupAndRestore(backup), Stop()])
    except KeyboardInterrupt:
        pass
    m6 = model(seed=99)                          # other initial weights: the backup's win
    m6.fit(x, y, batch_size=B, epochs=4, verbose=0,
           callbacks=[pynn.callbacks.BackupAndRestore(backup)])
    m7 = model()
    m7.fit(x, y, batch_size=B, epochs=4, verbose=0)
    result["resume_max_diff"] = float(np.abs(flat(m6) - flat(m7)).max())
    result["resume_epochs"] = len(m6.history.history["loss"])

    # 5. refused uses: the same error on every rank, naming the rank
    if size > 1:
        bad_x = x if rank == 0 else np.concatenate([x, x[:1]])
        bad_y = y if rank == 0 else np.concatenate([y, y[:1]])
        try:
            model().fit(bad_x, bad_y, batch_size=B, epochs=1, verbose=0)
        except ValueError as e:
            result["shape_error"] = str(e)
        try:
            model().fit(x, y, batch_size=size - 1, epochs=1, verbose=0)
        except ValueError as e:
            result["batch_error"] = str(e)
    result["stats"] = pynn.distributed.stats()

with open(os.path.join(out, f"r{rank}.json"), "w") as f:
    json.dump(result, f)

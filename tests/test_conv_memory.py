"""A convolutional network's training allocates nothing per step once its first step has
sized the buffers: a small VGG-style CNN (16x16x3, conv8-conv8-pool-conv16-conv16-pool,
dense32, dense10 logits, batch 8), trained step by step (`train_on_batch`) and a whole epoch
per C call (`fit`).  tracemalloc sees Python's allocations in this process; the resident
set size of a fresh process (/proc/self/statm) sees everything, C's malloc included, and
must not grow between 20 and 200 steps.  (tests/c/test_plan.c counts the C runner's
mallocs per step for a CNN plan directly.)

One thread: allocation does not depend on the thread count, and on a busy 2-core machine
OpenMP's barriers make a 2-thread step of a net this small tens of times slower.
"""
import os
import subprocess
import sys
import tracemalloc

import numpy as np

import pynn
from pynn import layers as L
from pynn.models import executor as executor_module

BATCH, SAMPLES = 8, 200


def small_vgg():
    return pynn.Sequential([
        L.Input((16, 16, 3)),
        L.Conv2D(8, 3, padding="same", activation="relu"),
        L.Conv2D(8, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(16, 3, padding="same", activation="relu"),
        L.Conv2D(16, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
        L.Flatten(), L.Dense(32, activation="relu"), L.Dense(10)])


def compiled_vgg_and_data():
    pynn.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((SAMPLES, 16, 16, 3), dtype=np.float32)
    y = rng.integers(0, 10, size=SAMPLES).astype(np.int64)
    model = small_vgg()
    model.compile(optimizer=pynn.optimizers.SGD(0.01),
                  loss=pynn.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model, x, y


def batch_at(x, y, step):
    lo = (step * BATCH) % SAMPLES
    return x[lo:lo + BATCH], y[lo:lo + BATCH]


def test_train_on_batch_allocates_nothing_per_step(threads):
    threads(1)
    model, x, y = compiled_vgg_and_data()
    model.train_on_batch(*batch_at(x, y, 0))            # sizes the plan's buffers
    before = model.get_weights()
    tracemalloc.start()
    for step in range(1, 11):
        model.train_on_batch(*batch_at(x, y, step))
    after_10, _ = tracemalloc.get_traced_memory()
    for step in range(11, 41):
        model.train_on_batch(*batch_at(x, y, step))
    after_40, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # Nothing kept per step: 30 steps leaking even a 64-byte object each would pass 1000.
    assert after_40 - after_10 < 1000, (after_10, after_40)
    # Nothing sized by the batch made per step: one copy of the batch (8x16x16x3 float32,
    # 24 KiB) or of any activation would exceed this peak.
    assert peak < 10_000, peak
    assert all(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_a_whole_cnn_epoch_allocates_nothing_per_step(threads):
    threads(1)
    model, x, y = compiled_vgg_and_data()
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)   # sizes the buffers
    executor = model.engine.executor("train", BATCH)
    assert isinstance(executor, executor_module.CExecutor)
    order = np.random.default_rng(1).permutation(SAMPLES).astype(np.int64)
    steps = SAMPLES // BATCH
    before = model.get_weights()
    tracemalloc.start()
    losses, _, rows = executor.run([x], [y], None, order, SAMPLES, 0, BATCH, steps,
                                   model.optimizer.iterations)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert rows.sum() == SAMPLES and np.all(np.isfinite(losses))
    # the call's three small result arrays (25 steps: a few hundred bytes); one per-step
    # array of the smallest kind (the 8x10 logits' gradient, 320 bytes) would pass this
    # bound after 25 steps, one of the batch (24 KiB) at once
    assert peak < 8_000, peak
    assert all(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    assert model.engine.executor("train", BATCH) is executor      # reused, not rebuilt


RSS_SCRIPT = """
import os, sys
import pynn
sys.path.insert(0, {tests!r})
from test_conv_memory import BATCH, SAMPLES, compiled_vgg_and_data

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

pynn.set_num_threads(1)
model, x, y = compiled_vgg_and_data()
step = 0
def steps(n):
    global step
    for _ in range(n):
        lo = (step * BATCH) % SAMPLES
        model.train_on_batch(x[lo:lo + BATCH], y[lo:lo + BATCH])
        step += 1
steps(20)
a = rss()
steps(180)
b = rss()
model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)      # 25 steps
c = rss()
model.fit(x, y, batch_size=BATCH, epochs=8, verbose=0)      # 200 steps
d = rss()
print(a, b, c, d)
"""


def test_resident_memory_does_not_grow_with_the_steps():
    """RSS after 20 and after 200 train_on_batch steps, and after 1 and 9 fit epochs (25
    and 225 steps), in a fresh process.  The slack (1 MiB) covers the allocator's and the
    interpreter's own drift; a per-step leak of one activation (8x16x16x8 float32, 32 KiB)
    would add 5.6 MiB over 180 steps, one of the first layer's im2col buffer 18 MiB."""
    script = RSS_SCRIPT.format(tests=os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    a, b, c, d = map(int, out.stdout.split())
    slack = 1 << 20
    assert b - a < slack, f"train_on_batch: RSS {a} after 20 steps, {b} after 200"
    assert d - c < slack, f"fit: RSS {c} after 25 steps, {d} after 225"

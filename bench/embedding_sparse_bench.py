"""Embedding's sparse SGD update (engineer S, issue #16): the step time of
Embedding(20000, 128) + GlobalAveragePooling1D + Dense(1) under plain SGD, with the dense
update (the optimizer over the whole table, as before) and with the sparse one (the rows
seen only, OP_EMBEDDING_SGD), in the same process, on the cpu backend (a whole epoch per
C call).  Prints the median time per step of each and their ratio.

    python bench/embedding_sparse_bench.py [--batch 32] [--seq 20] [--steps 200]
"""
import argparse
import time
from unittest import mock

import numpy as np

import pynn
from pynn import layers as L
from pynn.models import plan as plan_module


def step_time(dense, x, y, batch, repeats, threads):
    pynn.set_num_threads(threads)
    with mock.patch.object(plan_module.PlanBuilder, "sparse_update",
                           lambda self, v: False) if dense else _nothing():
        pynn.utils.set_random_seed(0)
        model = pynn.Sequential([pynn.Input((x.shape[1],)), L.Embedding(20000, 128),
                                 L.GlobalAveragePooling1D(), L.Dense(1)])
        model.compile(optimizer=pynn.optimizers.SGD(0.01), loss="mse")
        ops = [op.name for op in model.engine._compile("train").ops]
        assert ("embedding_sgd" in ops) != dense
        model.fit(x, y, epochs=1, batch_size=batch, verbose=0)          # warm up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            model.fit(x, y, epochs=1, batch_size=batch, shuffle=False, verbose=0)
            times.append((time.perf_counter() - t) / (len(x) // batch))
        return float(np.median(times)), model.get_weights()


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=20)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=pynn.get_num_threads())
    a = p.parse_args()
    rng = np.random.default_rng(0)
    n = a.batch * a.steps
    x = rng.integers(0, 20000, size=(n, a.seq)).astype(np.float32)
    y = rng.normal(size=(n, 1)).astype(np.float32)
    dense, w_dense = step_time(True, x, y, a.batch, a.repeats, a.threads)
    sparse, w_sparse = step_time(False, x, y, a.batch, a.repeats, a.threads)
    same = all(np.array_equal(u, v) for u, v in zip(w_dense, w_sparse))
    print(f"Embedding(20000, 128) + GlobalAveragePooling1D + Dense(1), SGD, batch {a.batch}, "
          f"{a.seq} ids per row, {a.threads} threads")
    print(f"  dense update  (before): {dense * 1e3:8.3f} ms/step")
    print(f"  sparse update (after):  {sparse * 1e3:8.3f} ms/step")
    print(f"  ratio before / after:   {dense / sparse:8.2f}x   (weights bitwise equal: {same})")


if __name__ == "__main__":
    main()

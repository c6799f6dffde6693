"""pynn._core.sgemm beside NumPy's BLAS on the same shapes, in one process.

Prints GFLOP/s (median of several runs) and the ratio pynn / numpy.  Set the
thread counts yourself so that both use the same: for example
    OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 python bench/bench_gemm_vs_numpy.py
(and unset OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE if the environment sets them,
or NumPy runs a slower kernel than this CPU allows).
"""
import time

import numpy as np

import pynn._core as core

# (label, M, N, K, trans_a, trans_b)
SHAPES = [
    ("square 256", 256, 256, 256, False, False),
    ("square 512", 512, 512, 512, False, False),
    ("square 1024", 1024, 1024, 1024, False, False),
    ("square 1024 A^T", 1024, 1024, 1024, True, False),
    ("square 1024 B^T", 1024, 1024, 1024, False, True),
    ("square 1024 A^T B^T", 1024, 1024, 1024, True, True),
    ("square 2048", 2048, 2048, 2048, False, False),
    ("mlp fwd X W (128x784 @ 784x512)", 128, 512, 784, False, False),
    ("mlp dW X^T dZ (784x128 @ 128x512)", 784, 512, 128, True, False),
    ("mlp dX dZ W^T (128x512 @ 512x784)", 128, 784, 512, False, True),
]
# Dense forward at batch 1, 4, 16 (the small-M path): timed in microseconds, and
# pynn.ops.matmul (with its Python checks) beside the bare _core.sgemm.
SMALL_M = [(m, k, n) for m in (1, 4, 16) for k, n in ((784, 512), (512, 256), (256, 10))]


def median_seconds(fn, flops):
    # The other library's worker threads spin for a while after their last call
    # and would steal the cores: let them go to sleep first.
    time.sleep(0.5)
    fn()
    runs = int(min(41, max(5, 0.3 * 200e9 / flops)))
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def median_us(fn, runs=2000):
    time.sleep(0.5)
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e6


def small_m(rng):
    import pynn.ops as ops
    print(f"\n{'small M: M x K x N':24s} {'ops.matmul':>10s} {'sgemm':>8s} {'numpy':>8s} "
          f"{'ops/np':>7s} {'sgemm/np':>8s}   (us, median)")
    for m, k, n in SMALL_M:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        c = np.empty((m, n), np.float32)
        t_ops = median_us(lambda: ops.matmul(a, b))
        t_core = median_us(lambda: core.sgemm(c, a, b, False, False))
        t_numpy = median_us(lambda: a @ b)
        print(f"{f'{m}x{k}x{n}':24s} {t_ops:10.1f} {t_core:8.1f} {t_numpy:8.1f} "
              f"{t_ops / t_numpy:7.2f} {t_core / t_numpy:8.2f}")


def main():
    rng = np.random.default_rng(0)
    print(f"pynn kernel {core.KERNEL_NAMES[core.gemm_kernel()]}, {core.get_num_threads()} threads")
    print(f"{'shape':36s} {'pynn':>8s} {'numpy':>8s} {'ratio':>6s}   (GFLOP/s)")
    for label, m, n, k, ta, tb in SHAPES:
        a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
        c = np.empty((m, n), np.float32)
        op_a, op_b = (a.T if ta else a), (b.T if tb else b)
        flops = 2.0 * m * n * k
        t_pynn = median_seconds(lambda: core.sgemm(c, a, b, ta, tb), flops)
        t_numpy = median_seconds(lambda: np.matmul(op_a, op_b, out=c), flops)
        print(f"{label:36s} {flops / t_pynn * 1e-9:8.1f} {flops / t_numpy * 1e-9:8.1f} "
              f"{t_numpy / t_pynn:6.2f}")


if __name__ == "__main__":
    import sys
    if "--small-only" not in sys.argv:
        main()
    small_m(np.random.default_rng(0))

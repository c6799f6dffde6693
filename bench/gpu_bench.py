"""GPU benchmark of pynn's `cuda` backend: SGEMM against cuBLAS, MLP training steps against
PyTorch CUDA, in one process on the same GPU, printing medians and ratios.

    pip install ".[cuda]" torch          # or cupy-cuda12x for the cuBLAS SGEMM
    python bench/gpu_bench.py            # --quick: fewer repetitions

SGEMM: pynn's kernel (chosen tile config) vs cuBLAS FP32 (CuPy if installed, else PyTorch with
TF32 off), C = A B at n^3 for n = 1024, 2048, 4096, times from CUDA events after a warm-up.
MLP: 784-512-256-10 (relu, relu, softmax), sparse categorical cross-entropy, Adam, batch 128
and 1024: a full `train_on_batch` step through pynn's public API vs the same step in PyTorch
(zero_grad, forward, loss, backward, Adam, loss.item()).  Both start from host NumPy batches
and copy each batch to the GPU once, as pynn must.  Targets (issue 4): SGEMM >= 0.5x cuBLAS at
4096^3; MLP step time <= 1.0x PyTorch at both batch sizes.  Exits 0 with a message when there
is no GPU (the simulator does not count: its timings mean nothing).
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np


def no_gpu(reason):
    print(f"gpu_bench: no GPU to benchmark on ({reason}); nothing measured.")
    sys.exit(0)


def median_ms(fn, sync, reps, warmup=3):
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def cublas_matmul(n):
    """(callable computing C = A B in FP32 on cuBLAS, sync, library name) or None."""
    try:
        import cupy as cp
        a, b = (cp.asarray(np.random.default_rng(i).standard_normal((n, n)), dtype=cp.float32) for i in (1, 2))
        c = cp.empty((n, n), dtype=cp.float32)
        return (lambda: cp.matmul(a, b, out=c)), cp.cuda.Device().synchronize, "cuBLAS (CuPy)"
    except ImportError:
        pass
    try:
        import torch
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        a, b = (torch.randn(n, n, device="cuda", dtype=torch.float32) for _ in range(2))
        c = torch.empty(n, n, device="cuda", dtype=torch.float32)
        return (lambda: torch.mm(a, b, out=c)), torch.cuda.synchronize, "cuBLAS (PyTorch, TF32 off)"
    except ImportError:
        return None


def bench_sgemm(be, cuda_mod, reps):
    print("SGEMM C = A B, float32 (median ms, TFLOP/s)")
    for n in (1024, 2048, 4096):
        rng = np.random.default_rng(n)
        a = be.from_host(rng.standard_normal((n, n)).astype(np.float32))
        b = be.from_host(rng.standard_normal((n, n)).astype(np.float32))
        c = be.empty((n, n))
        sync = cuda_mod.cuda.synchronize
        ms = median_ms(lambda: be.matmul(a, b, False, False, c), sync, reps)
        # check C t against A (B t) on the host
        t = rng.standard_normal(n).astype(np.float64)
        ah, bh, ch = (be.to_host(v).astype(np.float64) for v in (a, b, c))
        err = np.abs(ch @ t - ah @ (bh @ t)).max() / np.abs(ah @ (bh @ t)).max()
        cfg = cuda_mod.gemm.gemm_config(n, n, be.sm_count)
        flops = 2.0 * n ** 3
        line = f"  n={n:5d}  pynn[{cfg.name}] {ms:8.3f} ms {flops / ms / 1e9:6.1f} TFLOP/s (rel. err {err:.1e})"
        ref = cublas_matmul(n)
        if ref is not None:
            fn, ref_sync, lib = ref
            ref_ms = median_ms(fn, ref_sync, reps)
            line += f" | {lib} {ref_ms:8.3f} ms {flops / ref_ms / 1e9:6.1f} TFLOP/s | pynn speed = {ref_ms / ms:.2f}x cuBLAS"
        print(line)


def pynn_mlp_step(batch, x, y):
    import pynn
    pynn.utils.set_random_seed(0)
    model = pynn.Sequential([pynn.layers.Input((784,)), pynn.layers.Dense(512, activation="relu"),
                             pynn.layers.Dense(256, activation="relu"),
                             pynn.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=pynn.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  backend="cuda")
    return lambda: model.train_on_batch(x, y)


def torch_mlp_step(batch, x, y):
    import torch
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Linear(512, 256),
                                torch.nn.ReLU(), torch.nn.Linear(256, 10)).cuda()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        xb = torch.from_numpy(x).cuda()
        yb = torch.from_numpy(y).cuda()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        return loss.item()
    return step


def bench_mlp(cuda_mod, reps):
    print("MLP 784-512-256-10 training step (relu, softmax + sparse CCE, Adam), median ms")
    for batch in (128, 1024):
        rng = np.random.default_rng(batch)
        x = rng.random((batch, 784), dtype=np.float32)
        y = rng.integers(0, 10, size=batch).astype(np.int64)
        ms = median_ms(pynn_mlp_step(batch, x, y), cuda_mod.cuda.synchronize, reps, warmup=5)
        line = f"  batch={batch:5d}  pynn {ms:8.3f} ms"
        try:
            import torch
            t_ms = median_ms(torch_mlp_step(batch, x, y), torch.cuda.synchronize, reps, warmup=5)
            line += f" | PyTorch {t_ms:8.3f} ms | pynn time = {ms / t_ms:.2f}x PyTorch"
        except ImportError:
            line += " | PyTorch not installed (pip install torch)"
        print(line)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        no_gpu("NUMBA_ENABLE_CUDASIM=1: the simulator's timings mean nothing")
    import pynn
    from pynn import backend as backends
    reason = backends.cuda_unavailable_reason()
    if reason is not None:
        no_gpu(reason)
    from pynn.backend import cuda as cuda_mod
    be = backends.get("cuda")
    dev = cuda_mod.cuda.get_current_device()
    print(f"device: {dev.name.decode() if isinstance(dev.name, bytes) else dev.name}, "
          f"{be.sm_count} SMs")
    reps = 5 if args.quick else 20
    bench_sgemm(be, cuda_mod, reps)
    bench_mlp(cuda_mod, reps * 5)


if __name__ == "__main__":
    main()

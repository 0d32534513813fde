"""
Data-parallel training (pyro_hfvae.training.distributed): two gloo processes on the CPU, spawned
with torch.multiprocessing (a file:// rendezvous) or launched by torchrun; every wait has a timeout.
"""
import copy
import datetime
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pyro
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from pyro.poutine.messenger import Messenger
from torch.distributions import RelaxedOneHotCategorical

from pyro_hfvae.distributions.util import _unwrap
from pyro_hfvae.infer.terms_elbo import NonFiniteLossError
from pyro_hfvae.training.checkpoint import load_checkpoint
from pyro_hfvae.training.config import ConfigError
from pyro_hfvae.training.distributed import DistributedOptimizer
from pyro_hfvae.training.trainer import CHECKPOINT_FILE, LOG_FILE, Trainer, read_jsonl
from tests.spawned_ranks import join_ranks
from tests.training.conftest import TINY, TINY_PROGRESSIVE

WORLD_SIZE = 2
TIMEOUT = 120  # seconds for a whole multi-process job; a hang fails the test instead


# ---------------------------------------------------------------- launching

def _worker(rank, job, init_file, out_dir, args):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE,
                            timeout=datetime.timedelta(seconds=60))
    try:
        result = globals()[job](rank, *args)
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
        dist.barrier()  # no rank tears gloo down while a peer still uses it (it can abort)
    finally:
        dist.destroy_process_group()


def _spawn(job, tmp_path, *args):
    """Runs ``job(rank, *args)`` on 2 ranks; returns each rank's result (a job's exception fails the test)."""
    out_dir = tmp_path / f"{job}_results"
    out_dir.mkdir()
    context = mp.start_processes(_worker, args=(job, str(tmp_path / f"{job}_rendezvous"), str(out_dir), args),
                                 nprocs=WORLD_SIZE, join=False, start_method="spawn")
    paths = [out_dir / f"rank{rank}.pt" for rank in range(WORLD_SIZE)]
    join_ranks(context, paths, TIMEOUT)
    return [torch.load(path, weights_only=False) for path in paths]


def _torchrun(*argv, timeout=60):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD_SIZE}",
               "-m", "pyro_hfvae.training", *argv]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def _parameters(trainer):
    return {name: value.detach().clone() for name, value in trainer.model.state_dict().items()}


class _PosteriorMeans(Messenger):
    """Every latent sample at its distribution's mean: the updates then depend on the data alone, not on noise."""

    def _pyro_sample(self, msg):
        if not msg["is_observed"] and msg["value"] is None and msg["type"] == "sample" and hasattr(msg["fn"], "mean"):
            msg["value"] = msg["fn"].mean


def _noise_free(trainer):
    trainer.model.guide = _PosteriorMeans()(trainer.model.guide)
    return trainer


class _DeterministicSamples(Messenger):
    """Normal sites at their means, Concrete sites at ``softmax(logits / temperature)``: samples that depend on
    the data alone, so that one process and two draw the same ones."""

    def _pyro_sample(self, msg):
        if msg["is_observed"] or msg["value"] is not None or msg["type"] != "sample":
            return
        fn = msg["fn"]
        base = _unwrap(fn, independent=True)
        if isinstance(base, RelaxedOneHotCategorical):
            msg["value"] = torch.softmax(base.logits / base.temperature, -1).expand(fn.shape())
        else:
            msg["value"] = fn.mean


# An Adam whose eps dominates sqrt(v), so that its step scales with the gradient (about SGD with lr 1e-3): a
# sum of the ranks' gradients instead of their mean, or a wrong loss scale, changes the parameters.
_SCALE_SENSITIVE = {"name": "adam", "lr": 10.0, "eps": 1e4}


def _equivalence_config():
    config = copy.deepcopy(TINY_PROGRESSIVE)
    config["optimizer"] = dict(_SCALE_SENSITIVE)
    return config


# ---------------------------------------------------------------- jobs (run on every rank)

def _job_equivalence(rank, run_dir):
    writes = []

    def audit(event, args):
        # Everything this process opens for writing, creates, renames or removes under the run directory.
        if event in ("open", "os.mkdir", "os.rename", "os.replace", "os.remove", "os.unlink") and args:
            path = str(args[1] if event in ("os.rename", "os.replace") else args[0])  # the destination
            mode = args[1] if event == "open" and len(args) > 1 else None
            writing = event != "open" or (isinstance(mode, str) and any(c in mode for c in "wax+"))
            if writing and path.startswith(run_dir):
                writes.append((event, path))

    sys.addaudithook(audit)
    records = []
    trainer = _noise_free(Trainer(_equivalence_config(), run_dir,
                                  callbacks=[lambda t, record: records.append(dict(record))]))
    assert trainer.train() == "completed"
    return {"parameters": _parameters(trainer), "records": records, "writes": list(writes)}


def _job_hfvae_first_step(rank, run_dir):
    out = {}
    for global_batch in (True, False):
        config = copy.deepcopy(TINY)
        config["training"]["steps"] = 1
        config["objective"]["global_batch"] = global_batch
        records = []
        trainer = Trainer(config, f"{run_dir}_{global_batch}",
                          callbacks=[lambda t, record: records.append(dict(record))])
        trainer.model.guide = _DeterministicSamples()(trainer.model.guide)
        assert trainer.loss.global_batch is global_batch
        assert trainer.train() == "completed"
        out[global_batch] = records[0]
    return out


def _stop_rank_1_at(step):
    def callback(trainer, record):
        if record["step"] == step and dist.get_rank() == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    return callback


def _job_resume(rank, straight_dir, stopped_dir):
    config = copy.deepcopy(TINY_PROGRESSIVE)
    straight = Trainer(config, straight_dir)
    assert straight.train() == "completed"
    # SIGTERM on rank 1 only after step 3: the ranks agree on it in step 4 and both stop after step 4.
    interrupted = Trainer(config, stopped_dir, callbacks=[_stop_rank_1_at(3)])
    status, step = interrupted.train(), interrupted.step_count
    resumed = Trainer.from_run(stopped_dir)
    resumed_at = resumed.step_count
    assert resumed.train() == "completed"
    return {"straight": _parameters(straight), "resumed": _parameters(resumed), "status": status, "step": step,
            "resumed_at": resumed_at}


def _job_one_rank_diverges(rank, run_dir):
    trainer = Trainer(copy.deepcopy(TINY), run_dir)
    if rank == 1:
        observations = trainer.observations

        def poisoned(positions):
            x = observations(positions)
            return x * float("nan") if trainer.step_count == 2 else x

        trainer.observations = poisoned
    try:
        trainer.train()
    except NonFiniteLossError as error:
        return {"error": str(error), "step": trainer.step_count}
    return {"error": None, "step": trainer.step_count}


def _job_indivisible_batch(rank, run_dir):
    config = copy.deepcopy(TINY)
    config["training"]["batch_size"] = 15
    try:
        Trainer(config, run_dir)
    except ConfigError as error:
        return {"error": str(error), "exists": os.path.exists(run_dir)}
    return {"error": None, "exists": os.path.exists(run_dir)}


def _job_average_gradients(rank):
    pyro.clear_param_store()
    a = pyro.param("a", torch.zeros(3)).unconstrained()
    b = pyro.param("b", torch.zeros(2)).unconstrained()
    c = pyro.param("c", torch.zeros(1)).unconstrained()
    a.grad = torch.tensor([1.0, 2.0, 3.0]) * (rank + 1)
    b.grad = torch.tensor([4.0, 8.0]) if rank == 1 else None  # rank 0 has no gradient for b
    optimizer = DistributedOptimizer(pyro.optim.SGD({"lr": 1.0}))
    optimizer([c, b, a])  # any order: the wrapper sorts by name
    return {name: pyro.param(name).detach().clone() for name in "abc"} | {"c_grad": c.grad}


def _job_small_checks(rank, run_dir):
    # The short jobs share one launch (starting two processes costs about 10 s on a small CPU).
    return {"average_gradients": _job_average_gradients(rank),
            "indivisible_batch": _job_indivisible_batch(rank, run_dir + "_indivisible"),
            "one_rank_diverges": _job_one_rank_diverges(rank, run_dir + "_diverged")}


@pytest.fixture(scope="module")
def small_checks(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("small_checks")
    return tmp_path / "run", _spawn("_job_small_checks", tmp_path, str(tmp_path / "run"))


# ---------------------------------------------------------------- tests

def test_gradients_are_averaged_over_ranks(small_checks):
    for result in [r["average_gradients"] for r in small_checks[1]]:
        # SGD with lr 1: the parameter is minus the mean gradient, a missing gradient counting as zero
        assert torch.equal(result["a"], -torch.tensor([1.0, 2.0, 3.0]) * (1 + 2) / 2)
        assert torch.equal(result["b"], -torch.tensor([4.0, 8.0]) / 2)
        assert torch.equal(result["c"], torch.zeros(1)) and result["c_grad"] is None


def test_two_processes_equal_one_process_of_the_global_batch(tmp_path):
    results = _spawn("_job_equivalence", tmp_path, str(tmp_path / "ddp"))
    single_records = []
    single = _noise_free(Trainer(_equivalence_config(), tmp_path / "single",
                                 callbacks=[lambda t, record: single_records.append(dict(record))]))
    assert single.train() == "completed"
    expected = _parameters(single)
    for result in results:
        # float32 and another summation order: equal up to rounding (about 1e-8 here); summed instead of averaged
        # gradients move the parameters by about 2e-3, a thousand times the tolerance
        for name, value in expected.items():
            torch.testing.assert_close(result["parameters"][name], value, rtol=1e-5, atol=1e-6,
                                       msg=lambda message, name=name: f"{name}: {message}")
        assert [r["step"] for r in result["records"]] == list(range(1, 7))
        for mine, reference in zip(result["records"], single_records):
            for key, value in reference.items():
                assert mine[key] == pytest.approx(value, rel=1e-5, abs=1e-5), key
    # the ranks hold the very same parameters
    for name, value in results[0]["parameters"].items():
        assert torch.equal(value, results[1]["parameters"][name]), name
    # only rank 0 wrote the run directory
    assert results[1]["writes"] == []
    assert {Path(path).name for _, path in results[0]["writes"]} >= {"config.toml", LOG_FILE}
    assert read_jsonl(tmp_path / "ddp" / LOG_FILE)[-1]["step"] == 6


def test_two_processes_hfvae_first_step_equals_one_process_of_the_global_batch(tmp_path):
    results = _spawn("_job_hfvae_first_step", tmp_path, str(tmp_path / "ddp"))
    config = copy.deepcopy(TINY)
    config["training"]["steps"] = 1
    records = []
    single = Trainer(config, tmp_path / "single", callbacks=[lambda t, record: records.append(dict(record))])
    single.model.guide = _DeterministicSamples()(single.model.guide)
    assert single.loss.global_batch is False  # one process: its batch is the global batch
    assert single.train() == "completed"
    expected = records[0]
    for result in results:
        # The logged loss and terms are the means over the ranks (float32, another summation order: the loss
        # agrees to about 1e-7 relative, the terms to 2e-6 absolute).
        assert result[True]["loss"] == pytest.approx(expected["loss"], rel=1e-6, abs=0)
        for key, value in expected.items():
            assert result[True][key] == pytest.approx(value, rel=1e-6, abs=5e-6), key
        # The checks can fail: with each rank's marginals over its own shard (beta = 4, gamma = 3), the loss is
        # another (by 3e-6 relative: the samples are posterior means, the reconstruction dominates) and so is
        # the mutual information (by 4e-4 nats).
        assert result[False]["loss"] != pytest.approx(expected["loss"], rel=1e-6, abs=0)
        assert abs(result[False]["mutual_info"] - expected["mutual_info"]) > 50 * 5e-6


def test_interrupted_and_resumed_run_is_bit_identical(tmp_path):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    results = _spawn("_job_resume", tmp_path, str(straight), str(stopped))
    for result in results:
        assert (result["status"], result["step"], result["resumed_at"]) == ("interrupted", 4, 4)
        assert result["straight"].keys() == result["resumed"].keys()
        for name, value in result["straight"].items():
            assert torch.equal(value, result["resumed"][name]), name
    # every rank's random streams are in the checkpoint, and they differ between the ranks
    state = load_checkpoint(straight / CHECKPOINT_FILE)
    assert state["world_size"] == 2 and len(state["rng_ranks"]) == 2
    assert torch.equal(state["rng_ranks"][0]["torch"], state["rng"]["torch"])
    assert not torch.equal(state["rng_ranks"][0]["torch"], state["rng_ranks"][1]["torch"])
    # the resumed run's log is the straight run's (up to timings), and a single process may not continue it
    drop_time = [[{k: v for k, v in r.items() if k != "seconds"} for r in read_jsonl(d / LOG_FILE)]
                 for d in (straight, stopped)]
    assert drop_time[0] == drop_time[1]
    with pytest.raises(ValueError, match="with 2 process"):
        Trainer.from_run(stopped, ["training.steps=8"])


def test_a_divergence_on_one_rank_stops_every_rank_alike(small_checks):
    run_dir, results = small_checks[0].with_name("run_diverged"), [r["one_rank_diverges"] for r in small_checks[1]]
    assert results[0] == results[1]
    assert results[0]["step"] == 2 and "training stopped at step 3" in results[0]["error"]
    assert "on rank 1 of 2" in results[0]["error"] and "observations" in results[0]["error"]
    events = [r for r in read_jsonl(run_dir / LOG_FILE) if "event" in r]
    assert [(e["event"], e["step"]) for e in events] == [("diverged", 3)]


def test_a_batch_size_not_divisible_by_the_processes_is_refused_before_writing(small_checks):
    for result in [r["indivisible_batch"] for r in small_checks[1]]:
        assert "batch_size" in result["error"] and "multiple of the number of processes (2)" in result["error"]
        assert "got 15" in result["error"] and not result["exists"]


_CLI_FLAGS = ["--data", "digits", "--subset", "96", "--batch-size", "16", "--steps", "4", "--checkpoint-every", "2",
              "--set", "model.hidden_dim=16", "--set", "model.style_dim=2", "--set", "evaluation.preset=\"none\"",
              "--set", "evaluation.information_points=64", "--no-progress"]


def test_torchrun_smoke(tmp_path):
    run = tmp_path / "run"
    result = _torchrun("train", "--out", str(run), *_CLI_FLAGS)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("training conv_hfvae") == 1  # rank 0 alone prints
    assert load_checkpoint(run / CHECKPOINT_FILE)["step"] == 4
    assert json.loads((run / "metrics.json").read_text())["step"] == 4


def test_torchrun_divergence_stops_both_ranks_with_the_diagnosis(tmp_path):
    result = _torchrun("train", "--out", str(tmp_path / "run"), "--lr", "1e20", "--no-report", *_CLI_FLAGS)
    assert result.returncode != 0
    # The two ranks write to one stderr at once, so their lines can run together: find the messages.
    errors = re.findall(r"pyro-hfvae train(?: \(rank \d\))?: error: (training stopped at step \d+: [^\n]*?\(--lr\))",
                        result.stderr)
    assert len(errors) == 2, result.stderr[-3000:]
    assert len(set(errors)) == 1

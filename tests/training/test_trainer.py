import json
import math
import os
import signal

import numpy as np
import pytest
import torch

from pyro_hfvae.infer.terms_elbo import NonFiniteLossError
from pyro_hfvae.training._divergence import _ExplosionMonitor
from pyro_hfvae.training.checkpoint import load_checkpoint, save_checkpoint
from pyro_hfvae.training.config import ConfigError
from pyro_hfvae.training.trainer import CHECKPOINT_FILE, LOG_FILE, ExplodingLossError, Trainer, read_jsonl


def _parameters(trainer):
    return {name: value.detach().clone() for name, value in trainer.model.state_dict().items()}


def _stop_at(step):
    def callback(trainer, record):
        if record["step"] == step:
            raise KeyboardInterrupt

    return callback


def _assert_identical(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.mark.parametrize("config_name", ["tiny_config", "tiny_progressive_config"])
def test_interrupted_and_resumed_run_is_bit_identical(config_name, request, tmp_path):
    config = request.getfixturevalue(config_name)
    uninterrupted = Trainer(config, tmp_path / "a")
    assert uninterrupted.train() == "completed"
    expected = _parameters(uninterrupted)
    expected_log = read_jsonl(tmp_path / "a" / LOG_FILE)

    # stopped after step 3, between two checkpoints (checkpoint_every = 2)
    interrupted = Trainer(config, tmp_path / "b", callbacks=[_stop_at(3)])
    assert interrupted.train() == "interrupted"
    assert load_checkpoint(tmp_path / "b" / CHECKPOINT_FILE)["step"] == 3
    resumed = Trainer.from_run(tmp_path / "b")
    assert resumed.step_count == 3
    assert resumed.train() == "completed"
    _assert_identical(expected, _parameters(resumed))
    # the log of the resumed run is the uninterrupted run's (up to timings)
    log = read_jsonl(tmp_path / "b" / LOG_FILE)
    drop_time = [{k: v for k, v in r.items() if k != "seconds"} for r in log]
    assert drop_time == [{k: v for k, v in r.items() if k != "seconds"} for r in expected_log]
    if config_name == "tiny_progressive_config":
        assert resumed.schedule.iteration == 6
        assert [r.stage for r in resumed.information_flow.records] == [0, 1]
        assert resumed.information_flow.records == uninterrupted.information_flow.records


def test_periodic_evaluation_does_not_change_training(tiny_config, tmp_path):
    plain = Trainer(tiny_config, tmp_path / "a")
    plain.train()
    tiny_config["training"]["eval_every"] = 2
    evaluated = Trainer(tiny_config, tmp_path / "b")
    evaluated.train()
    _assert_identical(_parameters(plain), _parameters(evaluated))
    evaluations = read_jsonl(tmp_path / "b" / "evaluations.jsonl")
    assert [r["step"] for r in evaluations] == [2, 4]
    assert all(-0.05 < r["information_total"] <= math.log(64) + 1e-6 for r in evaluations)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_after_the_step_with_a_checkpoint(signum, tiny_config, tmp_path):
    previous = signal.getsignal(signum)

    def send_signal(trainer, record):
        if record["step"] == 3:
            os.kill(os.getpid(), signum)

    trainer = Trainer(tiny_config, tmp_path, callbacks=[send_signal])
    assert trainer.train() == "interrupted"
    assert trainer.step_count == 3
    assert load_checkpoint(tmp_path / CHECKPOINT_FILE)["step"] == 3
    assert signal.getsignal(signum) is previous  # handlers restored
    assert read_jsonl(tmp_path / LOG_FILE)[-1] == {"step": 3, "event": "interrupted", "message": "stopped after step 3"}


def test_an_interrupt_inside_a_step_keeps_the_last_checkpoint(tiny_config, tmp_path, monkeypatch):
    trainer = Trainer(tiny_config, tmp_path)
    trainer.train(steps=2)
    original = trainer.loss.loss_and_grads

    def interrupted(*args, **kwargs):
        original(*args, **kwargs)  # gradients computed, parameters not yet updated
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer.loss, "loss_and_grads", interrupted)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert load_checkpoint(tmp_path / CHECKPOINT_FILE)["step"] == 2


@pytest.mark.parametrize("poison, expected", [
    # NaN decoder bias after step 3: the likelihood of step 4 is NaN; the error names the terms, the site and
    # the parameter
    ("decoder.4.bias", "non-finite terms: ['log_likelihood', "),
    # NaN encoder bias after step 3: the guide's distributions reject it; the error names the parameter
    ("encoder_head.bias", "expected finite parameters but ['hfvae$$$encoder_head.bias'] are not finite"),
    # NaN pixels after step 3
    ("data", "expected finite observations but the batch holds NaN or infinite values"),
    # a NaN parameter after step 4 is found before the checkpoint of step 4 is written
    ("encoder_head.bias at checkpoint", "expected finite parameters before writing a checkpoint but "
                                        "['hfvae$$$encoder_head.bias'] are not finite"),
])
def test_non_finite_values_stop_with_a_diagnosis(poison, expected, tiny_config, tmp_path, monkeypatch):
    def callback(trainer, record):
        if record["step"] != (4 if poison.endswith("checkpoint") else 3):
            return
        if poison == "data":
            observations = trainer.dataset.observations
            monkeypatch.setattr(trainer.dataset, "observations", lambda idx: observations(idx) * float("nan"))
            return
        with torch.no_grad():
            trainer.model.get_parameter(poison.split()[0]).fill_(float("nan"))

    trainer = Trainer(tiny_config, tmp_path, callbacks=[callback])
    with pytest.raises(NonFiniteLossError) as info:
        trainer.train()
    text = str(info.value)
    assert "training stopped at step 4: " in text
    assert expected in text
    if poison == "decoder.4.bias":
        assert "sites with non-finite log densities: ['x']" in text
        assert "non-finite parameters: ['hfvae$$$decoder.4.bias']" in text
    assert f"the last good checkpoint is {tmp_path / CHECKPOINT_FILE} (step 2)" in text
    assert "--resume" in text and "--lr" in text
    # the checkpoint holds the last good (finite) state; nothing was written after the NaN
    state = load_checkpoint(tmp_path / CHECKPOINT_FILE)
    assert state["step"] == 2 and all(torch.isfinite(v).all() for v in state["module"].values())
    assert read_jsonl(tmp_path / LOG_FILE)[-1]["event"] == "diverged"


def test_nan_gradient_is_caught_before_the_update(tiny_config, tmp_path):
    trainer = Trainer(tiny_config, tmp_path)
    trainer.train(steps=2)
    before = _parameters(trainer)
    trainer.model.decoder[0].weight.register_hook(lambda grad: grad * float("nan"))
    expected = r"gradients of 1 parameters are not finite: \['hfvae\$\$\$decoder.0.weight'\]"
    with pytest.raises(NonFiniteLossError, match=expected):
        trainer.train(steps=4)
    _assert_identical(before, _parameters(trainer))


def test_a_run_directory_is_not_overwritten_silently(tiny_config, tmp_path):
    tiny_config["training"]["steps"] = 1
    Trainer(tiny_config, tmp_path).train()
    with pytest.raises(FileExistsError, match="already holds a run"):
        Trainer(tiny_config, tmp_path)
    Trainer(tiny_config, tmp_path, overwrite=True)
    assert not (tmp_path / CHECKPOINT_FILE).exists() and not (tmp_path / LOG_FILE).exists()


def test_resume_may_change_only_what_does_not_define_the_run(tiny_config, tmp_path):
    Trainer(tiny_config, tmp_path).train()
    with pytest.raises(ConfigError, match="cannot change model.hidden_dim when resuming"):
        Trainer.from_run(tmp_path, ["model.hidden_dim=32"])
    resumed = Trainer.from_run(tmp_path, {"training.steps": 8, "optimizer.lr": 1e-4})
    state = resumed.optimizer.get_state() or resumed.optimizer._state_waiting_to_be_consumed
    assert all(group["lr"] == 1e-4 for saved in state.values() for group in saved["param_groups"])
    resumed.train()
    assert resumed.step_count == 8
    assert "steps = 8" in (tmp_path / "config.toml").read_text()


def test_evaluate_information_is_bounded_and_written(tiny_config, tmp_path):
    trainer = Trainer(tiny_config, tmp_path)
    trainer.train()
    result = trainer.evaluate("fast")
    assert set(result["metrics"]) == {"mig", "sap"}  # the single-factor metrics of digits
    information = result["information"]
    assert information["num_data"] == 64
    assert set(information["groups"]) == {"class", "style"} and set(information["variables"]) == {"y", "z"}
    assert len(information["variables"]["z"]) == 2 and len(information["variables"]["y"]) == 1
    for value in [information["total"], *information["sites"].values()]:
        assert -0.05 < value <= math.log(64) + 1e-6
    with open(tmp_path / "metrics.json") as file:
        assert json.load(file)["information"]["total"] == pytest.approx(information["total"])


def test_encode_matches_the_model(tiny_config):
    trainer = Trainer(tiny_config)
    x = trainer.observations(torch.arange(5))
    codes = trainer.model.encode(x)
    assert torch.allclose(trainer.encode(x), torch.cat([codes["y"], codes["z"]], -1))


def test_batches_cover_the_data_once_per_epoch(tiny_config):
    trainer = Trainer(tiny_config)
    positions = torch.cat([trainer.sampler.next() for _ in range(96 // 16)])
    assert sorted(positions.tolist()) == list(range(96))
    assert trainer.sampler.epoch == 0
    trainer.sampler.next()
    assert trainer.sampler.epoch == 1


def test_mnist_without_root_falls_back_to_digits(tiny_config):
    tiny_config["data"] = {"name": "mnist", "root": "", "subset": 32}
    with pytest.warns(UserWarning, match="scikit-learn's 8x8 digits stand in"):
        trainer = Trainer(tiny_config)
    assert trainer.dataset.observation_shape == (1, 8, 8)


def test_constructor_errors_become_config_errors(tiny_config):
    tiny_config["model"]["num_classes"] = 1
    with pytest.raises(ConfigError, match=r"\[model\] conv_hfvae: expected num_classes 0 or >= 2"):
        Trainer(tiny_config)
    tiny_config["model"]["num_classes"] = 3
    tiny_config["training"]["batch_size"] = 200
    with pytest.raises(ConfigError, match="expected .training. batch_size <= the number of training items"):
        Trainer(tiny_config)


@pytest.mark.parametrize("model", [
    {"name": "hierarchical_vae", "latent_dims": [3, 2], "channels": [4], "hidden_dim": 8},
    {"name": "ladder_vae", "latent_dims": [3, 2], "channels": [4], "hidden_dim": 8},
])
def test_hierarchical_models_train_with_hit(model, tiny_config, tmp_path):
    tiny_config.update(model=model, objective={"name": "hit", "betas": {"z1": 0.5, "z2": 2.0}})
    trainer = Trainer(tiny_config, tmp_path)
    trainer.train(steps=2)
    assert trainer.last_record["beta/z2"] == 2.0
    assert np.isfinite(trainer.last_record["rate/z1"])


@pytest.mark.parametrize("losses, exploded_at", [
    ([4300.0, 4290.0, 3e35, 2e35, 3e35], 5),  # a learning rate far too high: three steps in a row
    ([4300.0, 4290.0, 3e35, 4200.0, 3e35, 4100.0, 3e35], None),  # isolated spikes are tolerated
    ([4300.0, 4290.0, 4200.0 * 999, 4200.0 * 999, 4200.0], None),  # just below the factor: not suspect
    ([-900.0, -950.0, -1000.0, -1100.0, -1200.0], None),  # negative losses (continuous likelihoods)
    ([0.01, 0.02, 5e3, 5e3, 5e3], 5),  # a loss near zero: the scale is at least 1
    ([10.0, 9.0] + [8.0 * 10 ** k for k in range(1, 12)], 9),  # tenfold a step: 8e5 is the first 1000x its median
])
def test_explosion_monitor(losses, exploded_at):
    monitor = _ExplosionMonitor()
    for step, loss in enumerate(losses, 1):
        if step == exploded_at:
            with pytest.raises(ExplodingLossError, match=r"the loss exploded from step \d+ .* over 3 steps"):
                monitor.observe(step, loss)
            return
        monitor.observe(step, loss)
    assert exploded_at is None


@pytest.mark.parametrize("config_name, lr", [("tiny_config", 1e-3), ("tiny_config", 3e-2),
                                             ("tiny_progressive_config", 1e-3)])
def test_a_normal_run_does_not_trip_the_explosion_check(config_name, lr, request, tmp_path):
    config = request.getfixturevalue(config_name)
    config["training"].update(steps=40, checkpoint_every=10)
    config["optimizer"] = {"lr": lr}
    trainer = Trainer(config, tmp_path)
    assert trainer.train() == "completed"
    assert len(trainer._explosion.history) == 40 and not trainer._explosion.suspect
    assert load_checkpoint(tmp_path / CHECKPOINT_FILE)["step"] == 40


def test_an_exploding_loss_stops_as_a_divergence(tiny_config, tmp_path):
    # lr 1e6: the loss jumps from ~4e3 to ~3e35 and stays finite; the checkpoint of step 2 is held back
    tiny_config["optimizer"] = {"lr": 1e6}
    trainer = Trainer(tiny_config, tmp_path)
    with pytest.raises(ExplodingLossError) as info:
        trainer.train()
    text = str(info.value)
    assert text.startswith("training stopped at step 4: expected a loss within 1000 times the scale of its median")
    assert "the loss exploded from step 2" in text and "with finite parameters" in text
    assert "no checkpoint was written yet; start again with a lower learning rate (--lr)" in text
    assert not (tmp_path / CHECKPOINT_FILE).exists()
    event = read_jsonl(tmp_path / LOG_FILE)[-1]
    assert event == {"step": 4, "event": "diverged", "message": text, "cause": "exploding", "last_checkpoint": None}


def test_an_explosion_keeps_the_last_good_checkpoint(tiny_config, tmp_path):
    tiny_config["training"].update(steps=12, checkpoint_every=3)
    trainer = Trainer(tiny_config, tmp_path)
    trainer.train(steps=4)
    resumed = Trainer.from_run(tmp_path, {"optimizer.lr": 1e6})
    with pytest.raises(ExplodingLossError, match="the last good checkpoint is .* \\(step 4\\); continue from it"):
        resumed.train()
    state = load_checkpoint(tmp_path / CHECKPOINT_FILE)
    assert state["step"] == 4 and max(v.abs().max() for v in state["module"].values()) < 100


def test_distribution_validation_errors_are_diagnosed(tiny_config, tmp_path):
    # lr 1e20: finite parameters of 1e20 give NaN logits; Pyro's validation error becomes the diagnosis
    tiny_config["optimizer"] = {"lr": 1e20}
    with pytest.raises(NonFiniteLossError) as info:
        Trainer(tiny_config, tmp_path).train()
    text = str(info.value)
    assert text.startswith("training stopped at step 2: expected finite distribution arguments but those of the "
                           "sites ['y', 'z'] are not finite, from finite parameters (the largest, hfvae$$$")
    assert "\n" not in text and "tensor(" not in text
    assert "lower learning rate" in text
    event = read_jsonl(tmp_path / LOG_FILE)[-1]
    assert (event["event"], event["cause"], event["step"]) == ("diverged", "non-finite", 2)


def test_an_overflowing_weight_is_not_blamed_on_the_learning_rate(tiny_config, tmp_path):
    tiny_config["objective"]["alpha"] = 1e308
    with pytest.raises(NonFiniteLossError) as info:
        Trainer(tiny_config, tmp_path).train()
    text = str(info.value)
    assert text.startswith("training stopped at step 1: ")
    assert ("so the learning rate is not at fault: the objective overflows; check its weights ([objective] "
            "alpha = 1e+308, ") in text
    assert "lower learning rate" not in text and "--lr" not in text
    assert read_jsonl(tmp_path / LOG_FILE)[-1]["event"] == "diverged"


def test_resume_cannot_shorten_a_run(tiny_config, tmp_path):
    Trainer(tiny_config, tmp_path).train()
    before = {name: (tmp_path / name).read_bytes() for name in ("config.toml", LOG_FILE, CHECKPOINT_FILE)}
    with pytest.raises(ConfigError, match=r"expected \[training\] steps >= 6 \(the run is at step 6\) but got 3; "
                                          "pass --steps N with N >= 6"):
        Trainer.from_run(tmp_path, {"training.steps": 3})
    assert {name: (tmp_path / name).read_bytes() for name in before} == before
    trainer = Trainer.from_run(tmp_path)
    with pytest.raises(ValueError, match=r"expected a number of steps >= 6 \(the steps already done\) but got 2"):
        trainer.train(steps=2)
    # a read-only load (evaluate, plot) is not a resumption
    assert Trainer.from_run(tmp_path, {"training.steps": 3}, read_only=True).step_count == 6


@pytest.mark.parametrize("damage, expected", [
    ("no config", "has no config.toml, so it is not a run directory; pass the directory given to pyro-hfvae train"),
    ("no checkpoint", "has no checkpoint.pt, so it is not a run directory"),
    ("missing", "does not exist"),
    ("corrupt checkpoint", "could not read .*checkpoint.pt as a pyro_hfvae checkpoint"),
    ("edited config", "config.toml to describe the run of its checkpoint.pt but model.hidden_dim differ; undo"),
])
def test_from_run_rejects_what_is_not_its_run(damage, expected, tiny_config, tmp_path):
    run = tmp_path / "run"
    tiny_config["training"]["steps"] = 2
    Trainer(tiny_config, run).train()
    if damage == "no config":
        (run / "config.toml").unlink()
    elif damage == "no checkpoint":
        (run / CHECKPOINT_FILE).unlink()
    elif damage == "missing":
        run = tmp_path / "elsewhere"
    elif damage == "corrupt checkpoint":
        data = (run / CHECKPOINT_FILE).read_bytes()
        (run / CHECKPOINT_FILE).write_bytes(data[: len(data) // 2])
    else:
        text = (run / "config.toml").read_text()
        (run / "config.toml").write_text(text.replace("hidden_dim = 16", "hidden_dim = 8"))
    with pytest.raises((FileNotFoundError, ValueError), match=expected) as info:
        Trainer.from_run(run)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("where", ["a file", "under a file", "not writable"])
def test_an_unusable_run_directory_is_refused_before_anything_is_written(where, tiny_config, tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    run = {"a file": tmp_path / "file", "under a file": tmp_path / "file" / "run",
           "not writable": tmp_path / "locked" / "run"}[where]
    if where == "not writable":
        (tmp_path / "locked").mkdir()
        access = os.access
        monkeypatch.setattr(os, "access", lambda path, mode: access(path, mode) and "locked" not in str(path))
    expected = {"a file": "is a file; choose another --out", "under a file": "above .* is a file; choose another",
                "not writable": "locked is not writable; choose another --out"}[where]
    with pytest.raises(OSError, match=expected):
        Trainer(tiny_config, run)
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(["file"] + (["locked"] if where == "not writable"
                                                                             else []))


@pytest.mark.parametrize("data, expected", [
    ({"subset": 5000}, r"expected \[data\] subset <= 1797 \(the size of digits\) but got 5000"),
    ({"subset": 0}, r"expected \[training\] batch_size <= the number of training items \(1797\) but got 4096"),
    ({"subset": 1}, r"expected \[training\] batch_size <= the number of training items \(1\) but got 16"),
])
def test_data_set_sizes_are_checked_before_the_run_directory_exists(data, expected, tiny_config, tmp_path):
    tiny_config["data"].update(data)
    tiny_config["training"]["batch_size"] = 4096 if data["subset"] == 0 else 16
    with pytest.raises(ConfigError, match=expected):
        Trainer(tiny_config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


_KILLED_WRITE = """
import os, signal, sys
from pyro_hfvae.util import atomic_file
with atomic_file(sys.argv[1]) as file:
    file.write(b"half a checkpoint")
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.fixture(scope="module")
def killed_write(tmp_path_factory):
    """The file that a kill -9 inside atomic_file (as during a checkpoint write) leaves: its name and content."""
    import subprocess
    import sys

    folder = tmp_path_factory.mktemp("killed")
    killed = subprocess.run([sys.executable, "-c", _KILLED_WRITE, str(folder / CHECKPOINT_FILE)],
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert killed.returncode == -signal.SIGKILL
    (left,) = folder.iterdir()
    assert left.name.startswith(".checkpoint.pt.") and not (folder / CHECKPOINT_FILE).exists()
    return left.name, left.read_bytes()


@pytest.mark.parametrize("start", ["new", "overwrite", "resume", "read only"])
def test_temporaries_of_killed_writes_are_removed_on_start_and_resume(start, killed_write, tiny_config, tmp_path):
    run = tmp_path / "run"
    tiny_config["training"]["steps"] = 2
    if start != "new":
        Trainer(tiny_config, run).train()
    run.mkdir(exist_ok=True)
    (run / killed_write[0]).write_bytes(killed_write[1])
    left = [killed_write[0]]
    others = [".config.toml.ab_3x9q7.tmp", ".checkpoint.pt.tmp", "notes.tmp", ".log.jsonl.toolong99.tmp"]
    for name in others:
        (run / name).write_text("")
    if start == "resume":
        Trainer.from_run(run)
    elif start == "read only":
        Trainer.from_run(run, read_only=True)
    else:
        Trainer(tiny_config, run, overwrite=start == "overwrite")
    remaining = sorted(p.name for p in run.iterdir() if p.name.endswith(".tmp"))
    if start == "read only":  # evaluate and plot may run beside a training process: they leave its files alone
        assert remaining == sorted(left + others)
    else:
        assert remaining == sorted([".checkpoint.pt.tmp", "notes.tmp", ".log.jsonl.toolong99.tmp"])


def test_compiled_objective_trains_and_starts_as_the_eager_one(tiny_config, tmp_path):
    from pyro_hfvae.infer import HFVAELoss, JitHFVAELoss

    tiny_config["training"].update(steps=2, checkpoint_every=2)
    eager = Trainer(tiny_config, tmp_path / "eager")
    assert eager.train() == "completed"
    tiny_config["objective"]["compile"] = True
    compiled = Trainer(tiny_config, tmp_path / "compiled")
    assert compiled.train() == "completed"
    assert type(eager.loss) is HFVAELoss and type(compiled.loss) is JitHFVAELoss
    first = [read_jsonl(tmp_path / run / LOG_FILE)[0] for run in ("eager", "compiled")]
    # Same seed, same first batch and parameters: the losses agree to float32 rounding of the kernels.
    assert first[1]["loss"] == pytest.approx(first[0]["loss"], rel=1e-5)
    assert all(math.isfinite(r["loss"]) for r in read_jsonl(tmp_path / "compiled" / LOG_FILE))


def test_compile_is_an_hfvae_option(tiny_progressive_config):
    tiny_progressive_config["objective"]["compile"] = True
    with pytest.raises(ConfigError, match="unknown key \\[objective\\] compile"):
        Trainer(tiny_progressive_config)


def _train_as_written_before(config, run_dir, section, key):
    """Trains a run, then removes ``[section] key = true`` from its config.toml and checkpoint, as
    written before the key existed."""
    Trainer(config, run_dir).train()
    path = run_dir / "config.toml"
    assert f"{key} = true" in path.read_text()
    path.write_text(path.read_text().replace(f"{key} = true\n", ""))
    state = load_checkpoint(run_dir / CHECKPOINT_FILE)
    del state["config"][section][key]
    save_checkpoint(run_dir / CHECKPOINT_FILE, {k: v for k, v in state.items() if k != "format"})


def test_a_run_written_before_fused_adam_resumes_with_the_unfused_adam(tiny_config, tmp_path):
    _train_as_written_before(tiny_config, tmp_path, "optimizer", "fused")
    path = tmp_path / "config.toml"
    resumed = Trainer.from_run(tmp_path, {"training.steps": 8})
    assert resumed.config["optimizer"]["fused"] is False
    resumed.train()
    assert "fused = false" in path.read_text()
    # a run that names the setting keeps it
    assert Trainer.from_run(tmp_path).config["optimizer"]["fused"] is False


@pytest.mark.parametrize("flush", [True, False])
def test_flush_denormal_is_applied(flush, tiny_config, monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "set_flush_denormal", lambda mode: calls.append(mode) or True)
    tiny_config.setdefault("training", {})["flush_denormal"] = flush
    Trainer(tiny_config)
    assert calls == [flush]


def test_a_run_written_before_flush_denormal_resumes_keeping_subnormals(tiny_config, tmp_path, monkeypatch):
    _train_as_written_before(tiny_config, tmp_path, "training", "flush_denormal")
    calls = []
    monkeypatch.setattr(torch, "set_flush_denormal", lambda mode: calls.append(mode) or True)
    resumed = Trainer.from_run(tmp_path, {"training.steps": 8})
    assert resumed.config["training"]["flush_denormal"] is False and calls == [False]


def test_flushing_subnormals_zeroes_them():
    # What the setting does: a subnormal float32 product becomes zero.
    tiny = torch.finfo(torch.float32).tiny
    x = torch.tensor([tiny])
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush subnormals")
    try:
        assert (x * 0.5).item() == 0.0
    finally:
        torch.set_flush_denormal(False)
    assert (x * 0.5).item() == tiny / 2


def test_a_warm_up_trains_its_first_steps_with_the_weighted_rates(tiny_config, tmp_path):
    tiny_config["objective"].update(warmup_steps=3, warmup_betas={"style": 64.0})
    trainer = Trainer(tiny_config, tmp_path / "run")
    assert trainer.train() == "completed"
    records = [r for r in read_jsonl(tmp_path / "run" / LOG_FILE) if "loss" in r]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    for record in records[:3]:  # HITLoss: the style's rate times 64, the class's times 1
        assert (record["beta/z"], record["beta/y"]) == (64.0, 1.0)
        weighted = record["distortion"] + 64.0 * record["rate/z"] + record["rate/y"]
        assert record["loss"] == pytest.approx(96 * weighted, rel=1e-5)  # N = 96 digits
    for record in records[3:]:  # the HFVAE loss and its decomposition
        assert "beta/z" not in record and "tc_between" in record
    assert trainer.warmup_loss.concrete_scoring == trainer.loss.concrete_scoring


def test_a_run_interrupted_in_its_warm_up_resumes_bit_identical(tiny_config, tmp_path):
    tiny_config["objective"].update(warmup_steps=3, warmup_betas={"z": 16.0})
    uninterrupted = Trainer(tiny_config, tmp_path / "a")
    uninterrupted.train()
    interrupted = Trainer(tiny_config, tmp_path / "b", callbacks=[_stop_at(2)])
    assert interrupted.train() == "interrupted"
    resumed = Trainer.from_run(tmp_path / "b")
    assert resumed.train() == "completed"
    _assert_identical(_parameters(uninterrupted), _parameters(resumed))


@pytest.mark.parametrize("objective, expected", [
    ({"name": "hfvae", "warmup_steps": -1}, "warmup_steps >= 0"),
    ({"name": "hfvae", "warmup_steps": 2, "warmup_betas": {"style": -1.0}}, "style"),
    ({"name": "hit", "warmup_steps": 2}, "unknown key \\[objective\\] warmup_steps"),
])
def test_bad_warm_ups(objective, expected, tiny_config):
    tiny_config["objective"] = objective
    with pytest.raises(ConfigError, match=expected):
        Trainer(tiny_config)

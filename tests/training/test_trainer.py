import json
import math
import os
import signal

import numpy as np
import pytest
import torch

from pyro_hfvae.infer.terms_elbo import NonFiniteLossError
from pyro_hfvae.training.checkpoint import load_checkpoint
from pyro_hfvae.training.config import ConfigError
from pyro_hfvae.training.trainer import CHECKPOINT_FILE, LOG_FILE, Trainer, read_jsonl


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

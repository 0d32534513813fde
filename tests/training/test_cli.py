import json
import subprocess
import sys

import pytest
import torch

from pyro_hfvae.training import _training_loop
from pyro_hfvae.training.checkpoint import load_checkpoint
from pyro_hfvae.training.cli import main
from pyro_hfvae.training.trainer import read_jsonl

TINY_FLAGS = ["--data", "digits", "--subset", "96", "--batch-size", "16", "--seed", "3", "--checkpoint-every", "2",
              "--log-every", "1", "--set", "model.hidden_dim=16", "--set", "model.style_dim=2",
              "--set", "evaluation.information_points=64", "--no-progress"]


def _module_state(run_dir):
    return load_checkpoint(run_dir / "checkpoint.pt")["module"]


def test_train_resume_evaluate_plot(tmp_path, capsys):
    run = tmp_path / "run"
    # a step limit stands for the interruption; resuming continues to the full length
    assert main(["train", "--out", str(run), "--steps", "3", "--no-report", *TINY_FLAGS]) == 0
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 3
    assert main(["train", "--resume", str(run), "--steps", "6", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "resuming" in out and "summary:" in out
    for name in ("config.toml", "log.jsonl", "checkpoint.pt", "metrics.json", "summary.md", "summary.html"):
        assert (run / name).is_file(), name
    assert sorted(p.name for p in (run / "figures").iterdir()) == [
        "latent_traversals.png", "reconstructions.png", "structure_graph.png", "training_curves.png",
        "variable_information.png"]
    assert [r["step"] for r in read_jsonl(run / "log.jsonl")] == [1, 2, 3, 4, 5, 6]
    summary = (run / "summary.md").read_text()
    assert "Status: **completed** after 6 of 6 steps" in summary and "![latent_traversals]" in summary

    # the same run without the interruption ends with the same parameters
    straight = tmp_path / "straight"
    assert main(["train", "--out", str(straight), "--steps", "6", "--no-report", *TINY_FLAGS]) == 0
    expected, resumed = _module_state(straight), _module_state(run)
    assert all(torch.equal(expected[k], resumed[k]) for k in expected)

    assert main(["evaluate", str(run), "--preset", "fast"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["preset"] == "fast" and set(metrics["metrics"]) == {"mig", "sap"}
    assert "| MIG |" in (run / "summary.md").read_text()
    (run / "figures" / "structure_graph.png").unlink()
    assert main(["plot", str(run)]) == 0
    assert (run / "figures" / "structure_graph.png").stat().st_size > 0


def test_interrupted_training_exits_130_with_a_checkpoint(tmp_path, capsys, monkeypatch):
    original = _training_loop._train_step

    def stop_after_two(trainer, *args):
        original(trainer, *args)
        if trainer.step_count == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(_training_loop, "_train_step", stop_after_two)
    assert main(["train", "--out", str(tmp_path), "--steps", "5", *TINY_FLAGS]) == 130
    assert "Continue with: pyro-hfvae train --resume" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 2
    assert not (tmp_path / "summary.md").exists()


@pytest.mark.parametrize("argv, message", [
    (["train", "--out", "{tmp}/a", "--set", "training.stpes=3"], "did you mean 'steps'?"),
    (["train", "--out", "{tmp}/a", "--data", "dsprite"], "did you mean 'dsprites'?"),
    (["train", "--out", "{tmp}/a", "--set", "model.style_dims=4"], "unknown key [model] style_dims"),
    (["train", "--steps", "3"], "expected --out RUN_DIR"),
    (["train", "--config", "nope", "--out", "{tmp}/a"], "expected a TOML file or a shipped configuration"),
    (["evaluate", "{tmp}/missing"], "expected a run directory (written by pyro-hfvae train --out) but"),
    (["train", "--resume", "{tmp}/missing"], "expected a run directory (written by pyro-hfvae train --out) but"),
    # the whole configuration is checked before the run directory is created
    (["train", "--out", "{tmp}/a", "--subset", "1", "--steps", "2"],
     "expected [training] batch_size <= the number of training items (1) but got 16"),
    (["train", "--out", "{tmp}/a", "--set", "optimizer.betas=[0.9]"],
     "expected [optimizer] betas to be two numbers in [0, 1), like [0.9, 0.999], but got [0.9]"),
    (["train", "--out", "{tmp}/a", "--steps", "0"], "expected [training] steps >= 1 but got 0"),
    (["train", "--out", "{tmp}/a", "--checkpoint-every", "-1"], "expected [training] checkpoint_every >= 0"),
    (["train", "--out", "{tmp}/a", "--set", "training.steps=abc"], "expected [training] steps to be an int"),
    (["train", "--out", "{tmp}/a", "--device", "tpu"], "expected [training] device to be 'auto', 'cpu'"),
    (["train", "--out", "{tmp}/a", "--lr", "nan"], "expected [optimizer] lr to be a finite number"),
    (["train", "--out", "{tmp}/a", "--seed", "-1"], "expected [training] seed >= 0 but got -1"),
    # an unusable --out
    (["train", "--out", "{tmp}/file"], "is a file; choose another --out"),
    (["train", "--out", "{tmp}/file/run"], "above {tmp}/file/run, is a file; choose another --out"),
    # evaluate, plot and compare something that is not a run
    (["evaluate", "{tmp}"], "has no config.toml, so it is not a run directory; pass the directory given to"),
    (["plot", "{tmp}/file"], "is a file"),
    (["compare", "{tmp}/missing", "{tmp}/file"], "expected a run directory but {tmp}/missing does not exist"),
    (["compare", "{tmp}"], "expected {tmp}/metrics.json but there is none; evaluate the run first"),
])
def test_errors_are_one_line_with_the_fix(argv, message, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    (tmp_path / ".checkpoint.pt").write_text("")  # not a run directory all the same
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if argv[0] == "train":  # the tested flags come last and win; a check that failed would train one step
        argv = ["train", "--steps", "1", "--no-report", *TINY_FLAGS, *argv[1:]]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message.replace("{tmp}", str(tmp_path)) in err and err.startswith("pyro-hfvae ") and err.count("\n") == 1
    assert not (tmp_path / "a").exists()


@pytest.fixture
def run_of_four_steps(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--steps", "4", "--no-report", *TINY_FLAGS]) == 0
    return run


@pytest.mark.parametrize("argv, message", [
    (["--steps", "2"], "expected [training] steps >= 4 (the run is at step 4) but got 2; pass --steps N with N >= 4"),
    (["--set", "model.hidden_dim=8"], "cannot change model.hidden_dim when resuming"),
    (["--seed", "9"], "cannot change training.seed when resuming"),
    (["--overwrite"], "expected --overwrite to be left out with --resume"),
    (["--out", "{tmp}/other"], "expected --out to be left out with --resume"),
])
def test_resume_errors_leave_the_run_unchanged(argv, message, run_of_four_steps, tmp_path, capsys):
    run = run_of_four_steps
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["train", "--resume", str(run), "--no-progress", "--no-report", *argv]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_resume_of_a_finished_run_trains_nothing(run_of_four_steps, capsys):
    config = (run_of_four_steps / "config.toml").read_bytes()
    assert main(["train", "--resume", str(run_of_four_steps), "--no-progress", "--no-report"]) == 0
    assert "at step 4 of 4" in capsys.readouterr().out
    assert (run_of_four_steps / "config.toml").read_bytes() == config


@pytest.mark.parametrize("flags, message", [
    (["--lr", "1e6"], "training stopped at step 4: expected a loss within 1000 times the scale of its median"),
    (["--lr", "1e20"], "training stopped at step 2: expected finite distribution arguments but those of the sites"),
    (["--alpha", "1e308"], "so the learning rate is not at fault: the objective overflows"),
])
def test_a_diverged_run_exits_1_with_a_one_line_diagnosis(flags, message, tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path), "--steps", "10", "--no-report", *TINY_FLAGS, *flags]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert read_jsonl(tmp_path / "log.jsonl")[-1]["event"] == "diverged"


@pytest.mark.parametrize("argv", [["train", "--steps", "abc"], ["train", "--config", "a", "--resume", "b"],
                                  ["evaluate"], ["nope"]])
def test_usage_errors_are_one_line(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert err.startswith("pyro-hfvae") and err.count("\n") == 1 and "--help" in err


def test_an_unwritable_out_is_one_line_without_a_traceback(tmp_path):
    (tmp_path / "file").write_text("")
    result = subprocess.run([sys.executable, "-m", "pyro_hfvae.training.cli", "train", "--out",
                             str(tmp_path / "file" / "run"), "--steps", "1"], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.startswith("pyro-hfvae train: error: expected a directory for the run but ")
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1


def test_an_existing_run_is_not_overwritten(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path), "--steps", "1", "--no-report", *TINY_FLAGS]) == 0
    assert main(["train", "--out", str(tmp_path), "--steps", "1", "--no-report", *TINY_FLAGS]) == 1
    assert "already holds a run" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path), "--steps", "1", "--no-report", "--overwrite", *TINY_FLAGS]) == 0


def test_compare_runs(tmp_path, capsys):
    for name, (mig, mig_sup) in {"a": (0.1, 0.3), "b": (0.4, 0.2)}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps({"metrics": {"mig": mig, "mig_sup": mig_sup}}))
    out = tmp_path / "comparison.png"
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 0
    assert out.stat().st_size > 1000


def test_console_script_lists_the_shipped_configs():
    result = subprocess.run([sys.executable, "-m", "pyro_hfvae.training.cli", "configs"], capture_output=True,
                            text=True, check=True)
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert names == ["hfvae_dsprites", "hfvae_mnist", "hfvae_mnist_ss", "hit_mnist", "provlae_dsprites"]


def test_under_a_process_group_every_rank_leaves_it_before_the_report(tmp_path, monkeypatch):
    # A rank that exits while a peer still holds its gloo connections can abort, and rank 0's report
    # takes a while: so the ranks meet and destroy the group first (one rank here, the same code path).
    import torch.distributed as dist

    from pyro_hfvae.training import cli

    seen = []
    monkeypatch.setattr(cli, "_report", lambda trainer, preset=None: seen.append(dist.is_initialized()))
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        assert main(["train", "--out", str(tmp_path), "--steps", "2", *TINY_FLAGS]) == 0
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    assert seen == [False]

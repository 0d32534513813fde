import json
import subprocess
import sys

import pytest
import torch

from pyro_hfvae.training.checkpoint import load_checkpoint
from pyro_hfvae.training.cli import main
from pyro_hfvae.training.trainer import Trainer, read_jsonl

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
    original = Trainer._train_step

    def stop_after_two(self, *args):
        original(self, *args)
        if self.step_count == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_train_step", stop_after_two)
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
    (["evaluate", "{tmp}/missing"], "expected a run directory with checkpoint.pt"),
    (["train", "--resume", "{tmp}/missing"], "expected a run directory with checkpoint.pt"),
])
def test_errors_are_one_line_with_the_fix(argv, message, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and err.startswith("pyro-hfvae ") and err.count("\n") == 1


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
    assert names == ["hfvae_dsprites", "hfvae_mnist", "hit_mnist", "provlae_dsprites"]

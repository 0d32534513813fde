import json
import math

import numpy as np
import pytest
import scipy.stats

from pyro_hfvae import HFVAELoss, HITLoss
from pyro_hfvae.training import Trainer


@pytest.fixture
def example(load_example):
    return load_example("hfvae_dsprites")


def _args(example, tmp_path, *flags):
    argv = ["--preset", "smoke", "--runs-dir", str(tmp_path / "runs"), "--results", str(tmp_path / "results"), *flags]
    return example.parse_with_preset(example.make_parser(), example.PRESETS, argv)


@pytest.mark.parametrize("count, expected", [(1, "1 seed"), (2, "2 seeds"), (10, "10 seeds")])
def test_seed_count_says_seed_for_one(example, count, expected):
    assert example.seed_count(count) == expected


def test_objectives_are_the_special_cases_of_one_loss(example, tmp_path):
    args = _args(example, tmp_path, "--beta", "5", "--gamma", "2")
    losses, classes = {}, {}
    for model in example.MODELS:
        trainer = Trainer(example.run_config(args, model, seed=0))
        losses[model], classes[model] = trainer.loss, trainer.config["model"]["num_classes"]
    weights = {m: (loss.alpha, loss.beta, loss.gamma) for m, loss in losses.items() if isinstance(loss, HFVAELoss)}
    assert weights == {"vae": (1.0, 1.0, 1.0), "beta-tcvae": (1.0, 5.0, 5.0), "hfvae": (1.0, 5.0, 2.0)}
    assert isinstance(losses["beta-vae"], HITLoss) and losses["beta-vae"].default_beta == 5.0
    assert classes == {"vae": 0, "beta-vae": 0, "beta-tcvae": 0, "hfvae": 3}


def test_smoke_runs_score_and_continue_with_their_curve(example, tmp_path):
    records = example.main(_args(example, tmp_path, "--models", "beta-vae", "hfvae",
                                 "--dci", "forest", "forest-validated"))
    assert [r["model"] for r in records] == ["beta-vae", "hfvae"]
    for record in records:
        assert [(p["step"], p["images"]) for p in record["curve"]] == [(2, 32), (4, 64)]
        for key in ("mig", "mig_sup", "factor_vae_eval_accuracy", "dci_disentanglement", "dci_completeness",
                    "validated_dci_disentanglement", "validated_dci_completeness"):
            assert 0.0 <= record["final"][key] <= 1.0, key
        assert len(record["final"]["validated_dci_max_depths"]) == 5
        for key in ("dci_importance", "validated_dci_importance"):  # codes x factors, columns sum to one
            importance = np.array(record["final"][key])
            assert importance.shape == (10 + (3 if record["model"] == "hfvae" else 0), 5)
            np.testing.assert_allclose(importance.sum(axis=0), 1.0, rtol=1e-9)
        assert "dci_max_depths" not in record["final"]  # full depth: nothing chosen
        assert math.isfinite(record["information"]["total"])
    assert set(records[1]["information"]["groups"]) == {"class", "style"}
    shares = records[1]["final"]["class_information"]
    assert list(shares) == ["shape", "scale", "orientation", "posX", "posY"]
    assert all(0.0 <= share <= 1.0 for share in shares.values())
    assert "class_information" not in records[0]["final"]
    # a finished result file is reused; a larger --steps continues the run and keeps the earlier points
    again = example.main(_args(example, tmp_path, "--models", "hfvae"))
    assert again[0] == json.loads((tmp_path / "results" / "hfvae_seed0.json").read_text()) == records[1]
    longer = example.main(_args(example, tmp_path, "--models", "hfvae", "--steps", "6"))[0]
    assert [p["step"] for p in longer["curve"]] == [2, 4, 6] and longer["curve"][:2] == records[1]["curve"]
    table, depth_table = example.summary(tmp_path / "results").split("\n\nDCI from full-depth forests")
    assert table.count("\n") == 5 and "| HFVAE | 0 | 96 |" in table and "| beta-VAE | 0 | 64 |" in table
    assert "I(class; factor) / H(factor), over 1 seed: shape " in table
    # the HFVAE's file was rewritten by the longer run, scored with the default full-depth forest only
    assert "\n| beta-VAE | 0 | " in depth_table and "HFVAE" not in depth_table
    assert example.plot_importance(tmp_path / "results", tmp_path / "importance.png")
    assert (tmp_path / "importance.png").stat().st_size > 0
    assert not example.plot_importance(tmp_path, tmp_path / "none.png") and not (tmp_path / "none.png").exists()


def test_scoring_on_the_way_leaves_the_run_as_without_it(example, tmp_path):
    scored = example.main(_args(example, tmp_path / "a", "--models", "hfvae", "--steps", "6", "--score-at", "4", "2"))
    plain = example.main(_args(example, tmp_path / "b", "--models", "hfvae", "--steps", "6"))
    assert scored[0]["final"] == plain[0]["final"] and scored[0]["curve"] == plain[0]["curve"]
    for steps in (2, 4):
        record = json.loads((tmp_path / "a" / "results" / f"at_step{steps}" / "hfvae_seed0.json").read_text())
        assert record["steps"] == steps and record["images"] == 16 * steps
        assert record["curve"] == plain[0]["curve"][: steps // 2]  # one point every 2 steps
        assert 0.0 <= record["final"]["dci_disentanglement"] <= 1.0
    assert record["final"] != plain[0]["final"]
    with pytest.raises(SystemExit, match="its checkpoint is at step 6; drop 5 from --score-at"):
        example.main(_args(example, tmp_path / "a", "--models", "hfvae", "--steps", "8", "--score-at", "5"))


def test_a_run_made_with_other_settings_is_refused(example, tmp_path):
    example.main(_args(example, tmp_path, "--models", "beta-tcvae"))
    (tmp_path / "results" / "beta-tcvae_seed0.json").unlink()
    with pytest.raises(SystemExit, match="objective.beta, objective.gamma differ"):
        example.main(_args(example, tmp_path, "--models", "beta-tcvae", "--steps", "6", "--beta", "2"))


def test_the_mean_curve_averages_the_points_every_run_has(example):
    first = [{"images": 10, "mig": 0.1}, {"images": 20, "mig": 0.3}, {"images": 30, "mig": 0.5}]
    second = [{"images": 10, "mig": 0.2}, {"images": 20}]  # cut short, and its last point unscored
    images, mean = example.mean_curve([first, second], "mig")
    assert images == [10, 20]
    assert mean[0] == pytest.approx(0.15) and np.isnan(mean[1])
    assert example.mean_curve([first], "mig") == ([10, 20, 30], pytest.approx([0.1, 0.3, 0.5]))


def test_the_figure_draws_every_run(example, tmp_path):
    example.main(_args(example, tmp_path, "--models", "vae", "hfvae", "--figure"))
    assert (tmp_path / "results" / "curves.png").stat().st_size > 10_000


def test_the_hfvae_runs_make_a_reference_curve_that_their_configuration_matches(example, tmp_path):
    from pyro_hfvae.training.reference_runs import matching_reference

    args = _args(example, tmp_path, "--models", "hfvae", "--seeds", "0", "1",
                 "--reference-out", str(tmp_path / "reference" / "curve.json"))
    records = example.main(args)
    curve = json.loads((tmp_path / "reference" / "curve.json").read_text())
    assert [p["images"] for p in curve["points"]] == [32, 64] and curve["seeds"] == [0, 1]
    for point, first, second in zip(curve["points"], records[0]["curve"], records[1]["curve"]):
        values = [first["information/class"], second["information/class"]]
        assert point["metrics"]["information/class"] == pytest.approx([np.mean(values), np.std(values, ddof=1)])
    config = example.run_config(args, "hfvae", seed=5)
    assert matching_reference(config, tmp_path / "reference")["name"] == "hfvae_dsprites_mlp"
    config["training"]["batch_size"] = 64
    assert matching_reference(config, tmp_path / "reference") is None
    assert matching_reference(example.run_config(args, "beta-tcvae", seed=0), tmp_path / "reference") is None


def test_the_gpu_script_runs_the_four_models_on_a_cpu_at_smoke_size(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "examples" / "dsprites_gpu.sh"
    env = dict(os.environ, OUT=str(tmp_path), STEPS="4", PYTHON=sys.executable)
    result = subprocess.run(["bash", str(script), "--allow-cpu"], env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    summary = (tmp_path / "summary.md").read_text()
    assert all(f"| {name} | 0 | 32 |" in summary for name in ("VAE", "beta-VAE", "beta-TCVAE", "HFVAE"))
    assert (tmp_path / "results" / "curves.png").is_file()


def test_paired_table_compares_the_hfvae_seed_by_seed(example):
    scores = {"hfvae": [0.40, 0.30, 0.50], "beta-vae": [0.30, 0.35, 0.20, 0.9]}
    records = [{"model": model, "seed": seed, "final": {"dci_disentanglement": value, "factor_vae_eval_accuracy": 0.5,
                                                        "mig": 0.1 * seed}}
               for model, values in scores.items() for seed, value in enumerate(values)]
    lines = example.paired_table(records).splitlines()
    assert len(lines) == 2 + 3  # one baseline, three scores; seed 3 has no HFVAE run
    cells = [cell.strip() for cell in lines[2].strip("|").split("|")]
    differences = [0.10, -0.05, 0.30]
    mean, sd = np.mean(differences), np.std(differences, ddof=1)
    t_p = 2 * scipy.stats.t.sf(mean / (sd / np.sqrt(3)), 2)
    assert cells == ["DCI D", "beta-VAE", "0, 1, 2", "+0.100, -0.050, +0.300", f"{mean:.3f} +- {sd:.3f}", "2/3",
                     f"{t_p:.3g}", "0.5"]  # Wilcoxon: ranks 2, 1, 3, W+ = 5; 4 of the 8 sign patterns as extreme


@pytest.mark.parametrize("position_rows, expected", [
    ([[1.0, 0.0], [0.0, 1.0]], 0.0),          # one code per position factor
    ([[0.5, 0.5], [0.5, 0.5]], 0.5),          # both codes carry both alike
    ([[0.4, 0.1], [0.1, 0.4]], 0.2),          # rotated part of the way
])
def test_position_mixing_reads_the_two_position_codes(example, position_rows, expected):
    # columns: shape, scale, orientation, posX, posY; a third code carries shape and a little position
    importance = np.zeros((3, 5))
    importance[:2, 3:] = position_rows
    importance[2] = [1.0, 0.0, 0.0, 0.01, 0.0]
    assert example.position_mixing(importance) == pytest.approx(expected)


def test_forest_depth_table_lists_runs_scored_with_both_forests(example):
    importance = np.zeros((3, 5))
    importance[0, 3], importance[1, 4], importance[2, 0] = 1.0, 1.0, 1.0
    final = {"dci_disentanglement": 0.25, "validated_dci_disentanglement": 0.5, "dci_informativeness_r2": 0.6,
             "validated_dci_informativeness_r2": 0.7, "validated_dci_max_depths": [None, 16, 12, 16, 4],
             "validated_dci_importance": importance.tolist()}
    records = [{"model": "hfvae", "seed": 1, "final": final},
               {"model": "beta-vae", "seed": 5, "final": {"dci_disentanglement": 0.1}}]
    table = example.forest_depth_table(records).splitlines()
    assert len(table) == 3
    assert table[2] == "| HFVAE | 1 | 0.250 | 0.500 | +0.250 | 0.600 | 0.700 | full, 16, 12, 16, 4 | 0.00 |"
    assert example.forest_depth_table(records[1:]) == ""

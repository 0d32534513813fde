import json

import pytest

from pyro_hfvae.training.config import dumps_config, resolve_config
from pyro_hfvae.training.run_summary import write_summary


@pytest.fixture
def run_dir(tmp_path):
    (tmp_path / "config.toml").write_text(dumps_config(resolve_config(None, {"training.steps": 10})))
    records = [{"step": s, "loss": 1.0, "elbo": -2.0 * s, "kl": 0.5, "dimwise_kl/style": 0.1, "seconds": 6.0 * s}
               for s in range(1, 5)]
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return tmp_path


def test_summary_of_an_interrupted_run(run_dir):
    with open(run_dir / "log.jsonl", "a") as file:
        file.write(json.dumps({"step": 4, "event": "interrupted", "message": "stopped after step 4"}) + "\n")
    text = write_summary(run_dir).read_text()
    assert "Status: **interrupted: stopped after step 4** after 4 of 10 steps in 0.4 min of training." in text
    assert "| elbo | -8.000 |" in text and "dimwise_kl/style" not in text
    assert "## Disentanglement metrics" not in text and "## Figures" not in text


def test_summary_with_metrics_and_figures(run_dir):
    evaluation = {"step": 4, "preset": "fast", "seconds": 1.0,
                  "metrics": {"mig": 0.25, "factor_vae_eval_accuracy": 0.7, "factor_vae_num_active_dims": 7.0},
                  "information": {"total": 3.0, "groups": {"style": 3.0}, "sites": {"z": 3.0},
                                  "variables": {"z": [2.0, 1.0, 0.01]}, "num_data": 100}}
    (run_dir / "metrics.json").write_text(json.dumps(evaluation))
    (run_dir / "figures").mkdir()
    (run_dir / "figures" / "latent_traversals.png").write_bytes(b"png")
    text = write_summary(run_dir).read_text()
    assert "Status: **stopped at step 4 of 10**" in text
    assert "| MIG | 0.250 |" in text and "| FactorVAE active codes | 7 |" in text
    assert "| FactorVAE score | 0.700 | majority-vote accuracy at naming the fixed factor | 0.63 ± 0.08 |" in text
    assert "at most log N = 4.61 nats. 1 of 3 variables carry less than 0.05 nats (pruned)." in text
    assert "Collapsed" not in text
    assert "![latent_traversals](figures/latent_traversals.png)" in text
    html = (run_dir / "summary.html").read_text()
    assert '<img src="figures/latent_traversals.png"' in html and "<td>MIG</td><td>0.250</td>" in html
    assert "<code>pyro-hfvae train --config hfvae_dsprites --device cuda</code>" in html


@pytest.mark.parametrize("groups, flagged", [
    ({"class": 0.011, "style": 3.0}, "**Collapsed:** class (0.011 nats): less than 0.05 nats each, so the posterior of "
                                     "this group"),
    ({"class": 0.0, "style": 0.049}, "**Collapsed:** class (0.000 nats), style (0.049 nats): less than 0.05 nats "
                                     "each, so the posterior of these groups"),
    ({"class": 0.05, "style": 3.0}, None),
])
def test_summary_flags_collapsed_groups(run_dir, groups, flagged):
    evaluation = {"step": 4, "preset": "none", "seconds": 1.0, "metrics": {},
                  "information": {"total": 3.0, "groups": groups, "sites": {"y": 0.0, "z": 3.0},
                                  "variables": {"y": [0.0], "z": [3.0]}, "num_data": 100}}
    (run_dir / "metrics.json").write_text(json.dumps(evaluation))
    text = write_summary(run_dir).read_text()
    assert (flagged in text) if flagged else ("Collapsed" not in text)


def test_summary_needs_a_run_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="expected a run directory with config.toml"):
        write_summary(tmp_path)


@pytest.mark.parametrize("scoring, hint", [
    ("relaxed", 'If it holds a Concrete: scored with its relaxed density, a confident class costs tens of nats of '
                "dimension-wise KL, so the model keeps it uniform; `--set 'objective.concrete_scoring=\"argmax\"'`"),
    ("argmax", "Lower the weights of its terms (beta, gamma; a per-site beta for HIT) or train longer."),
])
def test_collapse_says_what_to_change(tmp_path, scoring, hint):
    config = resolve_config(None, {"training.steps": 10, "objective.concrete_scoring": scoring})
    (tmp_path / "config.toml").write_text(dumps_config(config))
    (tmp_path / "log.jsonl").write_text(json.dumps({"step": 10, "loss": 1.0}) + "\n")
    evaluation = {"step": 10, "preset": "none", "seconds": 1.0, "metrics": {},
                  "information": {"total": 3.0, "groups": {"class": 0.01, "style": 3.0}, "sites": {"y": 0.01, "z": 3.0},
                                  "variables": {"y": [0.01], "z": [3.0]}, "num_data": 100}}
    (tmp_path / "metrics.json").write_text(json.dumps(evaluation))
    text = write_summary(tmp_path, write_html=False).read_text()
    assert hint in text
    assert ("objective.warmup_steps=500" in text) == (scoring == "argmax")


def test_summary_names_the_warm_up(run_dir):
    config = resolve_config(None, {"training.steps": 10, "objective.warmup_steps": 3,
                                   "objective.warmup_betas": {"style": 64.0}})
    (run_dir / "config.toml").write_text(dumps_config(config))
    text = write_summary(run_dir, write_html=False).read_text()
    assert "objective (alpha=1, beta=4, gamma=3; first 3 steps HITLoss with rates style x 64) on" in text


def _reference(folder, batch_size, points):
    curve = {"name": "demo", "source": "a results page", "seeds": [0, 1], "dataset_size": 1000,
             "configuration": {"data": {"name": "dsprites"}, "training": {"batch_size": batch_size}},
             "points": [{"images": images, "metrics": {"mig": [mig, 0.01], "information/class": [1.5, 0.25]}}
                        for images, mig in points],
             "paper": {"images": 30_720_000, "configuration": "hfvae_dsprites", "metrics": {"mig": "0.5"}}}
    folder.mkdir(exist_ok=True)
    (folder / "demo.json").write_text(json.dumps(curve))


# the run: 4 steps of the default run's 256 = 1,024 images
@pytest.mark.parametrize("points, nearest, beyond", [
    ([(512, 0.1), (2048, 0.2)], "| 512 (nearest to this run) | 0.100 ± 0.010 | 1.500 ± 0.250 |", False),
    ([(256, 0.1), (768, 0.2)], "| 768 (nearest to this run) | 0.200 ± 0.010 |", True),
])
def test_summary_places_the_run_on_its_reference_curve(run_dir, tmp_path, monkeypatch, points, nearest, beyond):
    monkeypatch.setattr("pyro_hfvae.training.reference_runs.REFERENCE_DIR", tmp_path / "reference")
    _reference(tmp_path / "reference", 256, points)
    text = write_summary(run_dir).read_text()
    assert "## Where this budget stands" in text
    assert (f"This run saw 1,024 images{' (beyond the curve' + chr(39) + 's end)' if beyond else ''}, 1.02 epochs "
            "of the 1,000 items; the paper-size configuration (`--config hfvae_dsprites`) trains on 30.72M.") in text
    assert "| images seen | MIG | I(x; class) [nats] |" in text and nearest in text
    assert text.count("nearest to this run") == 1 and "| 30.72M (paper, Table 3) | 0.5 |  |" in text


def test_summary_without_a_matching_reference_curve(run_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("pyro_hfvae.training.reference_runs.REFERENCE_DIR", tmp_path / "reference")
    _reference(tmp_path / "reference", 64, [(512, 0.2)])
    assert "Where this budget stands" not in write_summary(run_dir).read_text()

"""Smoke run of examples/unseen_combinations.py: both models, with and without the left-out squares."""
import json

import numpy as np
import pytest


@pytest.fixture
def example(load_example):
    return load_example("unseen_combinations")


def test_smoke_runs_score_the_same_items_and_resume(example, tmp_path):
    flags = ["--preset", "smoke", "--runs-dir", str(tmp_path / "runs"), "--results", str(tmp_path / "results"),
             "--figure"]
    records = example.main(example.parse_with_preset(example.make_parser(), example.PRESETS, flags))
    assert [(r["model"], r["held_out"]) for r in records] == [("hfvae", True), ("hfvae", False),
                                                              ("beta-vae", True), ("beta-vae", False)]
    for record in records:
        assert record["steps"] == 3 and record["images_seen"] == 48
        assert record["scores"]["held_out"]["items"] == record["scores"]["held_in_neighbours"]["items"] == 16
        assert np.isfinite(record["scores"]["held_out"]["elbo"]) and record["scores"]["held_out"]["elbo"] < 0
    # The runs trained on every image are scored on the same left-out combinations.
    assert records[1]["hold_out"] == example.SQUARES_RIGHT_THIRD
    assert (tmp_path / "results" / "reconstructions.png").stat().st_size > 0
    table = example.summary(tmp_path / "results")
    assert "| hfvae | held-in only | 0 |" in table and "| beta-vae | every image | 0 |" in table
    gap = records[0]["scores"]["held_in_neighbours"]["elbo"] - records[0]["scores"]["held_out"]["elbo"]
    assert f"| {gap:.2f} |" in table
    # Rerun: the result files are reused, nothing is trained again.
    again = example.main(example.parse_with_preset(example.make_parser(), example.PRESETS, flags[:-1]))
    assert [json.dumps(r, sort_keys=True) for r in again] == [json.dumps(r, sort_keys=True) for r in records]


def test_beta_vae_is_the_hit_objective_without_a_class_group(example):
    args = example.parse_with_preset(example.make_parser(), example.PRESETS, ["--preset", "smoke"])
    config = example.run_config(args, "beta-vae", held_out=True, seed=0)
    assert config["objective"]["name"] == "hit" and config["objective"]["default_beta"] == 4.0
    assert config["model"]["num_classes"] == 0 and config["data"]["hold_out"] == example.SQUARES_RIGHT_THIRD
    assert not example.run_config(args, "hfvae", held_out=False, seed=0)["data"].get("hold_out")

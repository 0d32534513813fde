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
        for score in ("shape_drawn", "outline_drawn"):
            assert set(record[score]) == {"held_out", "held_in_squares"}
            assert all(0 <= value <= 1 for value in record[score].values())
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


class _Reconstructs:
    """
    A stand-in for a trained run over the items ``indices``: ``model.reconstruct`` draws each image,
    in the order the items are given, with the shape ``shape`` (its own where ``shape`` is None).
    """

    def __init__(self, dataset, indices, shape=None):
        self.dataset, self.indices, self.shape, self.done = dataset, indices, shape, 0
        self.model = self

    def reconstruct(self, x):
        import torch

        factors = self.dataset.factors_of(self.indices[self.done:self.done + len(x)])
        self.done += len(x)
        if self.shape is not None:
            factors[:, 0] = self.shape
        return self.dataset.observations(torch.from_numpy(self.dataset.index_of(factors)))


@pytest.mark.parametrize("shape, expected", [(None, 1.0), (0, 1.0), (1, 0.0), (2, 0.0)])
def test_shape_drawn_is_the_share_drawn_as_their_own_shape(example, shape, expected):
    from pyro_hfvae.datasets import DSprites

    dataset = DSprites()
    dataset.hold_out = example.SQUARES_RIGHT_THIRD
    indices = np.sort(np.random.RandomState(0).choice(dataset.held_out_indices(), 40, replace=False))
    trainer = _Reconstructs(dataset, indices, shape)
    assert example.drawn_fractions(trainer, indices, batch_size=64)["shape_drawn"] == expected


def test_shape_drawn_counts_item_by_item(example):
    from pyro_hfvae.datasets import DSprites

    dataset = DSprites()
    # 3 squares and 2 hearts, all drawn as squares: the squares are right, the hearts wrong.
    factors = np.array([[0, 5, 0, 10, 10], [0, 2, 7, 25, 3], [0, 0, 30, 1, 31], [2, 5, 0, 10, 10], [2, 3, 9, 16, 16]])
    indices = dataset.index_of(factors)
    trainer = _Reconstructs(dataset, indices, 0)
    assert example.drawn_fractions(trainer, indices, batch_size=2)["shape_drawn"] == 3 / 5


def _record(model, held_out, seed, error, elbos, shape_drawn):
    return {"model": model, "held_out": held_out, "seed": seed, "images_seen": 100,
            "scores": {"held_out": {"elbo": elbos[0], "reconstruction_error": error},
                       "held_in_neighbours": {"elbo": elbos[1], "reconstruction_error": 1.0}},
            "shape_drawn": {"held_out": shape_drawn, "held_in_squares": 0.9},
            "outline_drawn": {"held_out": shape_drawn / 2, "held_in_squares": 0.8}}


def test_cost_table_pairs_each_models_cost_by_seed(example, tmp_path):
    import scipy.stats

    # seed -> model -> (held-in-only record, every-image record)
    runs = {
        0: {"hfvae": ((12.0, (-30, -10), 0.2), (10.0, (-20, -10), 0.5)),
            "beta-vae": ((11.0, (-25, -10), 0.4), (10.0, (-18, -10), 0.6))},
        1: {"hfvae": ((15.0, (-40, -12), 0.1), (12.0, (-22, -12), 0.7)),
            "beta-vae": ((13.0, (-30, -11), 0.3), (12.5, (-20, -11), 0.5))},
        3: {"hfvae": ((9.0, (-28, -9), 0.3), (9.0, (-19, -9), 0.4)),
            "beta-vae": ((10.0, (-24, -9), 0.2), (8.0, (-19, -9), 0.6))},
    }
    for seed, models in runs.items():
        for model, (out, seen) in models.items():
            for held_out, values in ((True, out), (False, seen)):
                name = f"{model}_{'held_out' if held_out else 'all'}_seed{seed}.json"
                example.write_json(tmp_path / name, _record(model, held_out, seed, *values))
    # A seed with one model only, and a result file made before the shape score, are left out.
    example.write_json(tmp_path / "hfvae_held_out_seed7.json", _record("hfvae", True, 7, 1.0, (-1, -1), 0.5))
    table = example.cost_table(tmp_path)
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in table.splitlines()[2:]}
    assert len(rows) == 4 and all(row[3] and "0, 1, 3" not in row for row in rows.values())
    by_hand = {
        "reconstruction error increase, left-out (%)": ([20.0, 25.0, 0.0], [10.0, 4.0, 25.0]),
        "ELBO gap increase (nats)": ([10.0, 18.0, 9.0], [7.0, 10.0, 5.0]),
        "square-drawn drop, left-out": ([0.3, 0.6, 0.1], [0.2, 0.2, 0.4]),
        "outline-drawn drop, left-out": ([0.15, 0.3, 0.05], [0.1, 0.1, 0.2]),
    }
    for name, (hfvae, beta_vae) in by_hand.items():
        differences = np.subtract(hfvae, beta_vae)
        row = rows[name]
        assert row[3] == ", ".join(f"{d:+.3f}" for d in differences)
        assert row[5] == f"{int((differences < 0).sum())}/3"
        assert row[6] == f"{scipy.stats.ttest_1samp(differences, 0.0).pvalue:.3g}"
    assert example.cost_table(tmp_path, model="hfvae", other="vae") == ""


class _DrawsDiscs(_Reconstructs):
    """Draws each image as the disc of its area and centroid."""

    def __init__(self, example, dataset, indices):
        super().__init__(dataset, indices)
        self.disc = example.disc_of_same_area

    def reconstruct(self, x):
        return self.disc(super().reconstruct(x))


def test_outline_drawn_tells_a_square_from_the_disc_of_its_area(example):
    from pyro_hfvae.datasets import DSprites

    dataset = DSprites()
    dataset.hold_out = example.SQUARES_RIGHT_THIRD
    indices = np.sort(np.random.RandomState(1).choice(dataset.held_out_indices(), 24, replace=False))
    assert example.drawn_fractions(_Reconstructs(dataset, indices), indices, batch_size=10)["outline_drawn"] == 1.0
    discs = example.drawn_fractions(_DrawsDiscs(example, dataset, indices), indices, batch_size=10)
    assert discs["outline_drawn"] == 0.0
    # The shape score cannot: a square's disc is still nearer to the square than to the ellipse or heart.
    assert discs["shape_drawn"] == 1.0


def test_disc_of_same_area_keeps_area_and_centroid(example):
    import torch

    images = torch.zeros(2, 1, 32, 32)
    images[0, 0, 4:14, 6:16] = 1  # a 10 x 10 square, centroid (8.5, 10.5)
    images[1, 0, 20:23, 20:29] = 1  # a 3 x 9 bar, centroid (21, 24)
    discs = example.disc_of_same_area(images)
    rows, columns = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    for image, disc in zip(images[:, 0], discs[:, 0]):
        area = image.sum()
        assert abs(disc.sum() - area) <= 0.1 * area
        for grid in (rows, columns):
            assert abs((disc * grid).sum() / disc.sum() - (image * grid).sum() / area) < 0.5
        assert set(disc.unique().tolist()) <= {0.0, 1.0}

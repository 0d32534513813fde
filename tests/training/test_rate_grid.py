# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
import csv
import math

import matplotlib
import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

import pyro_hfvae.training.rate_grid as rate_grid_module
from pyro_hfvae.infer.hit import HITLoss
from pyro_hfvae.models import VLAE, HierarchicalVAE
from pyro_hfvae.plots.rate_grid import (
    best_row,
    is_diagonal,
    last_part_change,
    plot_rate_grid,
    plot_rate_grid_convergence,
    plot_rate_rate_distortion,
)
from pyro_hfvae.training.rate_grid import (
    average_rate_grids,
    default_betas_grid,
    inception_score,
    rate_grid,
    read_rate_grid_csv,
    write_rate_grid_csv,
)

matplotlib.use("Agg")

SHAPE = (1, 8, 8)


def tiny_model():
    return HierarchicalVAE(SHAPE, (3, 2), channels=(2,), hidden_dim=8)


def tiny_data(num=40):
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(num) % 2
    # Two classes: bright top half or bright bottom half, with pixel noise.
    x = torch.zeros(num, *SHAPE)
    x[labels == 0, :, :4] = 1.0
    x[labels == 1, :, 4:] = 1.0
    flips = torch.rand(x.shape, generator=generator) < 0.1
    return torch.where(flips, 1 - x, x), labels


def test_default_betas_grid():
    grid = default_betas_grid(["z1", "z2"], 3, (0.1, 10.0))
    assert len(grid) == 9
    assert [tuple(g.values()) for g in grid[:3]] == [(pytest.approx(0.1), pytest.approx(b)) for b in (0.1, 1.0, 10.0)]
    assert [list(g) for g in grid] == [["z1", "z2"]] * 9
    assert len(default_betas_grid(["a", "b", "c"], 2)) == 8
    with pytest.raises(ValueError, match="num_betas"):
        default_betas_grid(["z1"], 0)
    with pytest.raises(ValueError, match="0 < low <= high"):
        default_betas_grid(["z1"], 3, (0.0, 1.0))


def test_inception_score_against_the_definition():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=50)
    marginal = probs.mean(0)
    brute = math.exp(np.mean([sum(p[k] * math.log(p[k] / marginal[k]) for k in range(4)) for p in probs]))
    assert inception_score(probs) == pytest.approx(brute, rel=1e-10)
    assert inception_score(np.tile([[0.0, 1.0, 0.0]], (5, 1))) == pytest.approx(1.0)  # sharp, not diverse
    assert inception_score(np.eye(3)[[0, 1, 2, 0, 1, 2]]) == pytest.approx(3.0)  # sharp and diverse
    with pytest.raises(ValueError, match="num_samples, num_classes"):
        inception_score(np.ones(3))


def test_rate_grid_rows_against_independent_computations():
    data, labels = tiny_data()
    built = []

    def make_model():
        built.append(tiny_model())
        return built[-1]

    rows = rate_grid(
        make_model,
        data,
        [(1.0, 1.0), {"z1": 0.2, "z2": 5.0}],
        eval_labels=labels,
        steps=3,
        batch_size=16,
        num_samples=30,
        knn_neighbors=3,
        eval_batch_size=7,
    )
    assert len(rows) == 2 and len(built) == 3  # one model for the site names, then one per setting
    assert (rows[0]["beta/z1"], rows[0]["beta/z2"], rows[1]["beta/z1"], rows[1]["beta/z2"]) == (
        1.0,
        1.0,
        0.2,
        5.0,
    )
    for row, model in zip(rows, built[1:]):
        with torch.no_grad():
            mse = (model.reconstruct(data) - data).pow(2).mean().item()
            loss = HITLoss(num_particles=500, vectorize_particles=True, max_plate_nesting=1)
            loss.loss(model.model, model.guide, data)
        assert row["psnr"] == pytest.approx(10 * math.log10(1 / mse), rel=1e-5)
        # The top layer's rate is an exact KL; the others used one posterior sample per image.
        assert row["rate/z2"] == pytest.approx(loss.terms["rate/z2"], rel=1e-4)
        for name in ("distortion", "rate/z1", "rate", "elbo"):
            assert row[name] == pytest.approx(loss.terms[name], rel=0.2), name
        assert row["rate"] == pytest.approx(row["rate/z1"] + row["rate/z2"], rel=1e-6)
        assert row["elbo"] == pytest.approx(-row["rate"] - row["distortion"], rel=1e-6)
        # The paper's classifiers, fitted on a fixed random half of the evaluation images.
        fit, test = np.split(np.random.default_rng(0).permutation(len(labels)), [len(labels) // 2])
        with torch.no_grad():
            means = {name: mean.numpy() for name, mean in model.encode(data).items()}
        for name in ("z1", "z2"):
            classifiers = {
                "logistic": make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
                "svm_linear": make_pipeline(StandardScaler(), SVC(kernel="linear")),
                "svm_rbf": make_pipeline(StandardScaler(), SVC(kernel="rbf")),
                "knn": KNeighborsClassifier(n_neighbors=3),
            }
            for kind, classifier in classifiers.items():
                expected = classifier.fit(means[name][fit], labels[fit]).score(means[name][test], labels[test])
                assert row[f"{kind}/{name}"] == pytest.approx(expected), (kind, name)
        assert 1.0 <= row["inception_score"] <= 2.0
        assert row["rate/z1"] >= 0 and row["rate/z2"] >= 0


def test_rate_grid_is_reproducible_and_defaults_to_the_log_grid():
    data, _ = tiny_data(16)
    first = rate_grid(tiny_model, data, steps=2, batch_size=8, num_betas=2)
    second = rate_grid(tiny_model, data, steps=2, batch_size=8, num_betas=2)
    assert [(r["beta/z1"], r["beta/z2"]) for r in first] == [
        (pytest.approx(a), pytest.approx(b)) for a in (0.1, 10.0) for b in (0.1, 10.0)
    ]
    for a, b in zip(first, second):
        assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}
    assert "psnr" in first[0] and "inception_score" not in first[0]  # no labels, no classifiers


def test_a_setting_does_not_depend_on_the_rest_of_the_grid():
    # Each setting is seeded and starts from a cleared param store: alone or after another
    # setting, its row is the same bit for bit (a stale param store would load the previous
    # setting's trained parameters into the new model).
    data, _ = tiny_data(16)
    alone = rate_grid(tiny_model, data, [(0.5, 2.0)], steps=3, batch_size=8)
    after = rate_grid(tiny_model, data, [(4.0, 4.0), (0.5, 2.0)], steps=3, batch_size=8)
    assert alone[0]["train_loss"] != after[0]["train_loss"]
    assert {k: v for k, v in alone[0].items() if k != "seconds"} == {
        k: v for k, v in after[1].items() if k != "seconds"
    }


@pytest.mark.parametrize(
    "make_model, sites",
    [
        (lambda: VLAE(levels=2, latent_dim=2, image_shape=(1, 16, 16), channels=2, hidden_dim=8), ("z2", "z1")),
        (lambda: HierarchicalVAE((1, 16, 16), (3, 2), channels=(2,), hidden_dim=8), ("z1", "z2")),
    ],
    ids=["VLAE", "HierarchicalVAE"],
)
def test_rate_grid_takes_the_library_models(make_model, sites):
    data, labels = tiny_data()
    data = data.repeat_interleave(2, -1).repeat_interleave(2, -2)  # 16x16
    built = []

    def build():
        built.append(make_model())
        return built[-1]

    rows = rate_grid(build, data, [(1.0, 2.0)], eval_labels=labels, steps=2, batch_size=8, num_samples=10,
                     knn_neighbors=3)
    assert [key for key in rows[0] if key.startswith("beta/")] == [f"beta/{site}" for site in sites]
    assert [rows[0][f"beta/{site}"] for site in sites] == [1.0, 2.0]
    with torch.no_grad():
        mse = (built[-1].reconstruct(data) - data).pow(2).mean().item()
    assert rows[0]["psnr"] == pytest.approx(10 * math.log10(1 / mse), rel=1e-5)
    assert rows[0]["rate"] == pytest.approx(sum(rows[0][f"rate/{site}"] for site in sites), rel=1e-6)
    assert 1.0 <= rows[0]["inception_score"] <= 2.0
    assert all(0.0 <= rows[0][f"{kind}/{site}"] <= 1.0 for kind in ("logistic", "knn") for site in sites)


def test_rate_grid_bad_input():
    data, labels = tiny_data(16)
    with pytest.raises(ValueError, match="one weight per latent site"):
        rate_grid(tiny_model, data, [(1.0,)], steps=0)
    with pytest.raises(ValueError, match="one label per evaluation image"):
        rate_grid(tiny_model, data, [(1.0, 1.0)], eval_labels=labels[:5], steps=0)
    with pytest.raises(ValueError, match="images"):
        rate_grid(tiny_model, data.numpy(), steps=0)
    with pytest.raises(ValueError, match="not latent sites"):
        rate_grid(tiny_model, data, [{"z9": 1.0}], steps=1)


def test_csv_round_trip(tmp_path):
    rows = [
        {"beta/z1": 0.1, "rate/z1": 2.5, "psnr": 11.0},
        {"beta/z1": 1.0, "rate/z1": 1.5, "psnr": 9.0, "x": 1.0},
    ]
    path = tmp_path / "grid.csv"
    write_rate_grid_csv(rows, path)
    with open(path, newline="") as f:
        read = list(csv.DictReader(f))
    assert list(read[0]) == ["beta/z1", "rate/z1", "psnr", "x"]
    assert [float(r["psnr"]) for r in read] == [11.0, 9.0]
    assert read[0]["x"] == ""
    assert read_rate_grid_csv(path) == rows
    assert path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["grid.csv"]  # no temporary file left


def test_plot_marks_the_diagonal_and_the_best():
    rows = [
        {
            "beta/z1": b1,
            "beta/z2": b2,
            "rate/z1": 10 / b1,
            "rate/z2": 5 / b2,
            "psnr": 10 / b1 + 1 / b2,
        }
        for b1 in (0.5, 2.0)
        for b2 in (0.5, 2.0)
    ]
    ax = plot_rate_grid(rows, "psnr")
    points, diagonal, best = ax.collections
    np.testing.assert_allclose(points.get_offsets(), [[r["rate/z1"], r["rate/z2"]] for r in rows])
    np.testing.assert_allclose(points.get_array(), [r["psnr"] for r in rows])
    np.testing.assert_allclose(diagonal.get_offsets(), [[20.0, 10.0], [5.0, 2.5]])
    np.testing.assert_allclose(best.get_offsets(), [[20.0, 10.0]])
    assert ax.get_xlabel() == "rate of z1 (nats)"
    assert ax.get_xscale() == ax.get_yscale() == "symlog"
    ax = plot_rate_grid(rows, "psnr", higher_is_better=False, sites=("z2", "z1"), axis_scale="log")
    assert ax.get_xscale() == "log"
    np.testing.assert_allclose(ax.collections[2].get_offsets(), [[2.5, 5.0]])
    assert is_diagonal(rows[0]) and not is_diagonal(rows[1])
    assert best_row(rows, "psnr") is rows[0]
    with pytest.raises(ValueError, match="no_such"):
        best_row(rows, "no_such")


def _grid_with_curves():
    # Setting (b1, b2) loses b1 + b2 percent over its last part; its curve has three parts.
    return [
        {"beta/z1": b1, "beta/z2": b2, "rate/z1": 10 / b1, "rate/z2": 5 / b2, "distortion": 90 + b1 + 2 * b2,
         "train_loss/1": 300.0, "train_loss/2": 100.0 * (1 + (b1 + b2) / 100), "train_loss/3": 100.0}
        for b1 in (0.5, 1.0, 2.0)
        for b2 in (0.5, 2.0)
    ]


def test_last_part_change_and_the_convergence_figure():
    rows = _grid_with_curves()
    assert [last_part_change(row) for row in rows] == pytest.approx([row["beta/z1"] + row["beta/z2"] for row in rows])
    with pytest.raises(ValueError, match="at least two train_loss"):
        last_part_change({"train_loss/1": 1.0})
    curves_ax, grid_ax = plot_rate_grid_convergence(rows).axes[:2]
    assert len(curves_ax.lines) == len(rows) + 1  # and the reference line at 1
    for line in curves_ax.lines[:-1]:
        np.testing.assert_allclose(line.get_xdata(), [1 / 3, 2 / 3, 1])
        assert line.get_ydata()[0] == pytest.approx(3.0) and line.get_ydata()[-1] == 1.0
    # Columns: beta of z1; rows: beta of z2 (both ascending).
    np.testing.assert_allclose(grid_ax.images[0].get_array(), [[1.0, 1.5, 2.5], [2.5, 3.0, 4.0]])


def test_rate_rate_distortion_marks_the_diagonal_and_the_chosen_settings():
    rows = _grid_with_curves()
    figure = plot_rate_rate_distortion(rows, {"reconstruction": rows[0], "generation": rows[5]})
    ax = figure.axes[0]
    _, points, diagonal, first, second = ax.collections
    np.testing.assert_allclose(np.array(points._offsets3d).T, [[r["rate/z1"], r["rate/z2"], r["distortion"]]
                                                               for r in rows])
    np.testing.assert_allclose(np.array(diagonal._offsets3d).T, [[20.0, 10.0, 91.5], [5.0, 2.5, 96.0]])
    np.testing.assert_allclose(np.array(first._offsets3d).T, [[20.0, 10.0, 91.5]])
    np.testing.assert_allclose(np.array(second._offsets3d).T, [[5.0, 2.5, 96.0]])
    assert [text.get_text() for text in ax.get_legend().get_texts()] == [
        "beta-VAE (all betas equal)", "reconstruction", "generation"]
    with pytest.raises(ValueError, match="two rate/<site> columns"):
        plot_rate_rate_distortion([{"rate/z1": 1.0, "distortion": 1.0}])


def test_average_rate_grids_against_a_loop():
    generator = np.random.default_rng(0)
    settings = [(0.1, 0.1), (0.1, 1.0), (1.0, 0.1), (1.0, 1.0)]
    grids = []
    for _ in range(3):
        order = generator.permutation(len(settings))  # grids need not list settings in one order
        grids.append([{"beta/z1": settings[i][0], "beta/z2": settings[i][1], "psnr": generator.normal()}
                      for i in order])
    averaged = average_rate_grids(grids)
    assert [(row["beta/z1"], row["beta/z2"]) for row in averaged] == [
        (row["beta/z1"], row["beta/z2"]) for row in grids[0]
    ]
    for row in averaged:
        key = (row["beta/z1"], row["beta/z2"])
        values = [r["psnr"] for grid in grids for r in grid if (r["beta/z1"], r["beta/z2"]) == key]
        assert row["psnr"] == pytest.approx(sum(values) / 3)
    with pytest.raises(ValueError, match="grid 1 differs"):
        average_rate_grids([grids[0], grids[1][:3]])
    with pytest.raises(ValueError, match="at least one grid"):
        average_rate_grids([])


@pytest.mark.parametrize("steps, parts", [(23, 10), (10, 10), (3, 3), (0, 1)])
def test_the_loss_curve_averages_equal_parts_of_the_steps(monkeypatch, steps, parts):
    data, _ = tiny_data(16)

    class CountingSVI:
        """Step ``i`` reports a loss of ``i`` per image, so each part's mean is known."""

        def __init__(self, *args, **kwargs):
            self.calls = 0

        def step(self, *args, **kwargs):
            self.calls += 1
            return float((self.calls - 1) * data.shape[0])

    monkeypatch.setattr(rate_grid_module, "SVI", CountingSVI)
    row = rate_grid(tiny_model, data, [(1.0, 1.0)], steps=steps, batch_size=8)[0]
    curve = [row[f"train_loss/{part}"] for part in range(1, parts + 1)]
    assert f"train_loss/{parts + 1}" not in row
    if steps == 0:
        assert math.isnan(curve[0]) and math.isnan(row["train_loss"])
        return
    # Equal parts, the first ones one step longer where the steps do not divide evenly.
    sizes = [steps // parts + (part < steps % parts) for part in range(parts)]
    expected, start = [], 0
    for size in sizes:
        expected.append(sum(range(start, start + size)) / size)
        start += size
    assert curve == pytest.approx(expected) and row["train_loss"] == curve[-1]

"""The HIT rate-grid example: smoke runs, resuming, the summaries it draws from saved grids."""
import numpy as np
import pytest
import scipy.stats


def parse(example, *argv):
    return example.parse_with_preset(example.make_parser(), example.PRESETS, ["--preset", "smoke", *argv])


def test_example_smoke(load_example, tmp_path):
    example = load_example("hit_rates")
    rows = example.main(parse(example, "--out-dir", str(tmp_path)))
    assert len(rows) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "hit_rates.csv",
        "hit_rates.png",
        "hit_rates_convergence.png",
        "hit_rates_rate_rate_distortion.png",
        "summary.md",
    ]
    summary = (tmp_path / "summary.md").read_text()
    assert "| reconstruction | psnr |" in summary and "logistic/z2" in summary
    assert "Convergence: over the last tenth of training the loss fell by" in summary
    # The figure and summary can be remade from the table alone.
    again = tmp_path / "again"
    args = ["--from-csv", str(tmp_path / "hit_rates.csv"), "--out-dir", str(again)]
    example.main(example.make_parser().parse_args(args))
    assert (again / "summary.md").read_text() == summary


def test_example_reads_mnist(load_example, shared_data, tmp_path):
    example = load_example("hit_rates")
    parsed = example.make_parser().parse_args(["--data-dir", str(shared_data / "mnist")])
    images, labels = example.load_images(parsed)
    assert images.shape == (10000, 1, 28, 28) and labels.shape == (10000,)
    assert set(images.unique().tolist()) == {0.0, 1.0}
    assert np.bincount(labels).tolist()[:3] == [980, 1135, 1032]  # the official test split's class counts
    args = parse(example, "--dataset", "mnist", "--data-dir", str(shared_data / "mnist"), "--channels", "2", "4",
                 "--out-dir", str(tmp_path))
    rows = example.main(args)
    assert len(rows) == 4 and rows[0]["train_loss/2"] > 0


def test_an_interrupted_grid_resumes_from_its_finished_settings(load_example, tmp_path):
    example = load_example("hit_rates")
    first = example.main(parse(example, "--out-dir", str(tmp_path / "first")))
    # As if the run had stopped after two settings, one of them marked so its reuse shows.
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    finished = [dict(first[0]), dict(first[2])]
    finished[1]["psnr"] = 999.0
    example.write_rate_grid_csv(finished, resumed_dir / "hit_rates.partial.csv")
    resumed = example.main(parse(example, "--out-dir", str(resumed_dir)))
    assert [row["psnr"] for row in resumed] == [first[0]["psnr"], first[1]["psnr"], 999.0, first[3]["psnr"]]
    drop = {"seconds", "psnr"}
    assert [{k: v for k, v in row.items() if k not in drop} for row in resumed] == [
        {k: v for k, v in row.items() if k not in drop} for row in first
    ]
    assert not (resumed_dir / "hit_rates.partial.csv").exists()


def test_example_dominance_check(load_example):
    example = load_example("hit_rates")
    rows = [
        {"beta/z1": 1.0, "beta/z2": 1.0, "rate": 10.0, "m": 0.5},
        {"beta/z1": 0.5, "beta/z2": 2.0, "rate": 9.0, "m": 0.7},  # beats the diagonal at lower rate
        {"beta/z1": 2.0, "beta/z2": 0.5, "rate": 12.0, "m": 0.9},  # better but at higher rate
    ]
    pairs = example.dominated_diagonal(rows, "m")
    assert pairs == [(rows[0], rows[1])]


def test_dominance_found_on_one_grid_is_judged_on_the_others(load_example):
    example = load_example("hit_rates")

    def grid(rates, values):
        settings = [(1.0, 1.0), (0.5, 2.0), (2.0, 0.5)]
        return [{"beta/z1": a, "beta/z2": b, "rate": r, "m": v} for (a, b), r, v in zip(settings, rates, values)]

    grids = [
        grid([10.0, 9.0, 12.0], [0.5, 0.7, 0.9]),  # (0.5, 2) beats the diagonal at lower rate
        grid([10.0, 9.5, 8.0], [0.5, 0.6, 0.4]),  # it holds here; (2, 0.5) is cheaper but worse
        grid([10.0, 11.0, 8.0], [0.5, 0.8, 0.6]),  # here (0.5, 2) costs more; (2, 0.5) beats the diagonal
    ]
    rows = example.dominance_over_seeds(grids, {"use": "m"}).splitlines()[2:]
    cells = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]
    # Grid 0's pair holds on grid 1, not on grid 2 (higher rate); grid 1's pair is the same one, holding on
    # grid 0 only; grid 2's pair (2, 0.5) fails on grid 0 (higher rate) and on grid 1 (worse).
    assert cells == [["use", "0", "1 of 1", "1/2"], ["use", "1", "1 of 1", "1/2"], ["use", "2", "1 of 1", "0/2"],
                     ["use", "all", "", "2/6"]]


def test_example_compares_optima_grid_by_grid(load_example):
    example = load_example("hit_rates")

    def grid(values):
        settings = [(0.1, 0.1), (0.1, 1.0), (1.0, 0.1), (1.0, 1.0)]
        return [{"beta/z1": a, "beta/z2": b, "m": v} for (a, b), v in zip(settings, values)]

    # Unequal optimum (1, 0.1) on the mean; diagonal optimum (0.1, 0.1).
    grids = [grid([0.50, 0.40, 0.60, 0.30]), grid([0.52, 0.41, 0.51, 0.31]),
             grid([0.50, 0.60, 0.70, 0.30]), grid([0.40, 0.10, 0.50, 0.45])]
    line = example.compare_over_seeds(grids, {"use": "m"}).splitlines()[2]
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    assert cells[2:4] == ["(1, 0.1)", "(0.1, 0.1)"]
    differences = np.array([0.10, -0.01, 0.20, 0.10])
    assert cells[4] == ", ".join(f"{d:+.3g}" for d in differences)
    assert cells[5] == f"{differences.mean():+.3g} ± {differences.std(ddof=1) / 2:.2g}"
    assert cells[6] == "3/4"
    # First half: unequal optimum (1, 0.1) (0.555), diagonal (0.1, 0.1) (0.51); on the second
    # half their means are 0.60 and 0.45.
    assert cells[7] == "(1, 0.1) vs (0.1, 0.1): +0.15"


def test_near_optimal_sets_against_a_hand_computation(load_example):
    example = load_example("hit_rates")
    settings = [(0.1, 0.1), (0.1, 1.0), (1.0, 0.1), (1.0, 1.0)]

    def grid(values):
        return [{"beta/z1": a, "beta/z2": b, "m": v} for (a, b), v in zip(settings, values)]

    # Seed-to-seed differences of +-0.1 in the upper half (0.3 in the lower half, which is left out): pooled sd
    # 0.1 * sqrt(2), s.e. of a difference of two
    # two-seed means 0.1 * sqrt(2); two of them: 0.283. Means 0.9, 0.7, 0.5, 0.65: the best is (0.1, 0.1),
    # and (0.1, 1) (gap 0.2) and (1, 1) (gap 0.25) are within reach; (1, 0.1) (gap 0.4) is not.
    grids = [grid([1.0, 0.8, 0.8, 0.75]), grid([0.8, 0.6, 0.2, 0.55])]
    text, sets = example.near_optimal(grids, {"use": "m", "other": "m"})
    assert sets["use"] == {(0.1, 0.1), (0.1, 1.0), (1.0, 1.0)}
    cells = [cell.strip() for cell in text.splitlines()[2].strip("|").split("|")]
    assert cells[2:] == ["(0.1, 0.1)", "0.9", "0.14", "3 of 4", "2", "(0.1, 0.1)", "0.0"]
    assert "- use and other: 3 settings in both sets" in text
    with pytest.raises(ValueError, match="at least two grids"):
        example.near_optimal(grids[:1], {"use": "m"})


def test_settings_chosen_on_earlier_grids_are_trained_and_tested(load_example, tmp_path):
    example = load_example("hit_rates")
    example.main(parse(example, "--num-betas", "3", "--out-dir", str(tmp_path / "earlier")))
    earlier = example.read_rate_grid_csv(tmp_path / "earlier" / "hit_rates.csv")
    uses = example.uses_of(earlier)
    chosen = example.chosen_settings([earlier], uses)
    for use, metric in uses.items():
        unequal, diagonal = chosen[use]
        assert unequal[0] != unequal[1] and diagonal[0] == diagonal[1]
        # max over the rows instead of best_row
        best_diagonal = max((row for row in earlier if row["beta/z1"] == row["beta/z2"]), key=lambda row: row[metric])
        best_unequal = max((row for row in earlier if row["beta/z1"] != row["beta/z2"]), key=lambda row: row[metric])
        assert (diagonal, unequal) == (example._setting(best_diagonal), example._setting(best_unequal))
    csv = str(tmp_path / "earlier" / "hit_rates.csv")
    rows = example.main(parse(example, "--num-betas", "3", "--chosen-on", csv, "--seed", "1",
                              "--out-dir", str(tmp_path / "new")))
    trained = {example._setting(row) for row in rows}
    assert trained == {setting for pair in chosen.values() for setting in pair} and len(rows) == len(trained)
    summary = (tmp_path / "new" / "summary.md").read_text()
    assert "Each use's settings chosen on 1 earlier grids, tested on these 1:" in summary
    # --uses keeps one use's pair: two settings trained, one row tested
    rows = example.main(parse(example, "--num-betas", "3", "--chosen-on", csv, "--uses", "reconstruction",
                              "--seed", "1", "--out-dir", str(tmp_path / "one")))
    assert {example._setting(row) for row in rows} == set(chosen["reconstruction"])
    tested = (tmp_path / "one" / "summary.md").read_text().split("tested on these 1:")[1].split("\n\n")[1]
    assert [line.split("|")[1].strip() for line in tested.splitlines()[2:]] == ["reconstruction"]


def test_confirm_chosen_against_a_hand_computation(load_example):
    example = load_example("hit_rates")
    settings = [(0.1, 0.1), (0.1, 1.0), (1.0, 1.0)]

    def grid(values):
        return [{"beta/z1": a, "beta/z2": b, "m": v} for (a, b), v in zip(settings, values)]

    grids = [grid([0.5, 0.6, 0.1]), grid([0.5, 0.7, 0.1]), grid([0.6, 0.5, 0.1])]
    chosen = {"use": ((0.1, 1.0), (0.1, 0.1))}
    line = example.confirm_chosen(grids, {"use": "m"}, chosen).splitlines()[2]
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    differences = np.array([0.1, 0.2, -0.1])
    t = differences.mean() / (differences.std(ddof=1) / np.sqrt(3))
    p = 2 * scipy.stats.t.sf(abs(t), df=2)
    assert cells[2:] == ["(0.1, 1)", "(0.1, 0.1)", "+0.1, +0.2, -0.1", f"+0.0667 ± {differences.std(ddof=1):.2g}",
                         "2/3", f"{p:.2g}"]

import doctest
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.stats


def parse(example, *argv):
    return example.parse_with_preset(example.build_parser(), example.PRESETS, ["--preset", "smoke", *argv])


def test_smoke_run_writes_results_and_figure(load_example, tmp_path):
    example = load_example("progressive_vlae")
    results = example.main(parse(example, "--out", str(tmp_path), "--threads", "1"))
    assert results, "the example should return its runs"
    assert (tmp_path / "results.json").stat().st_size > 0
    assert (tmp_path / "information_flow.png").stat().st_size > 0
    for value in _numbers(results):
        assert not math.isnan(value)
    # The tables come back unchanged from the saved results, without training.
    remade = example.main(example.build_parser().parse_args(["--from-json", str(tmp_path / "results.json"),
                                                             "--out", str(tmp_path / "remade")]))
    assert remade["report"] == results["report"]
    # Pooling files of the same seeds would count runs twice.
    twice = ["--from-json", str(tmp_path / "results.json"), str(tmp_path / "results.json"), "--out", str(tmp_path)]
    with pytest.raises(ValueError, match="appears in more than one file"):
        example.main(example.build_parser().parse_args(twice))
    assert (tmp_path / "remade" / "information_flow.png").stat().st_size > 0


def test_an_interrupted_command_resumes_with_the_runs_it_lacks(load_example, tmp_path, monkeypatch):
    example = load_example("progressive_vlae")
    argv = ["--experiments", "flow", "--out", str(tmp_path), "--threads", "1"]
    first = example.main(parse(example, *argv))
    # As if it had stopped after the first run: only the missing run is trained.
    saved = json.loads((tmp_path / "results.json").read_text())
    saved["runs"] = saved["runs"][:1]
    (tmp_path / "results.json").write_text(json.dumps(saved))
    trained = []
    real_run_job = example.run_job
    monkeypatch.setattr(example, "run_job",
                        lambda args, job, *rest: trained.append(job) or real_run_job(args, job, *rest))
    again = example.main(parse(example, *argv))
    assert trained == [("VLAE", 0, "-")]
    assert again["report"] == first["report"]
    # Other settings in the same folder are refused rather than mixed in.
    with pytest.raises(ValueError, match=r"differs in \['steps_per_level'\]"):
        example.main(parse(example, *argv, "--steps-per-level", "5"))


def test_mnist_information_flow(load_example, shared_data, tmp_path):
    example = load_example("progressive_vlae")
    data = ["--dataset", "mnist", "--data-dir", str(shared_data / "mnist"), "--mnist-split", "test"]
    results = example.main(parse(example, *data, "--experiments", "flow", "--latent-dim", "3", "--out", str(tmp_path)))
    assert [(run["model"], len(run["information"])) for run in results["runs"]] == [("pro-VLAE", 3), ("VLAE", 1)]
    assert "at most log 64 = 4.16" in results["report"]
    with pytest.raises(ValueError, match="MIG and MIG-sup need ground-truth factors"):
        example.main(parse(example, *data, "--experiments", "compare", "--out", str(tmp_path / "compare")))


def _numbers(obj):
    if isinstance(obj, float):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _numbers(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _numbers(value)
    elif hasattr(obj, "__dataclass_fields__"):
        yield from _numbers(vars(obj))


def test_paired_differences_against_a_hand_computation(load_example):
    example = load_example("progressive_vlae")
    Run = example.Run
    runs = [Run("pro-VLAE", "both", 0, mig=0.3), Run("pro-VLAE", "both", 1, mig=0.2),
            Run("pro-VLAE", "both", 2, mig=0.5),
            Run("pro-VLAE", "no strategy", 0, mig=9.0),  # an ablation arm: not the pro-VLAE of the comparison
            Run("VLAE", "-", 0, mig=0.1), Run("VLAE", "-", 1, mig=0.25), Run("VLAE", "-", 2, mig=0.2),
            Run("VLAE", "-", 3, mig=0.0), Run("beta-VAE", "-", 0, mig=0.0, failed="non-finite loss")]
    text = example.paired_differences(runs, {"MIG": lambda r: r.mig}, ("VLAE", "beta-VAE"))
    lines = text.splitlines()
    assert len(lines) == 3  # one failed beta-VAE run leaves no pair against it
    cells = [cell.strip() for cell in lines[2].strip("|").split("|")]
    differences = [0.2, -0.05, 0.3]
    mean = sum(differences) / 3
    sd = math.sqrt(sum((d - mean) ** 2 for d in differences) / 2)
    t = mean / (sd / math.sqrt(3))
    assert cells[:7] == ["MIG", "VLAE", "3", "+0.200, -0.050, +0.300", f"{mean:.3f} ± {sd:.3f}", "2/3",
                         f"{2 * scipy.stats.t.sf(abs(t), df=2):.3g}"]
    # Wilcoxon, exact: ranks 2, 1, 3 of |d|; the negative rank sum is 1, and P(W <= 1) = 2/8 under the null.
    assert float(cells[7]) == pytest.approx(2 * 2 / 8)
    # A family of one row: Holm leaves its p as it is.
    assert cells[8] == cells[6]


def test_paired_differences_adjust_the_table_as_one_family(load_example):
    example = load_example("progressive_vlae")
    Run = example.Run
    scores = {"pro-VLAE": [0.30, 0.35, 0.40, 0.32], "VLAE": [0.10, 0.30, 0.20, 0.28],
              "beta-VAE": [0.05, 0.10, 0.12, 0.02]}
    runs = [Run(model, "both" if model == "pro-VLAE" else "-", seed, mig=mig, mig_sup=mig ** 2)
            for model, migs in scores.items() for seed, mig in enumerate(migs)]
    text = example.paired_differences(runs, {"MIG": lambda r: r.mig, "MIG-sup": lambda r: r.mig_sup},
                                      ("VLAE", "beta-VAE"))
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in text.splitlines()[2:]]
    assert [row[:2] for row in rows] == [["MIG", "VLAE"], ["MIG", "beta-VAE"], ["MIG-sup", "VLAE"],
                                         ["MIG-sup", "beta-VAE"]]
    p = [scipy.stats.ttest_rel(np.power(scores["pro-VLAE"], power), np.power(scores[row[1]], power)).pvalue
         for row, power in zip(rows, (1, 1, 2, 2))]
    # Holm by hand: sorted p times 4, 3, 2, 1, never below the previous one, at most 1.
    order = sorted(range(4), key=p.__getitem__)
    expected, running = [0.0] * 4, 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (4 - rank) * p[index]))
        expected[index] = running
    assert [float(row[8]) for row in rows] == pytest.approx(expected, rel=5e-3)
    assert [float(row[6]) for row in rows] == pytest.approx(p, rel=5e-3)


def _finished(example, strategy, seed, z3, z2, z1):
    record = {"stage": 2, "iteration": 12, "active": ["z3", "z2", "z1"], "levels": {"z3": z3, "z2": z2, "z1": z1},
              "total": max(z3, z2, z1)}
    return example.Run("pro-VLAE", strategy, seed, information=[record])


def test_an_ablation_run_whose_information_is_at_the_wrong_level_fails(load_example):
    example = load_example("progressive_vlae")
    tolerance = example.ORDER_TOLERANCE
    runs = [
        _finished(example, "both", 0, 7.0, 4.0, 2.0),  # top-down: a success
        _finished(example, "both", 1, 4.0, 4.0 + tolerance / 2, 2.0),  # a tie within the tolerance: a success
        _finished(example, "no strategy", 0, 2.0, 5.0, 1.0),  # z2 above z3
        _finished(example, "no strategy", 1, 6.0, 3.0, 3.0 + 2 * tolerance),  # z1 above z2
        example.Run("pro-VLAE", "no strategy", 2, failed="non-finite loss at iteration 1", failed_iteration=1),
    ]
    assert [example.wrong_level(run) is None for run in runs] == [True, True, False, False, True]
    assert "I(x;z2) = 5.00 > I(x;z3) = 2.00" in example.wrong_level(runs[2])
    args = example.parse_with_preset(example.build_parser(), example.PRESETS, ["--preset", "smoke"])
    report = example.report(runs, args)
    rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.strip("|").split("|")]
            for line in report.splitlines() if line.startswith("| both") or line.startswith("| no strategy")}
    assert rows["both"][1:5] == ["2/2", "1.00", "0 / 0 / 0", "0"]
    assert rows["no strategy"][1:5] == ["0/3", "0.00", "1 / 0 / 0", "2"]
    assert "- no strategy, seed 1: information went to the wrong level: I(x;z1)" in report


def test_the_gpu_script_runs_the_three_models_on_a_cpu_at_smoke_size(tmp_path):
    script = Path(__file__).resolve().parents[2] / "examples" / "progressive_gpu.sh"
    env = dict(os.environ, OUT=str(tmp_path), PYTHON=sys.executable)
    result = subprocess.run(["bash", str(script), "--allow-cpu"], env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    summary = (tmp_path / "summary.md").read_text()
    assert all(f"| {model} | 1 |" in summary for model in ("beta-VAE", "VLAE", "pro-VLAE"))
    assert (tmp_path / "information_flow.png").is_file()
    assert len(json.loads((tmp_path / "results.json").read_text())["runs"]) == 3


def test_the_docstring_examples_of_the_example_hold(load_example):
    # the examples folder is outside the doctest paths of the suite, so its doctests run here
    failed, attempted = doctest.testmod(load_example("progressive_vlae"))
    assert attempted > 0 and failed == 0


@pytest.mark.parametrize("migs", [[0.1, 0.5, 0.2, 0.4], [0.3, 0.1, 0.2], [0.2, 0.6]])
def test_the_comparison_table_reports_the_mean_of_the_best_three_as_the_paper_does(load_example, migs):
    example = load_example("progressive_vlae")
    runs = [example.Run(model, "both" if model == "pro-VLAE" else "-", seed, mig=mig, mig_sup=mig / 2)
            for model in ("pro-VLAE", "VLAE") for seed, mig in enumerate(migs)]
    args = example.parse_with_preset(example.build_parser(), example.PRESETS, ["--preset", "smoke"])
    rows = [[cell.strip() for cell in line.strip("|").split("|")]
            for line in example.report(runs, args).splitlines() if line.startswith("| pro-VLAE |")]
    best = sorted(migs)[-3:]
    expected = [f"{sum(best) / 3:.3f}", f"{sum(best) / 6:.3f}"] if len(migs) >= 3 else ["-", "-"]
    assert rows[0][:2] == ["pro-VLAE", str(len(migs))] and rows[0][4:6] == expected


@pytest.mark.parametrize("experiments, strategies, expected", [
    (["ablation"], None, ["both", "no strategy", "pre-KL only", "fade-in only"]),
    (["ablation"], ["no strategy"], ["no strategy"]),
    (["ablation"], ["fade-in only", "no strategy"], ["no strategy", "fade-in only"]),
    # "both" is the measured pro-VLAE run of flow, so it is trained once whatever the arms chosen
    (["flow", "ablation"], ["pre-KL only"], ["both", "pre-KL only"]),
])
def test_the_ablation_runs_the_chosen_arms_only(load_example, experiments, strategies, expected):
    example = load_example("progressive_vlae")
    argv = ["--experiments", *experiments, "--seeds", "2", "--first-seed", "5"]
    args = parse(example, *argv, *(["--strategies", *strategies] if strategies else []))
    jobs = example.jobs(args)
    arms = [strategy for kind, seed, strategy in jobs if kind == "pro-VLAE"]
    assert arms == expected * 2
    assert [seed for kind, seed, _ in jobs if kind == "pro-VLAE"] == [5] * len(expected) + [6] * len(expected)
    # the arms run do not enter the settings compared when result files are pooled
    assert "strategies" not in example.trained_settings(vars(args))

# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Trading information between the layers of a hierarchical VAE (Xiao and Bamler, ICLR 2023).

Trains a two-layer :class:`~pyro_hfvae.models.HierarchicalVAE` with
:class:`~pyro_hfvae.HITLoss` for every ``(beta_1, beta_2)`` of a log-spaced grid on
binarised MNIST digits (the test split in ``../shared/data/mnist``, read with
:class:`~pyro_hfvae.datasets.MNIST`) or on scikit-learn's 8x8 digits, and tabulates each layer's rate, the
distortion and the three uses of the paper:

- reconstruction: PSNR of the mean reconstruction;
- representation: accuracy of a logistic regression on the top layer's posterior means (and of
  the paper's other classifiers: linear and RBF support vector machines, 5-NN), fitted on half of
  the held-out images and tested on the other half;
- generation: an inception-style score of 1,000 model samples under a logistic regression
  on pixels fitted to real held-out images (a cheap proxy: it rewards confident and
  class-balanced samples, not fidelity).

It writes ``hit_rates.csv``, ``hit_rates.png`` (the rate-rate view coloured by each
metric) and ``summary.md`` (the best setting per use, and whether a plain beta-VAE
setting is beaten at equal or lower total rate) to ``--out-dir``. Every row also holds the
training loss curve (``train_loss/1`` ... ``train_loss/10``, one mean per tenth of the steps), and an
interrupted grid resumes from ``hit_rates.partial.csv`` when the same command runs again.

The 5 x 5 grids in docs/hit_results.md are the defaults (about 8 minutes of CPU time each), the
9 x 9 grids ``--preset cpu``::

    python examples/hit_rates.py --out-dir runs/hit_rates
    python examples/hit_rates.py --preset cpu --seed 1 --out-dir runs/hit_rates_cpu_s1

``--preset smoke`` runs in seconds; ``--preset paper`` is the paper's 21 x 21 scan (for a GPU:
``--device cuda``). The seeds are pooled with ``--from-csv runs/hit_rates*/hit_rates.csv
--out-dir runs/hit_rates_pooled``. ``--chosen-on`` those CSVs trains only each use's best unequal and best
beta-VAE setting on their mean, on new seeds or at a longer budget, and tests the difference on the new runs::

    python examples/hit_rates.py --preset cpu --steps 10000 --seed 2 --out-dir runs/hit_confirm_s2 \
        --chosen-on docs/_static/hit/hit_rates_9x9_top20_seed0.csv docs/_static/hit/hit_rates_9x9_top20_seed1.csv
"""

import argparse
import logging
import math
from pathlib import Path

import numpy as np
import torch
from _flags import add_preset_flag, parse_with_preset  # examples/_flags.py

from pyro_hfvae.datasets import MNIST, Digits
from pyro_hfvae.models import HierarchicalVAE
from pyro_hfvae.plots.rate_grid import (
    best_row,
    is_diagonal,
    last_part_change,
    plot_rate_grid,
    plot_rate_grid_convergence,
    plot_rate_rate_distortion,
    rate_sites,
)
from pyro_hfvae.training.paired_comparison import PairedComparison, paired_comparison
from pyro_hfvae.training.rate_grid import (
    average_rate_grids,
    default_betas_grid,
    rate_grid,
    read_rate_grid_csv,
    write_rate_grid_csv,
)
from pyro_hfvae.util import atomic_file

logger = logging.getLogger("hit_rates")

DEFAULT_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


def load_images(args: argparse.Namespace) -> tuple[torch.Tensor, np.ndarray]:
    """Binarised images ``(N, 1, H, W)`` in {0, 1} and their labels."""
    if args.dataset == "mnist":
        dataset = MNIST(args.data_dir, "test", binarize=True)
    else:
        dataset = Digits(binarize=True)
    index = np.arange(len(dataset))
    return dataset.observations(index), dataset.factors_of(index)[:, 0].astype(np.int64)


def _beats_at_rate(row: dict, other: dict, metric: str) -> bool:
    """Whether ``row`` has at most ``other``'s total rate and a higher ``metric``."""
    return row["rate"] <= other["rate"] and row[metric] > other[metric]


def dominated_diagonal(rows: list[dict], metric: str) -> list[tuple[dict, dict]]:
    """
    Pairs (beta-VAE row, better row) where a setting with unequal weights has at most the
    same total rate and a higher ``metric`` (the paper's "best model at a given total rate").
    """
    pairs = []
    for diagonal in (row for row in rows if is_diagonal(row)):
        better = [row for row in rows if not is_diagonal(row) and _beats_at_rate(row, diagonal, metric)]
        if better:
            pairs.append((diagonal, max(better, key=lambda row: row[metric])))
    return pairs


def dominance_over_seeds(grids: list[list[dict]], uses: dict[str, str]) -> str:
    """
    Markdown: per use and grid, the beta-VAE settings that an unequal setting beats at equal or
    lower total rate (:func:`dominated_diagonal`, the paper's "best model for a given total
    rate"), and in how many of the other grids each such pair holds again (the unequal setting
    still at most the beta-VAE's total rate and still better). The pairs are chosen on one grid
    and judged on the others, so noise that made them does not also confirm them.
    """
    lines = ["| use | chosen on grid | beta-VAE settings beaten | pairs that hold on the other grids |",
             "|---|---|---|---|"]
    by_setting = [{_setting(row): row for row in grid} for grid in grids]
    for use, metric in uses.items():
        held_all = tried_all = 0
        for index, grid in enumerate(grids):
            pairs = dominated_diagonal(grid, metric)
            others = by_setting[:index] + by_setting[index + 1:]
            held = sum(_beats_at_rate(other[_setting(better)], other[_setting(diagonal)], metric)
                       for diagonal, better in pairs for other in others)
            tried = len(pairs) * len(others)
            held_all, tried_all = held_all + held, tried_all + tried
            lines.append(f"| {use} | {index} | {len(pairs)} of {sum(map(is_diagonal, grid))} | {held}/{tried} |")
        lines.append(f"| {use} | all | | {held_all}/{tried_all} |")
    return "\n".join(lines) + "\n"


def _betas(row: dict) -> str:
    return _betas_of(_setting(row))


def _rates(row: dict) -> str:
    return "(" + ", ".join(f"{v:.1f}" for k, v in row.items() if k.startswith("rate/")) + ")"


def summarise(rows: list[dict], uses: dict[str, str]) -> str:
    """Markdown: the best setting per use against the best beta-VAE setting, and the beta-VAE
    settings that an unequal setting beats at equal or lower total rate."""
    lines = [
        "| use | metric | best betas | its layer rates | value | best beta-VAE betas | value |",
        "|---|---|---|---|---|---|---|",
    ]
    for use, metric in uses.items():
        best = best_row(rows, metric)
        diagonal = best_row([row for row in rows if is_diagonal(row)], metric)
        lines.append(
            f"| {use} | {metric} | {_betas(best)} | {_rates(best)} | {best[metric]:.4g} | "
            f"{_betas(diagonal)} | {diagonal[metric]:.4g} |"
        )
    lines.append("")
    count = sum(is_diagonal(row) for row in rows)
    for use, metric in uses.items():
        pairs = dominated_diagonal(rows, metric)
        lines.append(
            f"- {use} ({metric}): {len(pairs)} of {count} beta-VAE settings are beaten by an "
            "unequal setting with at most the same total rate"
        )
        for diagonal, better in pairs:
            lines.append(
                f"  - {_betas(diagonal)}: {diagonal[metric]:.4g} at {diagonal['rate']:.1f} nats, "
                f"beaten by {_betas(better)}: {better[metric]:.4g} at {better['rate']:.1f} nats"
            )
    return "\n".join(lines) + "\n"


def _setting(row: dict) -> tuple:
    return tuple(value for key, value in row.items() if key.startswith("beta/"))


def _value(grid: list[dict], setting: tuple, metric: str) -> float:
    return next(row[metric] for row in grid if _setting(row) == setting)


def chosen_settings(grids: list[list[dict]], uses: dict[str, str]) -> dict[str, tuple[tuple, tuple]]:
    """Per use, its best unequal setting and its best beta-VAE setting on the mean of ``grids``."""
    mean = average_rate_grids(grids)
    return {
        use: (
            _setting(best_row([row for row in mean if not is_diagonal(row)], metric)),
            _setting(best_row([row for row in mean if is_diagonal(row)], metric)),
        )
        for use, metric in uses.items()
    }


def _comparison(grids: list[list[dict]], pair: tuple[tuple, tuple], metric: str) -> PairedComparison:
    """The first setting's ``metric`` against the second's, grid by grid."""
    return paired_comparison(*([_value(grid, setting, metric) for grid in grids] for setting in pair))


def compare_over_seeds(grids: list[list[dict]], uses: dict[str, str]) -> str:
    """
    Markdown: per use, the best unequal setting against the best beta-VAE setting (both
    chosen on the mean over all grids), their difference in every grid, and, to avoid
    choosing and judging on the same runs, the difference on the second half of the grids
    of the two settings chosen on the first half.
    """
    half = len(grids) // 2
    second = average_rate_grids(grids[half:])
    on_all, on_first = chosen_settings(grids, uses), chosen_settings(grids[:half], uses)
    lines = [
        "| use | metric | best unequal betas | best beta-VAE betas | difference per grid | mean ± s.e. | "
        "grids won by the unequal setting | chosen on the first half, difference on the second |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for use, metric in uses.items():
        unequal, diagonal = on_all[use]
        comparison = _comparison(grids, on_all[use], metric)
        differences = comparison.differences
        spread = comparison.sd / math.sqrt(comparison.num_seeds)  # NaN for one grid
        chosen = on_first[use]
        (held_out,) = _comparison([second], chosen, metric).differences
        lines.append(
            f"| {use} | {metric} | {_betas_of(unequal)} | {_betas_of(diagonal)} | "
            + ", ".join(f"{d:+.3g}" for d in differences)
            + f" | {comparison.mean:+.3g} ± {spread:.2g} | {comparison.ahead}/{len(grids)} | "
            f"{_betas_of(chosen[0])} vs {_betas_of(chosen[1])}: {held_out:+.3g} |"
        )
    return "\n".join(lines) + "\n"


def confirm_chosen(grids: list[list[dict]], uses: dict[str, str], chosen: dict[str, tuple[tuple, tuple]]) -> str:
    """
    Markdown: per use, the unequal setting minus the beta-VAE setting ``chosen`` on other grids
    (:func:`chosen_settings` of ``--chosen-on``), grid by grid on ``grids``, with the two-sided
    paired t-test of a zero mean difference. Choosing and testing on different seeds keeps the
    test honest about having picked the best of many settings.
    """
    lines = [
        "| use | metric | unequal betas | beta-VAE betas | difference per grid | mean ± sd | "
        "grids won by the unequal setting | paired t p |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for use, (unequal, diagonal) in chosen.items():
        metric = uses[use]
        comparison = _comparison(grids, (unequal, diagonal), metric)
        lines.append(
            f"| {use} | {metric} | {_betas_of(unequal)} | {_betas_of(diagonal)} | "
            + ", ".join(f"{d:+.3g}" for d in comparison.differences)
            + f" | {comparison.mean:+.3g} ± {comparison.sd:.2g} | {comparison.ahead}/{len(grids)} | "
            f"{comparison.t_p:.2g} |"
        )
    return "\n".join(lines) + "\n"


def near_optimal(grids: list[list[dict]], uses: dict[str, str]) -> tuple[str, dict[str, set]]:
    """
    Where each use's optimum lies, with its uncertainty. The seed-to-seed standard deviation of a
    metric (``s``) is pooled over the settings whose mean is at least the median: the ones that
    compete for the optimum (poor settings can be much noisier, e.g. the accuracy on a collapsed
    layer). The difference of two settings' means over ``n`` grids then has standard error
    ``s * sqrt(2 / n)``; the settings whose mean is within two such errors of the best mean cannot
    be told apart from the optimum (a pairwise check, not corrected for having picked the best).
    Returns the Markdown table and, per use, that set of settings.
    """
    if len(grids) < 2:
        raise ValueError(f"expected at least two grids (seeds) to measure the noise but got {len(grids)}")
    mean = average_rate_grids(grids)
    lines = [
        "| use | metric | best betas (mean) | value | seed-to-seed sd (upper half) "
        "| settings within 2 s.e. of the best | of them beta-VAE | best beta-VAE betas | its gap to the best (s.e.) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    sets = {}
    for use, metric in uses.items():
        values = np.array([[_value(grid, _setting(row), metric) for grid in grids] for row in mean])
        means = values.mean(axis=1)
        spread = math.sqrt(values.var(axis=1, ddof=1)[means >= np.median(means)].mean())
        error = spread * math.sqrt(2 / len(grids))
        best = best_row(mean, metric)
        close = [row for row in mean if row[metric] >= best[metric] - 2 * error]
        sets[use] = {_setting(row) for row in close}
        diagonal = best_row([row for row in mean if is_diagonal(row)], metric)
        lines.append(
            f"| {use} | {metric} | {_betas(best)} | {best[metric]:.4g} | {spread:.2g} | {len(close)} of {len(mean)} | "
            f"{sum(is_diagonal(row) for row in close)} | {_betas(diagonal)} | "
            f"{(best[metric] - diagonal[metric]) / error:.1f} |"
        )
    names = list(sets)
    lines.append("")
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            shared = sets[first] & sets[second]
            lines.append(f"- {first} and {second}: {len(shared)} settings in both sets"
                         + (f" ({', '.join(_betas_of(setting) for setting in sorted(shared))})" if shared else ""))
    return "\n".join(lines) + "\n", sets


def convergence(rows: list[dict]) -> str:
    """One line on whether the grid's models converged: how much their training loss still fell over
    the last tenth of training (:func:`~pyro_hfvae.plots.rate_grid.last_part_change`)."""
    changes = np.array([last_part_change(row) for row in rows])
    worst = rows[int(changes.argmax())]
    return (
        f"Convergence: over the last tenth of training the loss fell by {np.median(changes):.2f} % (median over "
        f"{len(rows)} settings), at most {changes.max():.2f} % ({_betas(worst)}); {int((changes > 1).sum())} "
        "settings fell by more than 1 %.\n"
    )


def _betas_of(setting: tuple) -> str:
    return "(" + ", ".join(f"{v:.3g}" for v in setting) + ")"


def table(rows: list[dict], columns: list[str]) -> str:
    """The rows as a markdown table."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(f"{row[c]:.3g}" for c in columns) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], uses: dict[str, str], path: Path) -> None:
    """The rate-rate view coloured by each use's metric, saved atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(uses), figsize=(4.6 * len(uses), 4.2))
    for ax, (use, metric) in zip(np.atleast_1d(axes), uses.items()):
        plot_rate_grid(rows, metric, ax=ax, title=f"{use}: {metric}")
    handles, names = np.atleast_1d(axes)[0].get_legend_handles_labels()
    fig.legend(
        handles,
        [n.replace(uses["reconstruction"], "metric") for n in names],
        loc="lower center",
        ncol=2,
        fontsize=8,
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    with atomic_file(path) as file:
        fig.savefig(file, dpi=110, format="png")
    plt.close(fig)


def train_grid(
    args: argparse.Namespace, out_dir: Path, chosen: dict[str, tuple[tuple, tuple]] | None = None
) -> list[dict]:
    """
    Loads the data and trains the grid (see the module docstring), or only the settings ``chosen``
    (:func:`chosen_settings`) where given. Each finished setting is saved to
    ``out_dir/hit_rates.partial.csv`` and skipped when the same command runs again: a setting's row
    does not depend on the others (each is seeded), so an interrupted grid resumes where it stopped.
    """
    torch.set_num_threads(args.threads)
    images, labels = load_images(args)
    if args.num_train + args.num_eval > len(images):
        raise ValueError(
            f"expected --num-train + --num-eval <= {len(images)} images but got {args.num_train} + {args.num_eval}"
        )
    held_out = slice(len(images) - args.num_eval, len(images))

    def make_model() -> HierarchicalVAE:
        return HierarchicalVAE(
            tuple(images.shape[1:]),
            tuple(args.latent_dims),
            channels=tuple(args.channels),
            hidden_dim=args.hidden_dim,
        ).to(args.device)

    site_names = make_model().site_names
    if chosen is None:
        settings = default_betas_grid(site_names, args.num_betas, (args.beta_min, args.beta_max))
    else:
        pairs = dict.fromkeys(setting for pair in chosen.values() for setting in pair)
        settings = [dict(zip(site_names, setting, strict=True)) for setting in pairs]
    partial = out_dir / "hit_rates.partial.csv"
    done = {_key(_setting(row)): row for row in (read_rate_grid_csv(partial) if partial.exists() else [])}
    if done:
        logger.info("resuming: %d of %d settings are in %s", len(done), len(settings), partial)
    for betas in settings:
        key = _key(tuple(betas.values()))
        if key in done:
            continue
        (row,) = rate_grid(
            make_model,
            images[: args.num_train],
            [betas],
            eval_data=images[held_out],
            eval_labels=labels[held_out],
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            num_samples=args.num_samples,
            seed=args.seed,
        )
        done[key] = row
        logger.info("setting %d of %d %s: %.0f s", len(done), len(settings), _betas_of(key), row["seconds"])
        write_rate_grid_csv(list(done.values()), partial)
    rows = [done[_key(tuple(betas.values()))] for betas in settings]
    partial.unlink(missing_ok=True)
    return rows


def _key(setting: tuple) -> tuple:
    # The weights survive the CSV round trip exactly; rounding guards against a reformatted file.
    return tuple(round(value, 9) for value in setting)


def uses_of(rows: list[dict]) -> dict[str, str]:
    """The paper's three uses and the metric of each, for the sites of ``rows``."""
    return {
        "reconstruction": "psnr",
        "representation": f"logistic/{rate_sites(rows)[-1]}",
        "generation": "inception_score",
    }


def main(args: argparse.Namespace) -> list[dict]:
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    chosen = None
    if args.chosen_on:
        earlier = [read_rate_grid_csv(path) for path in args.chosen_on]
        chosen = chosen_settings(earlier, uses_of(earlier[0]))
        chosen = {use: pair for use, pair in chosen.items() if use in args.uses}
    if args.from_csv:
        grids = [read_rate_grid_csv(path) for path in args.from_csv]
        rows = average_rate_grids(grids)
    else:
        rows = train_grid(args, out_dir, chosen)
        grids = [rows]
        write_rate_grid_csv(rows, out_dir / "hit_rates.csv")
    sites = rate_sites(rows)
    uses = uses_of(rows)
    plot(rows, uses, out_dir / "hit_rates.png")
    best = {f"best {use}": best_row(rows, metric) for use, metric in uses.items()}
    plot_rate_rate_distortion(rows, best, path=out_dir / "hit_rates_rate_rate_distortion.png")
    has_curves = any(key.startswith("train_loss/") for key in rows[0])
    if has_curves:
        plot_rate_grid_convergence(rows, path=out_dir / "hit_rates_convergence.png")
    columns = (
        [f"beta/{site}" for site in sites]
        + [f"rate/{site}" for site in sites]
        + ["rate", "distortion", "psnr"]
        + [f"{kind}/{site}" for kind in ("logistic", "svm_linear", "svm_rbf", "knn") for site in sites
           if f"{kind}/{site}" in rows[0]]
        + ["inception_score"]
    )
    summary = summarise(rows, uses) + "\n"
    if has_curves:
        summary += convergence(rows) + "\n"
    if len(grids) > 1:
        summary = (
            f"Mean over {len(grids)} grids.\n\n" + summary + "\nThe unequal and beta-VAE optima grid by grid:\n\n"
            + compare_over_seeds(grids, uses) + "\nWhere the optima lie, with their uncertainty:\n\n"
            + near_optimal(grids, uses)[0] + "\nThe best models for a given total rate, grid by grid:\n\n"
            + dominance_over_seeds(grids, uses)
        )
    if chosen is not None:
        summary += (f"\nEach use's settings chosen on {len(args.chosen_on)} earlier grids, tested on these "
                    f"{len(grids)}:\n\n" + confirm_chosen(grids, uses, chosen) + "\n")
    summary += table(rows, columns)
    with atomic_file(out_dir / "summary.md", "w") as file:
        file.write(summary)
    print(summary)
    print(f"total training time {sum(row['seconds'] for row in rows):.0f} s; outputs in {out_dir}")
    return rows


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dataset",
        choices=("mnist", "digits"),
        default="mnist",
        help="MNIST test split (28x28) or scikit-learn's digits (8x8)",
    )
    parser.add_argument("--data-dir", default=str(DEFAULT_MNIST), help="folder with the MNIST IDX files")
    parser.add_argument("--num-train", type=int, default=8000, help="images to train on")
    parser.add_argument("--num-eval", type=int, default=2000, help="held-out images to evaluate on")
    parser.add_argument("--num-betas", type=int, default=5, help="weights per layer (grid of num-betas^2)")
    parser.add_argument("--beta-min", type=float, default=0.1)
    parser.add_argument("--beta-max", type=float, default=10.0)
    parser.add_argument("--steps", type=int, default=800, help="Adam steps per setting")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--latent-dims", type=int, nargs="+", default=[32, 8], help="z1 ... zL sizes, bottom first")
    parser.add_argument("--channels", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--hidden-dim", type=int, default=64)
    parser.add_argument("--num-samples", type=int, default=1000, help="samples for the generation score")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="where the models train (e.g. cuda)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (more oversubscribe a busy machine)",
    )
    parser.add_argument("--out-dir", default="runs/hit_rates")
    add_preset_flag(parser, PRESETS)
    parser.add_argument(
        "--from-csv",
        nargs="+",
        help="remake the figure and summary from saved hit_rates.csv files (no training); several "
        "(one per seed) are averaged setting by setting and compared grid by grid",
    )
    parser.add_argument(
        "--uses",
        nargs="+",
        choices=("reconstruction", "representation", "generation"),
        default=["reconstruction", "representation", "generation"],
        help="with --chosen-on: the uses whose chosen settings are trained and tested",
    )
    parser.add_argument(
        "--chosen-on",
        nargs="+",
        help="saved hit_rates.csv files of earlier seeds: train only each use's best unequal and best beta-VAE "
        "setting on their mean, and test the difference on the new runs (with --from-csv: on those grids)",
    )
    return parser


#: Settings of ``--preset``; flags given explicitly take precedence. ``cpu``: the 9 x 9 grid with the
#: paper's 20-dimensional top layer in docs/hit_results.md; ``paper``: the paper's 21 x 21 scan (a GPU's
#: work); ``smoke``: seconds, on scikit-learn's digits.
PRESETS = {
    "cpu": {"num_betas": 9, "latent_dims": [32, 20], "steps": 2000},
    "paper": {"num_betas": 21, "latent_dims": [32, 20], "steps": 10000},
    "smoke": {"dataset": "digits", "num_train": 120, "num_eval": 60, "num_betas": 2, "steps": 2, "num_samples": 20,
              "latent_dims": [3, 2], "channels": [2], "hidden_dim": 8},
}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    main(parse_with_preset(make_parser(), PRESETS))

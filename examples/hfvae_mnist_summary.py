# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Tables and figures from the result files of ``examples/hfvae_mnist.py --json``, without training.

- ``--runs``: result files of repeated runs of one setting (e.g. five seeds of the HFVAE and the
  beta-VAE); a table per model of the cluster accuracy (training and held-out digits), the label
  information, pruned dimensions and identity under traversal, every seed with mean +- sd and median,
  and the figure of I(label; z_d) per dimension (the paper's Fig. 5, right); then the run a user
  without labels would keep, by ``--keep-by`` (the highest training ELBO, or the class group's
  dimension-wise KL), from all of a model's seeds or from groups of ``--restarts`` consecutive seeds.
  With ``--paired``, every model against the first one read, seed by seed on their shared seeds.
- ``--screen``: result files of runs of varied settings, one row per setting (mean +- sd over its seeds).
- ``--sweep``: result files of a sweep over beta and gamma (the paper's Fig. 6); per setting, the
  mutual information I(x; {z, c}) against the total correlation TC({z, c}) of the code, and the label's
  information gap between the Concrete and the best continuous dimension, as a table and a figure.

Example::

    python examples/hfvae_mnist_summary.py --runs docs/_static/mnist_unsupervised/*.json \\
        --sweep docs/_static/mnist_tradeoff/*.json --out-dir docs/_static/mnist_figures
"""
import argparse
import json
import re
from pathlib import Path

import numpy as np
from _flags import mean_sd  # examples/_flags.py
from scipy.stats import spearmanr

from pyro_hfvae.training import paired_comparison
from pyro_hfvae.util import atomic_file

#: I(x; z_d) below this many nats counts as pruned (as in docs/examples_results.md).
PRUNED = 0.1


def read(paths: list[str]) -> list[dict]:
    """The records of ``paths``: per file and model, the model's results with the run's settings."""
    records = []
    for path in sorted(paths):
        record = json.loads(Path(path).read_text())
        settings = record["settings"]
        for name, result in record["models"].items():
            if result.get("kind") == "hfvae":
                if settings.get("guide", "factorised") == "structured":
                    name += ", style given class"
                if settings.get("learn_class_prior", False):
                    name += ", learned class prior"
                if settings.get("style_warmup_epochs", 0) > 0:
                    name += (f" + style warm-up ({settings['style_warmup_epochs']} epochs, "
                             f"style rate x {settings['style_warmup_beta']:g})")
                if settings.get("class_init", "none") == "kmeans":
                    then = (f"{settings['epochs']} epochs" if settings.get("epochs") is not None
                            else f"{settings['steps']} steps")
                    name += f" + k-means start ({settings['class_init_epochs']} beta-VAE epochs, then {then})"
                if settings.get("weight_init", "default") != "default":
                    name += f", {settings['weight_init']} weights"
            if settings.get("architecture", "mlp") == "conv":
                name += f", conv {'-'.join(map(str, settings['channels']))}"
            records.append({"name": name, "path": str(path), "settings": settings, **result})
    return records


def runs_table(records: list[dict]) -> str:
    """Per model: every seed's numbers, their mean +- sd (sample sd) and median."""
    columns = [("cluster_accuracy", "cluster accuracy (train)"),
               ("held_out_cluster_accuracy", "cluster accuracy (held out)"),
               ("label_info", "I(label; clusters)"), ("identity_kept", "identity kept")]
    lines = ["| model | seeds | images seen | " + " | ".join(title for _, title in columns) + " | pruned dims |",
             "|" + "---|" * (len(columns) + 4)]
    for name in dict.fromkeys(r["name"] for r in records):
        rows = sorted((r for r in records if r["name"] == name), key=lambda r: r["settings"]["seed"])
        cells = []
        for key, _ in columns:
            values = [r.get(key) for r in rows]
            if any(v is None for v in values):
                cells.append("-")
                continue
            cells.append(f"{', '.join(f'{v:.3f}' for v in values)} (mean {mean_sd(values)}, median "
                         f"{np.median(values):.3f})")
        pruned = [sum(v < PRUNED for v in r["info_z"]) for r in rows]
        lines.append(f"| {name} | {', '.join(str(r['settings']['seed']) for r in rows)} | "
                     f"{rows[0]['images_seen']:,} | " + " | ".join(cells) +
                     f" | {', '.join(map(str, pruned))} of {len(rows[0]['info_z'])} |")
    return "\n".join(lines)


#: Label-free criteria for keeping one of several restarts: name -> (what is kept, column title,
#: the decomposition term to maximise, from the training digits).
KEEP_BY = {
    "elbo": ("the highest ELBO", "ELBO", "elbo"),
    "class_kl": ("the largest class KL", "class KL", "dimwise_kl/class"),
}


def restart_groups(rows: list[dict], group_size: int | None) -> list[list[dict]]:
    """
    ``rows`` (one model's runs) in seed order, split into consecutive groups of ``group_size`` (all:
    None); a last group with fewer runs is left out, so that every kept run had as many rivals.
    """
    rows = sorted(rows, key=lambda r: r["settings"]["seed"])
    size = group_size or len(rows)
    return [rows[i:i + size] for i in range(0, len(rows) - size + 1, size)]


def kept_restarts_table(records: list[dict], keep_by: str = "elbo", group_size: int | None = None) -> str:
    """
    Per model and group of restarts, the run a user without labels would keep (the largest value of
    the criterion ``keep_by`` on the training digits; ties: the first seed) and its scores; with more
    than one group, the kept runs' held-out accuracy and the criterion's rank correlation with the
    training digits' accuracy over every run. A model without the criterion's term (the beta-VAE has
    no class group) is named below the table.
    """
    phrase, column, term = KEEP_BY[keep_by]
    lines = [f"| model | restarts | seed with {phrase} | {column} | cluster accuracy (train) "
             "| cluster accuracy (held out) |", "|---|---|---|---|---|---|"]
    notes = []
    for name in dict.fromkeys(r["name"] for r in records):
        rows = [r for r in records if r["name"] == name]
        if any(term not in r["decomposition"] for r in rows):
            notes.append(f"{name}: no {column} in its result files")
            continue
        groups = restart_groups(rows, group_size)
        kept = [max(group, key=lambda r: r["decomposition"][term]) for group in groups]  # ties: the first
        for group, best in zip(groups, kept):
            lines.append(f"| {name} | {', '.join(str(r['settings']['seed']) for r in group)} "
                         f"| {best['settings']['seed']} | {best['decomposition'][term]:.3f} "
                         f"| {best['cluster_accuracy']:.3f} | {best['held_out_cluster_accuracy']:.3f} |")
        if len(groups) > 1:
            held_out = [r["held_out_cluster_accuracy"] for r in kept]
            rho = spearmanr([r["decomposition"][term] for r in rows], [r["cluster_accuracy"] for r in rows])[0]
            notes.append(f"{name}: kept runs' held-out cluster accuracy {mean_sd(held_out)}, median "
                         f"{np.median(held_out):.3f}; Spearman correlation of the {column} with the training "
                         f"accuracy over {len(rows)} runs: {rho:.2f}")
    return "\n".join(lines + ([""] + notes if notes else []))


def paired_table(records: list[dict], against: str | None = None) -> str:
    """
    Every model against a reference, seed by seed on the seeds both have: the held-out cluster
    accuracy's differences (this model - the reference), their mean +- sd, the paired t test's and
    the Wilcoxon signed-rank test's two-sided p, and how many seeds went up. The reference is the
    model named ``against`` or, by default, the first one read (files in sorted order).
    """
    names = list(dict.fromkeys(r["name"] for r in records))
    if against is not None:
        if against not in names:
            raise ValueError(f"expected --against to name a model of the runs ({', '.join(names)}) but got {against}")
        names.remove(against)
        names.insert(0, against)
    lines = ["| model | against | seeds | difference per seed (held out) | mean +- sd | paired t p | Wilcoxon p "
             "| seeds up |", "|---|---|---|---|---|---|---|---|"]
    accuracy = {(r["name"], r["settings"]["seed"]): r["held_out_cluster_accuracy"] for r in records}
    for name in names[1:]:
        seeds = sorted(seed for other, seed in accuracy if other == name and (names[0], seed) in accuracy)
        if len(seeds) < 2:
            continue
        comparison = paired_comparison(*([accuracy[model, seed] for seed in seeds] for model in (name, names[0])))
        difference = comparison.differences
        lines.append(f"| {name} | {names[0]} | {', '.join(map(str, seeds))} "
                     f"| {comparison.format_differences()} | {mean_sd(difference)} "
                     f"| {comparison.t_p:.3f} | {comparison.wilcoxon_p:.3f} "
                     f"| {comparison.ahead} of {len(seeds)} |")
    return "\n".join(lines)


def start_table(records: list[dict]) -> str:
    """
    Per model started from k-means clusters (``--class-init kmeans``): the held-out cluster accuracy
    of the start (k-means on the pretrained beta-VAE's means) and of the trained model, seed by seed,
    and the lift (trained - start) with the paired t test's and the Wilcoxon signed-rank test's
    two-sided p; "" when no run has a start.
    """
    lines = ["| model | seeds | start (held out) | trained (held out) | lift per seed | mean +- sd | paired t p "
             "| Wilcoxon p | seeds up |", "|---|---|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["name"] for r in records if "class_init" in r):
        rows = sorted((r for r in records if r["name"] == name), key=lambda r: r["settings"]["seed"])
        start = [r["class_init"]["kmeans_held_out_accuracy"] for r in rows]
        trained = [r["held_out_cluster_accuracy"] for r in rows]
        comparison = paired_comparison(trained, start)
        lines.append(f"| {name} | {', '.join(str(r['settings']['seed']) for r in rows)} | {mean_sd(start)} "
                     f"| {mean_sd(trained)} | {comparison.format_differences()} "
                     f"| {mean_sd(comparison.differences)} | {comparison.t_p:.3g} | {comparison.wilcoxon_p:.3g} "
                     f"| {comparison.ahead} of {len(rows)} |")
    return "\n".join(lines) if len(lines) > 2 else ""


#: The settings of examples/hfvae_mnist.py a screen varies, with the script's defaults.
SCREENED = {"alpha": 1.0, "beta": 16.0, "gamma": 3.0, "concrete_scoring": "argmax", "style_dim": 10,
            "temperature": 0.66, "lr": 1e-3, "style_warmup_epochs": 0, "guide": "factorised", "architecture": "mlp",
            "hidden_dim": 400, "batch_size": 128, "learn_class_prior": False, "weight_init": "default",
            "class_init": "none"}


def changed_settings(settings: dict) -> str:
    """The screened settings a run changes (with the warm-up's style weight where it has one)."""
    changed = [f"{k}={settings[k]}" for k, v in SCREENED.items() if settings.get(k, v) != v]
    if settings.get("style_warmup_epochs", 0) > 0:
        changed.append(f"style_warmup_beta={settings['style_warmup_beta']}")
    if settings.get("class_init", "none") != "none":
        changed += [f"class_init_epochs={settings['class_init_epochs']}",
                    f"class_init_fit_epochs={settings['class_init_fit_epochs']}"]
    return ", ".join(changed)


def screen_name(record: dict) -> str:
    """A screen row's name: the file's stem without a trailing seed (``base_s3`` -> ``base``)."""
    if record["kind"] != "hfvae":
        return "beta-VAE (beta=4)"
    stem = re.sub(rf"_?s(eed)?{record['settings'].get('seed')}$", "", Path(record["path"]).stem)
    return f"HFVAE {stem}"


def screen_table(records: list[dict]) -> str:
    """
    One row per screened setting: the settings it changes, its label recovery, pruning and ELBO,
    mean +- sd over the seeds of that setting (files with the same name once their seed is removed).
    """
    lines = ["| run | changed settings | cluster accuracy (train) | cluster accuracy (held out) | I(label; clusters) "
             "| clusters used | pruned dims | ELBO | seeds |", "|---|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        changed = changed_settings(r["settings"]) if r["kind"] == "hfvae" else ""
        groups.setdefault((screen_name(r), changed or "-"), []).append(r)
    for (name, changed), rows in groups.items():
        columns = [[r["cluster_accuracy"] for r in rows], [r["held_out_cluster_accuracy"] for r in rows],
                   [r["label_info"] for r in rows]]
        used = [r.get("clusters_used") for r in rows]
        pruned = [sum(v < PRUNED for v in r["info_z"]) for r in rows]
        lines.append(f"| {name} | {changed} | " + " | ".join(mean_sd(c) for c in columns)
                     + f" | {', '.join(map(str, used)) if all(used) else '-'} "
                     f"| {', '.join(map(str, pruned))} of {len(rows[0]['info_z'])} "
                     f"| {mean_sd([r['decomposition']['elbo'] for r in rows], digits=1)} "
                     f"| {', '.join(str(r['settings'].get('seed', '-')) for r in rows)} |")
    return "\n".join(lines)


def setting(record: dict) -> tuple[float, float]:
    """``(beta, gamma)`` of an HFVAE record."""
    return record["settings"]["beta"], record["settings"]["gamma"]


def sweep_table(records: list[dict]) -> str:
    """Per (beta, gamma): restarts, I(x; {z, c}), TC({z, c}), the label gap and pruned dimensions, mean +- sd."""
    lines = ["| beta | gamma | restarts | I(x; {z, c}) | TC({z, c}) | label gap | cluster accuracy | pruned dims |",
             "|---|---|---|---|---|---|---|---|"]
    for beta, gamma in sorted({setting(r) for r in records}):
        rows = [r for r in records if setting(r) == (beta, gamma)]
        info = [r["decomposition"]["mutual_info"] for r in rows]
        tc = [total_correlation(r) for r in rows]
        pruned = [sum(v < PRUNED for v in r["info_z"]) for r in rows]
        lines.append(f"| {beta:g} | {gamma:g} | {len(rows)} | {mean_sd(info)} | {mean_sd(tc)} | "
                     f"{mean_sd([r['label_gap'] for r in rows])} | {mean_sd([r['cluster_accuracy'] for r in rows])} "
                     f"| {mean_sd(pruned)} |")
    return "\n".join(lines)


def total_correlation(record: dict) -> float:
    """TC({z, c}) of the code: the TC between the groups plus the TC within them (nats)."""
    return record["decomposition"]["tc_between"] + record["decomposition"]["tc_within"]


def plot_sweep(records: list[dict], path: Path) -> None:
    """Left: I(x; {z, c}) against TC({z, c}) for gamma = beta; right: the label gap against beta at gamma = 3."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 3.8))
    diagonal = sorted({b for b, g in map(setting, records) if b == g})
    colours = plt.cm.viridis(np.linspace(0, 0.9, max(len(diagonal), 1)))
    for colour, value in zip(colours, diagonal):
        rows = [r for r in records if setting(r) == (value, value)]
        left.scatter([total_correlation(r) for r in rows], [r["decomposition"]["mutual_info"] for r in rows],
                     color=colour, label=f"beta = gamma = {value:g}")
    left.set_xlabel("TC({z, c}) [nats]")
    left.set_ylabel("I(x; {z, c}) [nats]")
    if diagonal:
        left.legend(fontsize=8)
    betas = sorted({b for b, g in map(setting, records) if g == 3})
    for beta in betas:
        gaps = [r["label_gap"] for r in records if setting(r) == (beta, 3)]
        right.scatter([beta] * len(gaps), gaps, color="C0", alpha=0.6)
        right.errorbar(beta, np.mean(gaps), yerr=np.std(gaps, ddof=1) if len(gaps) > 1 else 0, fmt="_", color="k",
                       capsize=4)
    right.set_xscale("log")
    right.set_xticks(betas)
    right.set_xticklabels([f"{b:g}" for b in betas])
    right.axhline(0, color="grey", lw=0.5)
    right.set_xlabel("beta (gamma = 3)")
    right.set_ylabel("label gap of c over the best z_d")
    right.set_title("(I(label; c) - max_d I(label; z_d)) / log 10", fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def plot_label_information(records: list[dict], path: Path) -> None:
    """I(label; z_d) per continuous dimension (sorted) of each model's first seed, with the Concrete's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["name"] for r in records))
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        record = min((r for r in records if r["name"] == name), key=lambda r: r["settings"]["seed"])
        values = np.sort(record["label_info_z"])[::-1]
        ax.bar(np.arange(len(values)), values, color="C0", label="z_d")
        if record.get("label_gap") is not None:
            ax.bar([len(values)], [record["label_info"]], color="C3", label="Concrete c (argmax)")
        ax.set_ylim(0, np.log(10))
        ax.set_xlabel("latent, sorted")
        ax.set_ylabel("I(label; .) [nats]")
        ax.set_title(f"{re.sub(r' [(][^)]*[)]', '', name)}, seed {record['settings']['seed']}", fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as file:
        fig.savefig(file, dpi=110, format="png")
    plt.close(fig)


def main(args: argparse.Namespace) -> str:
    parts = []
    out_dir = None if args.out_dir is None else Path(args.out_dir)
    if args.runs:
        records = read(args.runs)
        parts += [runs_table(records), kept_restarts_table(records, args.keep_by, args.restarts)]
        if args.paired:
            parts.append(paired_table(records, args.against))
        starts = start_table(records)
        if starts:
            parts.append(starts)
        if out_dir is not None:
            plot_label_information(records, out_dir / "label_information.png")
    if args.screen:
        parts.append(screen_table(read(args.screen)))
    if args.sweep:
        records = [r for r in read(args.sweep) if r["kind"] == "hfvae"]
        parts.append(sweep_table(records))
        if out_dir is not None:
            plot_sweep(records, out_dir / "tradeoff.png")
    text = "\n\n".join(parts)
    print(text)
    return text


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="*", default=[], help="result files of repeated runs of one setting")
    parser.add_argument("--sweep", nargs="*", default=[], help="result files of a sweep over beta and gamma")
    parser.add_argument("--screen", nargs="*", default=[], help="result files of a screen, one row per setting")
    parser.add_argument("--keep-by", choices=tuple(KEEP_BY), default="elbo",
                        help="the label-free criterion that keeps one of several restarts (with --runs)")
    parser.add_argument("--restarts", type=int, default=None,
                        help="restarts per group, consecutive seeds (default: every seed of a model is one group)")
    parser.add_argument("--paired", action="store_true",
                        help="with --runs: every model against the first, seed by seed (paired t and Wilcoxon)")
    parser.add_argument("--against", default=None,
                        help="with --paired: the model every other is compared with (default: the first read)")
    parser.add_argument("--out-dir", default=None, help="where to write the figures")
    return parser


if __name__ == "__main__":
    main(make_parser().parse_args())

# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Generalisation to unseen factor combinations on dSprites (the HFVAE paper's Fig. 7).

Trains the default run's HFVAE (Concrete(3) + Normal(10), beta = 4, gamma = 3) and a beta-VAE
(10 Normal latents, every KL term times 4) with the library's trainer, each twice: on every
dSprites image, and with a block of factor combinations left out (``[data] hold_out``; by default
every square in the right third of the image). Each run then scores the left-out images and the
held-in images that share part of their combination (squares elsewhere, other shapes in the right
third; :meth:`~pyro_hfvae.datasets.GroundTruthDataset.held_out_neighbour_indices`): the ELBO per
image, the squared reconstruction error, and whether the reconstruction shows the right shape
(nearer to the square than to the other shapes drawn with the same factors) and its outline (nearer
to the square than to a disc of the same area and centre). A model that
generalises to the unseen combinations scores them as it scores their neighbours, and as the model
that saw them does; ``--summary`` also compares the two models' cost of never seeing them, seed by
seed.

A finished run of the same model made elsewhere (the dSprites Table 3 runs, say) can stand in for a
run trained on every image: copy its directory to ``RUNS_DIR/MODEL_all_seedS``.

One run directory per model, condition and seed (rerunning resumes unfinished runs and reuses
finished ones); a result file per run; ``--summary`` prints the table from the result files::

    python examples/unseen_combinations.py --preset paper
    python examples/unseen_combinations.py --summary
"""
import argparse
import json
import logging
from pathlib import Path

import numpy as np
import torch
from _flags import (  # examples/_flags.py
    add_preset_flag,
    add_result_flags,
    mean_sd,
    parse_with_preset,
    read_results,
    write_json,
)

from pyro_hfvae.training import Trainer
from pyro_hfvae.training.config import resolve_config
from pyro_hfvae.training.paired_comparison import paired_comparison
from pyro_hfvae.util import atomic_file

logger = logging.getLogger("unseen_combinations")

#: The left-out combinations: every square (shape 0) in the right third of the image (posX 22-31 of 0-31).
SQUARES_RIGHT_THIRD = {"shape": [0], "posX": list(range(22, 32))}

#: Settings of ``--preset``; flags given explicitly take precedence.
PRESETS = {
    "paper": {"steps": 20000, "seeds": [0, 1, 2]},
    "smoke": {"steps": 3, "seeds": [0], "batch_size": 16, "subset": 2000, "items": 16, "hidden_dim": 16},
}

#: ``[objective]`` and ``[model]`` settings of each model (the rest is the default run's).
MODELS = {
    "hfvae": ({}, {}),
    "beta-vae": ({"name": "hit", "default_beta": 4.0}, {"num_classes": 0}),
}


def run_config(args: argparse.Namespace, model: str, held_out: bool, seed: int) -> dict:
    """The default run's configuration for ``model``, with or without the hold-out."""
    objective, model_options = MODELS[model]
    overrides = {"training.steps": args.steps, "training.seed": seed, "training.batch_size": args.batch_size,
                 "training.checkpoint_every": 1000, "data.subset": args.subset, "evaluation.preset": "none",
                 "evaluation.information_points": args.items, "model.hidden_dim": args.hidden_dim}
    overrides.update({f"objective.{k}": v for k, v in objective.items()})
    overrides.update({f"model.{k}": v for k, v in model_options.items()})
    if held_out:
        overrides["data.hold_out"] = SQUARES_RIGHT_THIRD
    return resolve_config(None, overrides)


def run(args: argparse.Namespace, model: str, held_out: bool, seed: int) -> dict:
    """Trains (or resumes) one run and scores the left-out combinations and their neighbours."""
    name = f"{model}_{'held_out' if held_out else 'all'}_seed{seed}"
    run_dir = Path(args.runs_dir) / name
    if (run_dir / "checkpoint.pt").exists():
        # The scoring settings are this script's, also for a finished run made elsewhere with the same model.
        trainer = Trainer.from_run(run_dir, {"training.steps": args.steps, "evaluation.preset": "none",
                                             "evaluation.information_points": args.items})
    else:
        trainer = Trainer(run_config(args, model, held_out, seed), run_dir, overwrite=True)
    if trainer.train() != "completed":
        raise SystemExit(f"run {run_dir} was interrupted; rerun the same command to resume it")
    if not held_out:
        # Scored on the same items as the held-out runs; training is over, so this changes nothing it saw.
        trainer.dataset.hold_out = SQUARES_RIGHT_THIRD
    result = trainer.evaluate(write=False)
    dataset = trainer.dataset
    random_state = np.random.RandomState(0)
    held_in_squares = dataset.held_out_neighbour_indices()
    held_in_squares = held_in_squares[dataset.factors_of(held_in_squares)[:, dataset.factor_names.index("shape")] == 0]
    drawn = {"shape_drawn": {}, "outline_drawn": {}}
    for items, indices in (("held_out", dataset.held_out_indices()), ("held_in_squares", held_in_squares)):
        chosen = np.sort(random_state.choice(indices, min(args.items, len(indices)), replace=False))
        for score, fraction in drawn_fractions(trainer, chosen).items():
            drawn[score][items] = fraction
    return {"model": model, "held_out": held_out, "seed": seed, "steps": trainer.step_count,
            "images_seen": trainer.step_count * args.batch_size, "hold_out": SQUARES_RIGHT_THIRD,
            "scores": result["hold_out"], **drawn,
            "run_dir": str(run_dir), "name": name}


def disc_of_same_area(images: torch.Tensor) -> torch.Tensor:
    """
    For binary images of shape ``(n, 1, H, W)``: a disc per image with the image's area and centroid,
    the blob a model draws where it has the size and position of a shape but not its outline.

    Example::

        >>> square = torch.zeros(1, 1, 9, 9)
        >>> square[..., 2:8, 2:8] = 1  # 36 pixels; the disc of radius 3.4 about (4.5, 4.5) covers 32
        >>> disc = disc_of_same_area(square)[0, 0]
        >>> int(disc.sum()), disc[4, 2:8].tolist(), disc[2, 2].item()  # a corner of the square is outside
        (32, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0], 0.0)
    """
    height, width = images.shape[-2:]
    rows, columns = torch.meshgrid(torch.arange(height, dtype=images.dtype),
                                   torch.arange(width, dtype=images.dtype), indexing="ij")
    mass = images[:, 0]
    area = mass.sum((1, 2))
    centre_row = (mass * rows).sum((1, 2)) / area
    centre_column = (mass * columns).sum((1, 2)) / area
    radius_squared = (area / np.pi)[:, None, None]
    inside = (rows - centre_row[:, None, None]) ** 2 + (columns - centre_column[:, None, None]) ** 2 <= radius_squared
    return inside.to(images.dtype)[:, None]


def drawn_fractions(trainer: Trainer, indices: np.ndarray, batch_size: int = 256) -> dict[str, float]:
    """
    Two scores of the reconstructions (at the posterior means) of the items ``indices``, each the
    fraction of items whose reconstruction is nearer, in squared error, to the item than to
    something else:

    - ``shape_drawn``: than to every other shape drawn at the same scale, orientation and position;
      whether the model draws a square rather than another shape. A blob of the square's size and
      place passes too: its disc is nearer to the square than to the smaller ellipse and heart.
    - ``outline_drawn``: than to a disc of the item's area and centroid (:func:`disc_of_same_area`);
      whether the model draws the shape's outline (a square's corners), not a blob.

    Each item is reconstructed once for both.
    """
    dataset = trainer.dataset
    shape_axis = dataset.factor_names.index("shape")
    factors = dataset.factors_of(indices)
    shape_right = outline_right = 0
    for rows in np.array_split(np.arange(len(indices)), -(-len(indices) // batch_size)):
        images = dataset.observations(torch.from_numpy(indices[rows]))
        with torch.no_grad():
            reconstruction = trainer.model.reconstruct(images)

        def distance(target: torch.Tensor) -> torch.Tensor:
            return (reconstruction - target).pow(2).flatten(1).sum(1)

        to_shapes = []
        for shape in range(dataset.factor_sizes[shape_axis]):
            drawn = factors[rows].copy()
            drawn[:, shape_axis] = shape
            to_shapes.append(distance(dataset.observations(torch.from_numpy(dataset.index_of(drawn)))))
        shape_right += int((torch.stack(to_shapes, 1).argmin(1).numpy() == factors[rows, shape_axis]).sum())
        outline_right += int((distance(images) < distance(disc_of_same_area(images))).sum())
    return {"shape_drawn": shape_right / len(indices), "outline_drawn": outline_right / len(indices)}


def summary(results: Path) -> str:
    """Per model and condition: the ELBO and reconstruction error of both item sets, mean +- sd over seeds."""
    records = read_results(results)
    lines = ["| model | trained on | seeds | ELBO, left-out | ELBO, neighbours | ELBO gap | "
             "reconstruction error, left-out | reconstruction error, neighbours | square drawn, left-out "
             "| square drawn, held-in squares | outline drawn, left-out | outline drawn, held-in squares "
             "| images seen |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    for model in MODELS:
        for held_out in (True, False):
            rows = [r for r in records if r["model"] == model and r["held_out"] == held_out]
            if not rows:
                continue
            out = [r["scores"]["held_out"] for r in rows]
            near = [r["scores"]["held_in_neighbours"] for r in rows]
            gap = [n["elbo"] - o["elbo"] for o, n in zip(out, near)]
            lines.append(f"| {model} | {'held-in only' if held_out else 'every image'} "
                         f"| {', '.join(str(r['seed']) for r in rows)} | {mean_sd([o['elbo'] for o in out], 2)} "
                         f"| {mean_sd([n['elbo'] for n in near], 2)} | {mean_sd(gap, 2)} "
                         f"| {mean_sd([o['reconstruction_error'] for o in out], 2)} "
                         f"| {mean_sd([n['reconstruction_error'] for n in near], 2)} "
                         f"| {drawn_column(rows, 'shape_drawn', 'held_out')} "
                         f"| {drawn_column(rows, 'shape_drawn', 'held_in_squares')} "
                         f"| {drawn_column(rows, 'outline_drawn', 'held_out')} "
                         f"| {drawn_column(rows, 'outline_drawn', 'held_in_squares')} "
                         f"| {rows[0]['images_seen']:,} |")
    return "\n".join(lines)


def drawn_column(rows: list[dict], score: str, items: str) -> str:
    """The score ``score`` of ``items`` over the runs ``rows``, mean +- sd ("-" for result files made before it)."""
    values = [r[score][items] for r in rows if score in r]
    return mean_sd(values, 3) if len(values) == len(rows) else "-"


#: The cost of leaving the squares out, from a model's held-in-only run and its every-image run of one
#: seed: name -> (held-in-only record, every-image record) -> cost (larger: the unseen squares cost more).
COSTS = {
    "reconstruction error increase, left-out (%)": lambda out, seen: 100 * (
        out["scores"]["held_out"]["reconstruction_error"] / seen["scores"]["held_out"]["reconstruction_error"] - 1),
    "ELBO gap increase (nats)": lambda out, seen: elbo_gap(out) - elbo_gap(seen),
    "square-drawn drop, left-out": lambda out, seen: seen["shape_drawn"]["held_out"] - out["shape_drawn"]["held_out"],
    "outline-drawn drop, left-out": lambda out, seen: (seen["outline_drawn"]["held_out"]
                                                       - out["outline_drawn"]["held_out"]),
}


def elbo_gap(record: dict) -> float:
    """The held-in neighbours' ELBO minus the left-out items' (nats per image)."""
    return record["scores"]["held_in_neighbours"]["elbo"] - record["scores"]["held_out"]["elbo"]


def cost_table(results: Path, model: str = "hfvae", other: str = "beta-vae") -> str:
    """
    Per cost of :data:`COSTS` and seed, ``model``'s cost of never seeing the left-out squares minus
    ``other``'s (negative: ``model`` loses less), over the seeds where both models have both runs,
    with mean +- sd and the two-sided paired t and Wilcoxon p; empty with fewer than two such seeds.
    """
    runs = {(r["model"], r["held_out"], r["seed"]): r for r in read_results(results)
            if "outline_drawn" in r}
    seeds = sorted(seed for kind, held_out, seed in runs if kind == model and held_out
                   and all((m, h, seed) in runs for m in (model, other) for h in (True, False)))
    if len(seeds) < 2:
        return ""
    lines = [f"| cost of the unseen squares | {model} | {other} | {model} minus {other} | mean +- sd "
             f"| {model} loses less | paired t p | Wilcoxon p |", "|---|---|---|---|---|---|---|---|"]
    for name, cost in COSTS.items():
        costs = {m: [cost(runs[m, True, seed], runs[m, False, seed]) for seed in seeds] for m in (model, other)}
        comparison = paired_comparison(costs[model], costs[other])
        lines.append(f"| {name} | {mean_sd(costs[model], 3)} | {mean_sd(costs[other], 3)} | "
                     + comparison.format_differences()
                     + f" | {mean_sd(comparison.differences, 3)} | {int((comparison.differences < 0).sum())}/"
                     f"{len(seeds)} | {comparison.t_p:.3g} | {comparison.wilcoxon_p:.3g} |")
    return "\n".join(lines)


def plot_reconstructions(args: argparse.Namespace, path: Path, count: int = 8) -> None:
    """Left-out squares (top row) and their reconstructions by each run of the first seed, one row per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for model in MODELS:
        for held_out in (True, False):
            name = f"{model}_{'held_out' if held_out else 'all'}_seed{args.seeds[0]}"
            trainer = Trainer.from_run(Path(args.runs_dir) / name, read_only=True)
            trainer.dataset.hold_out = SQUARES_RIGHT_THIRD
            chosen = np.random.RandomState(0).choice(trainer.dataset.held_out_indices(), count, replace=False)
            x = trainer.dataset.observations(torch.from_numpy(np.sort(chosen)))
            if not rows:
                rows.append(("left-out images", x))
            with torch.no_grad():
                rows.append((f"{model}, {'held-in only' if held_out else 'every image'}", trainer.model.reconstruct(x)))
    fig, axes = plt.subplots(len(rows), count, figsize=(1.1 * count, 1.2 * len(rows)), squeeze=False)
    for axes_row, (label, images) in zip(axes, rows):
        for ax, image in zip(axes_row, images):
            ax.imshow(image[0].cpu().numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes_row[0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as file:
        fig.savefig(file, dpi=100, format="png")
    plt.close(fig)


def main(args: argparse.Namespace) -> list[dict]:
    results = Path(args.results)
    if args.summary:
        print(summary(results))
        print(cost_table(results))
        return []
    records = []
    for seed in args.seeds:
        for model in args.models:
            for held_out in (True, False):
                path = results / f"{model}_{'held_out' if held_out else 'all'}_seed{seed}.json"
                if path.exists() and not args.overwrite:
                    records.append(json.loads(path.read_text()))
                    continue
                record = run(args, model, held_out, seed)
                write_json(path, record)
                records.append(record)
    print(summary(results))
    print(cost_table(results))
    if args.figure and list(args.models) == list(MODELS):
        plot_reconstructions(args, results / "reconstructions.png")
    return records


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_preset_flag(parser, PRESETS)
    add_result_flags(parser, "docs/_static/unseen_combinations")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=2000, help="training steps per run (the default run's)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--subset", type=int, default=0, help="train on this many random images (0: all)")
    parser.add_argument("--hidden-dim", type=int, default=256, help="width of the MLP networks")
    parser.add_argument("--items", type=int, default=2000, help="items scored per set (left-out, neighbours)")
    parser.add_argument("--runs-dir", default="runs/unseen_combinations", help="the run directories")
    parser.add_argument("--figure", action="store_true", help="draw the reconstructions of the first seed")
    return parser


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    main(parse_with_preset(make_parser(), PRESETS))

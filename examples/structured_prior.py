# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Writing a structured prior for the HFVAE objective: groups, nested groups, a correlated group.

The HFVAE objective (Esmaeili et al., AISTATS 2019) does not push the aggregate posterior
q(z) towards independence: it pushes each total correlation of q towards the *prior's*,

    TC term of a node = [log q(z_node) - sum_children log q(z_child)]
                        - [log p(z_node) - sum_children log p(z_child)],

so a prior with correlations inside a group asks for those correlations in the code. This
script writes a Pyro model and guide by hand with

- a Concrete(3) variable ``y`` in group ``"class"``;
- a group ``"style"`` holding two sub-groups (``group("style")`` around ``group("shape")``
  and ``group("pose")``), each a 2-dimensional latent: a tree root -> {class, style},
  style -> {shape, pose}, shape -> 2 variables, pose -> 2 variables, whose total
  correlations get the weights ``beta`` (root), ``gamma`` (style) and ``level_weights[0]``
  (inside shape and pose);
- a prior on ``shape`` that is either independent, Normal(0, I), or correlated, a
  MultivariateNormal with correlation ``rho``. The guide stays factorised
  (``Normal(...).to_event(1)``: one variable per element); HFVAELoss scores its variables
  against the MultivariateNormal's Normal marginals.

The data are synthetic, made by the same structure: a class among 3, a correlated "shape"
pair with correlation ``rho`` (0.8), an independent "pose" pair, pushed through a fixed random
two-layer network into 20 dimensions, plus noise. After training one model per prior, the script
prints every term of the objective and compares, for the shape group, the correlation of the
posterior means, the total correlation of q over the whole data set (exact mixture), the
prior's total correlation at the posterior samples, and the loss term (their difference).

A caveat the script checks: the prior's part of a TC term is evaluated at the code's samples,
and for a correlated Normal pair it grows without bound along the correlated direction
(for a code with covariance :math:`a^2 [[1, r], [r, 1]]` it is :math:`a^2 \rho (r - \rho)/(1 - \rho^2)`
plus a constant), while the dimension-wise KL grows only like :math:`a^2`. With a weight
``w`` on that TC the objective is therefore unbounded below once
:math:`w > (1 + \rho) / \rho` (2.25 for :math:`\rho = 0.8`): the code stretches along the
diagonal and the loss diverges (``--within-weight 8`` shows it). Weights above 1 on a
correlated group must stay below that bound; :func:`pyro_hfvae.tc_weight_bound` computes it
for any Gaussian prior, and :class:`~pyro_hfvae.HFVAELoss` warns when a weight reaches it.

Run (about a minute on one core)::

    python examples/structured_prior.py
"""
import argparse
import logging
import math

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI
from pyro.optim import Adam
from scipy.optimize import linear_sum_assignment
from torch import nn

from pyro_hfvae import HFVAELoss, group
from pyro_hfvae.distributions import variable_log_prob
from pyro_hfvae.metrics import total_correlation

logger = logging.getLogger("structured_prior")


def make_data(num_data: int, rho: float, seed: int) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Observations (num_data, 20), the classes, and the true shape pairs."""
    rng = np.random.RandomState(seed)
    classes = rng.randint(3, size=num_data)
    shape = rng.multivariate_normal(np.zeros(2), [[1.0, rho], [rho, 1.0]], size=num_data)
    pose = rng.randn(num_data, 2)
    factors = np.concatenate([3.0 * np.eye(3)[classes], shape, pose], axis=1)
    hidden = np.tanh(factors @ rng.randn(7, 32) / math.sqrt(7))
    x = hidden @ rng.randn(32, 20) / math.sqrt(8) + 0.05 * rng.randn(num_data, 20)
    return torch.tensor(x, dtype=torch.float32), classes, shape


class StructuredVAE(nn.Module):
    """
    Latents ``y`` (Concrete), ``shape`` and ``pose`` (2-d each), a Normal likelihood.

    :param bool correlated: MultivariateNormal prior with correlation ``rho`` on ``shape``
        (else Normal(0, I)).
    """

    def __init__(self, data_dim: int, correlated: bool, rho: float, hidden_dim: int = 64,
                 temperature: float = 0.5) -> None:
        super().__init__()
        self.correlated = correlated
        self.register_buffer("temperature", torch.tensor(temperature))
        self.register_buffer("shape_cov", torch.tensor([[1.0, rho], [rho, 1.0]]))
        self.encoder = nn.Sequential(nn.Linear(data_dim, hidden_dim), nn.ReLU(),
                                     nn.Linear(hidden_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 3 + 8))
        self.decoder = nn.Sequential(nn.Linear(7, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim),
                                     nn.ReLU(), nn.Linear(hidden_dim, data_dim))
        self.log_noise = nn.Parameter(torch.tensor(-1.0))

    def shape_prior(self, x: torch.Tensor) -> dist.Distribution:
        if self.correlated:
            return dist.MultivariateNormal(x.new_zeros(2), covariance_matrix=self.shape_cov)
        return dist.Normal(x.new_zeros(2), 1.0).to_event(1)

    def model(self, x: torch.Tensor, idx: torch.Tensor, num_data: int) -> None:
        pyro.module("structured_vae", self)
        with pyro.plate("data", num_data, subsample=idx):
            y = pyro.sample("y", dist.RelaxedOneHotCategorical(self.temperature, logits=x.new_zeros(3)))
            shape = pyro.sample("shape", self.shape_prior(x))
            pose = pyro.sample("pose", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            loc = self.decoder(torch.cat([y, shape, pose], dim=-1))
            pyro.sample("x", dist.Normal(loc, self.log_noise.exp()).to_event(1), obs=x)

    def posterior(self, x: torch.Tensor) -> dict[str, dist.Distribution]:
        logits, shape_loc, shape_log_scale, pose_loc, pose_log_scale = self.encoder(x).split([3, 2, 2, 2, 2], -1)
        return {"y": dist.RelaxedOneHotCategorical(self.temperature, logits=logits),
                "shape": dist.Normal(shape_loc, shape_log_scale.clamp(-8, 4).exp()).to_event(1),
                "pose": dist.Normal(pose_loc, pose_log_scale.clamp(-8, 4).exp()).to_event(1)}

    def guide(self, x: torch.Tensor, idx: torch.Tensor, num_data: int) -> None:
        pyro.module("structured_vae", self)
        posterior = self.posterior(x)
        with pyro.plate("data", num_data, subsample=idx):
            with group("class"):
                pyro.sample("y", posterior["y"])
            with group("style"):  # style -> {shape, pose}: nested groups
                with group("shape"):
                    pyro.sample("shape", posterior["shape"])
                with group("pose"):
                    pyro.sample("pose", posterior["pose"])


def prior_total_correlation(vae: StructuredVAE, shape: torch.Tensor) -> float:
    """:math:`E[\\log p(s) - \\sum_e \\log p(s_e)]` of the shape prior at the given points (nats)."""
    prior = vae.shape_prior(shape)
    joint = prior.log_prob(shape)
    marginals = variable_log_prob(prior, shape, 1).sum(-1)  # the Normal marginals of each element
    return float((joint - marginals).mean())


def class_accuracy(classes: np.ndarray, clusters: np.ndarray) -> float:
    """Accuracy of the best one-to-one map of clusters to classes (Hungarian matching)."""
    counts = np.zeros((3, 3), dtype=np.int64)
    np.add.at(counts, (classes, clusters), 1)
    rows, columns = linear_sum_assignment(-counts)
    return float(counts[rows, columns].sum() / len(classes))


def train(x: torch.Tensor, correlated: bool, args: argparse.Namespace) -> tuple[StructuredVAE, dict]:
    """Trains one model; returns it and the objective's terms averaged over the last epoch."""
    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)
    vae = StructuredVAE(x.shape[1], correlated, args.rho).to(args.device)
    loss = HFVAELoss(args.alpha, args.beta, args.gamma, level_weights=[args.within_weight],
                     concrete_scoring=args.concrete_scoring)
    svi = SVI(vae.model, vae.guide, Adam({"lr": args.lr}), loss)
    num_data = len(x)
    steps_per_epoch = num_data // args.batch_size
    terms: dict[str, float] = {}
    for step in range(args.steps):
        if step % steps_per_epoch == 0:
            order = torch.randperm(num_data, device=x.device)
            terms = {}
        idx = order[(step % steps_per_epoch) * args.batch_size:][:args.batch_size]
        svi.step(x[idx], idx, num_data)
        for key, value in loss.terms.items():
            terms[key] = terms.get(key, 0.0) + float(value)
        if (step + 1) % args.log_every == 0:
            logger.info("%s prior, step %d: elbo %.2f", "correlated" if correlated else "independent", step + 1,
                        float(loss.terms["elbo"]))
    count = args.steps % steps_per_epoch or steps_per_epoch
    return vae, {key: value / count for key, value in terms.items()}


def main(args: argparse.Namespace) -> dict[str, dict]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    x, classes, true_shape = make_data(args.num_data, args.rho, args.seed)
    x = x.to(args.device)
    print(f"true correlation of the shape pair: {np.corrcoef(true_shape.T)[0, 1]:.3f}; prior TC of "
          f"a correlated Normal pair: -log(1 - rho^2)/2 = {-0.5 * math.log(1 - args.rho ** 2):.3f} nats\n")
    results = {}
    for correlated in (False, True):
        name = f"MultivariateNormal, rho={args.rho:g}" if correlated else "Normal(0, I)"
        vae, terms = train(x, correlated, args)
        with torch.no_grad():
            posterior = vae.posterior(x)
            shape_mean = posterior["shape"].mean.cpu().numpy()
            shape_sample = posterior["shape"].sample()
            clusters = posterior["y"].logits.argmax(-1).cpu().numpy()
        q_tc = total_correlation(vae.posterior, x, groups={"class": ["y"], "shape": ["shape"], "pose": ["pose"]},
                                 num_samples=min(args.num_data, 2000), random_state=args.seed)
        results[name] = {
            "terms": terms,
            "shape_correlation": float(np.corrcoef(shape_mean.T)[0, 1]),
            "q_tc_shape": q_tc.within_groups["shape"],
            "p_tc_shape": prior_total_correlation(vae, shape_sample),
            "class_accuracy": class_accuracy(classes, clusters),
        }
        print(f"terms of the objective with the {name} prior on shape (nats per point, last epoch):")
        for key, value in sorted(terms.items()):
            print(f"    {key:24s} {value:9.3f}")
        print()
    print(f"weights: alpha={args.alpha:g}, beta={args.beta:g} (class vs style), gamma={args.gamma:g} "
          f"(shape vs pose), level_weights=[{args.within_weight:g}] (inside shape and pose)\n")
    print("| prior on shape | corr. of shape means | TC of q(shape) | TC of p(shape) at q samples "
          "| loss term tc_within/style/shape | ELBO | class accuracy |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['shape_correlation']:.3f} | {r['q_tc_shape']:.3f} | {r['p_tc_shape']:.3f} "
              f"| {r['terms']['tc_within/style/shape']:.3f} | {r['terms']['elbo']:.2f} | {r['class_accuracy']:.3f} |")
    return results


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--num-data", type=int, default=4000)
    parser.add_argument("--rho", type=float, default=0.8, help="correlation of the shape pair")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--beta", type=float, default=4.0, help="weight of the TC between class and style")
    parser.add_argument("--gamma", type=float, default=2.0, help="weight of the TC between shape and pose")
    parser.add_argument("--within-weight", type=float, default=2.0,
                        help="level_weights[0]: weight of the TC inside shape and inside pose "
                             "(keep it below (1 + rho)/rho, see the module description)")
    parser.add_argument("--concrete-scoring", choices=("relaxed", "argmax"), default="argmax")
    parser.add_argument("--log-every", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return parser


if __name__ == "__main__":
    main(make_parser().parse_args())

"""
The HFVAE objective and its terms
=================================

:class:`~pyro_hfvae.HFVAELoss` is a Pyro ELBO whose KL term is split into four parts, each
with its own weight (see :doc:`/overview`):

* ``mutual_info`` :math:`I(x; z)`, weight :math:`\\alpha`;
* ``tc_between``, the total correlation between groups, weight :math:`\\beta`;
* ``tc_within``, the total correlation within groups, weight :math:`\\gamma`;
* ``dimwise_kl``, each variable's marginal against its prior, weight 1.

This tutorial builds a small model of handwritten digits whose code is split into two groups
of three Normal coordinates, checks that the objective is exactly Pyro's
:class:`~pyro.infer.Trace_ELBO` when every weight is 1, follows the terms during training,
and shows what raising :math:`\\beta` or :math:`\\gamma` does.
"""

# %%
# Set-up
# ------
# ``PYRO_HFVAE_SMOKE=1`` shrinks the run to a few seconds (the documentation's CI does this);
# unset, the tutorial trains at the size shown on this page.
import math
import os

import matplotlib.pyplot as plt
import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO
from torch import nn

from pyro_hfvae import HFVAELoss, group
from pyro_hfvae.datasets import Digits
from pyro_hfvae.metrics import mutual_information, total_correlation

SMOKE = os.environ.get("PYRO_HFVAE_SMOKE", "0") not in ("", "0")
NUM_STEPS = 15 if SMOKE else 3000
BATCH_SIZE = 64 if SMOKE else 128
EVAL_SIZE = 256 if SMOKE else None  # points of the whole-data estimates (None: all)

pyro.set_rng_seed(0)
data = Digits(binarize=True)  # 1,797 binary 8 x 8 digits, bundled with scikit-learn
N = len(data)
images = data.observations(torch.arange(N)).reshape(N, 64)
print(f"{N} images of shape {data.observation_shape}")

# %%
# A model with two groups
# -----------------------
# The model is an ordinary Pyro program: two 3-dimensional Normal latents ``a`` and ``b``
# with standard Normal priors, decoded together into Bernoulli pixels. In the guide, a
# :class:`~pyro_hfvae.group` context names the group of ``a``, and ``infer={"group": ...}``
# the group of ``b`` (either way works). Each group has three variables, one per coordinate.
# The data plate carries the data-set size ``N`` (``size=N, subsample=idx``), which the
# stratified estimate of the aggregate posterior needs.
DIM, HIDDEN = 3, 128


class DigitsHFVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(64, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 4 * DIM)
        )
        self.decoder = nn.Sequential(
            nn.Linear(2 * DIM, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 64)
        )

    def model(self, x, idx):
        pyro.module("digits_hfvae", self)
        prior = dist.Normal(x.new_zeros(DIM), 1.0).to_event(1)
        with pyro.plate("data", size=N, subsample=idx):
            a = pyro.sample("a", prior)
            b = pyro.sample("b", prior)
            logits = self.decoder(torch.cat([a, b], -1))
            pyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x)

    def posterior(self, x):
        """q(a|x) and q(b|x), for the guide and the whole-data estimates."""
        loc, log_scale = self.encoder(x).split(2 * DIM, -1)
        scale = log_scale.clamp(-6, 2).exp()
        return {
            "a": dist.Normal(loc[:, :DIM], scale[:, :DIM]).to_event(1),
            "b": dist.Normal(loc[:, DIM:], scale[:, DIM:]).to_event(1),
        }

    def guide(self, x, idx):
        pyro.module("digits_hfvae", self)
        q = self.posterior(x)
        with pyro.plate("data", size=N, subsample=idx):
            with group("a"):
                pyro.sample("a", q["a"])
            pyro.sample("b", q["b"], infer={"group": "b"})


# %%
# With every weight 1 the objective is the ELBO
# ---------------------------------------------
# With :math:`\alpha = \beta = \gamma = 1` the four terms telescope to
# :math:`\log q(z|x) - \log p(z)`, *sample by sample*, whatever the estimate of the aggregate
# posterior: the loss is Pyro's ``Trace_ELBO`` on the same samples. Seeding Pyro the same way
# before each evaluation makes both draw the same samples from the guide.
vae = DigitsHFVAE()
idx = torch.randperm(N)[:BATCH_SIZE]
x = images[idx]
hfvae = HFVAELoss(alpha=1.0, beta=1.0, gamma=1.0)
pyro.set_rng_seed(1)
hfvae_value = hfvae.loss(vae.model, vae.guide, x, idx)
pyro.set_rng_seed(1)
elbo_value = Trace_ELBO().loss(vae.model, vae.guide, x, idx)
print(f"HFVAELoss(1, 1, 1): {hfvae_value:.4f}")
print(f"Trace_ELBO:         {elbo_value:.4f}")
print(f"relative difference {abs(hfvae_value - elbo_value) / abs(elbo_value):.1e}")

# %%
# After every evaluation ``loss.terms`` holds the decomposition in nats per data point. The
# four KL terms add up to the KL, and the loss is :math:`-N` times the objective; the
# per-group terms (``tc_within/a``, ``dimwise_kl/a``, ...) add up to their totals.
terms = hfvae.terms
for name in ("log_likelihood", "mutual_info", "tc_between", "tc_within", "dimwise_kl"):
    print(f"{name:>16s} {terms[name]:9.4f}")
parts = sum(terms[k] for k in ("mutual_info", "tc_between", "tc_within", "dimwise_kl"))
print(f"sum of the four KL terms {parts:.4f}, kl {terms['kl']:.4f}")
print(f"-N * objective {-N * terms['objective']:.2f}, loss {hfvae_value:.2f}")
for name in sorted(k for k in terms if "/" in k):
    print(f"{name:>16s} {terms[name]:9.4f}")

# %%
# Training with three settings of the weights
# -------------------------------------------
# The same model trained from the same initialisation with four settings: the plain ELBO,
# a large :math:`\beta` (independent groups), a large :math:`\gamma` (independent
# coordinates within each group) and both (every coordinate independent of every other: the
# beta-TCVAE).
SETTINGS = {
    "ELBO (1, 1, 1)": (1.0, 1.0, 1.0),
    "beta = 6": (1.0, 6.0, 1.0),
    "gamma = 6": (1.0, 1.0, 6.0),
    "beta = gamma = 6": (1.0, 6.0, 6.0),
}
TRACKED = ("log_likelihood", "mutual_info", "tc_between", "tc_within", "dimwise_kl")


def train(alpha, beta, gamma, seed=0):
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    vae = DigitsHFVAE()
    loss = HFVAELoss(alpha=alpha, beta=beta, gamma=gamma)
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), loss=loss)
    generator = torch.Generator().manual_seed(seed)
    history = {name: [] for name in TRACKED}
    step = 0
    while step < NUM_STEPS:
        for x, idx in data.batches(BATCH_SIZE, generator, drop_last=True):
            svi.step(x.reshape(-1, 64), idx)
            for name in TRACKED:
                history[name].append(loss.terms[name])
            step += 1
            if step == NUM_STEPS:
                break
    return vae, {name: np.array(values) for name, values in history.items()}


runs = {label: train(*weights) for label, weights in SETTINGS.items()}


# %%
# The terms over training (a moving average over 50 steps: minibatch estimates are noisy).
def smooth(values, width=50):
    width = max(1, min(width, len(values) // 5))
    return np.convolve(values, np.ones(width) / width, mode="valid")


fig, axes = plt.subplots(1, len(TRACKED), figsize=(15, 3.2))
for ax, name in zip(axes, TRACKED):
    for label, (_, history) in runs.items():
        ax.plot(smooth(history[name]), label=label)
    ax.set_title(name)
    ax.set_xlabel("step")
axes[0].set_ylabel("nats per data point")
axes[-1].legend(fontsize=8)
fig.tight_layout()

# %%
# What the weights did
# --------------------
# The minibatch terms are estimates; :func:`~pyro_hfvae.metrics.total_correlation` and
# :func:`~pyro_hfvae.metrics.mutual_information` evaluate the same quantities on the *whole*
# data set, with the exact aggregate posterior :math:`\frac1N \sum_n q(z|x_n)`. Every
# estimate is at most :math:`\log N`, the most a mixture over :math:`N` points can tell apart.
groups = {"a": ["a"], "b": ["b"]}
eval_images = images[:EVAL_SIZE]
print(f"at most log N = {math.log(len(eval_images)):.2f} nats")
measured = {}
for label, (vae, _) in runs.items():
    with torch.no_grad():
        tc = total_correlation(vae.posterior, eval_images, groups=groups)
        mi = mutual_information(vae.posterior, eval_images, groups=groups)
    measured[label] = {
        "TC between a, b": tc.between_groups,
        "TC within a": tc.within_groups["a"],
        "TC within b": tc.within_groups["b"],
        "I(x; z)": mi.total,
    }
print(f"{'':>16s}" + "".join(f"{name:>16s}" for name in measured[label]))
for label, values in measured.items():
    print(f"{label:>16s}" + "".join(f"{value:16.3f}" for value in values.values()))

# %%
# A large :math:`\beta` lowers the dependence *between* the groups. A large :math:`\gamma`
# alone lowers the dependence inside them, but leaves the groups free to depend on each
# other (that part is weighted 1, as in the ELBO, and here it grows instead). Raising both
# penalises the dependence between every pair of coordinates.
fig, ax = plt.subplots(figsize=(8, 3.2))
names = ["TC between a, b", "TC within a", "TC within b"]
width = 0.8 / len(measured)
for i, (label, values) in enumerate(measured.items()):
    positions = np.arange(len(names)) + (i - (len(measured) - 1) / 2) * width
    ax.bar(positions, [values[n] for n in names], width, label=label)
ax.set_xticks(range(len(names)), names)
ax.set_ylabel("nats")
ax.legend()
fig.tight_layout()

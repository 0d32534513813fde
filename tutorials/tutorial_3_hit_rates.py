"""
Per-layer rates in a hierarchical VAE (HIT)
===========================================

A hierarchical VAE with latent layers :math:`z_2 \\to z_1 \\to x` has one *rate* per layer,

.. math::

    R_2 = \\mathbb{E}_q\\,\\mathrm{KL}\\big(q(z_2 \\mid x) \\,\\|\\, p(z_2)\\big), \\qquad
    R_1 = \\mathbb{E}_q\\,\\mathrm{KL}\\big(q(z_1 \\mid z_2, x) \\,\\|\\, p(z_1 \\mid z_2)\\big),

and Xiao & Bamler (2023) weight each separately:
:math:`\\mathrm{loss} = \\mathbb{E}[-\\log p(x \\mid z_1)] + \\beta_1 R_1 + \\beta_2 R_2`.
Which corner of :math:`(\\beta_1, \\beta_2)` is best depends on the use: reconstruction,
generation or representation. :class:`~pyro_hfvae.infer.hit.HITLoss` is that objective as a Pyro
ELBO (one weight per sample site or group); :class:`~pyro_hfvae.models.HierarchicalVAE` is a
two-layer model for images; :func:`~pyro_hfvae.training.rate_grid.rate_grid` scans a grid of weights.
"""

# %%
# Set-up
# ------
# ``PYRO_HFVAE_SMOKE=1`` shrinks the run to a few seconds.
import os

import matplotlib.pyplot as plt
import numpy as np
import pyro
import torch
from pyro.infer import SVI, TraceMeanField_ELBO

from pyro_hfvae.datasets import Digits
from pyro_hfvae.infer.hit import HITLoss
from pyro_hfvae.models import HierarchicalVAE
from pyro_hfvae.plots.rate_grid import plot_rate_grid
from pyro_hfvae.training.rate_grid import rate_grid

SMOKE = os.environ.get("PYRO_HFVAE_SMOKE", "0") not in ("", "0")
NUM_STEPS = 20 if SMOKE else 2000
GRID = (0.3, 3.0) if SMOKE else (0.2, 1.0, 5.0)
GRID_STEPS = 5 if SMOKE else 1500

pyro.set_rng_seed(0)
data = Digits(binarize=True)
N = len(data)
images = data.observations(torch.arange(N))
labels = data.factors_of(np.arange(N))[:, 0]


def make_model():
    """A small two-layer model for 8 x 8 digits: an 8-dim z1 under a 4-dim z2."""
    return HierarchicalVAE(
        (1, 8, 8), latent_dims=(8, 4), channels=(16, 32), hidden_dim=64
    )


# %%
# One weight per layer
# --------------------
# :class:`~pyro_hfvae.models.HierarchicalVAE` names its layers ``"z1"`` (next to the image) and
# ``"z2"`` (the top). ``HITLoss`` takes a weight per site; after each evaluation its ``terms``
# hold the distortion, every layer's rate and the weights used, in nats per image. With all
# weights 1 and analytic KL it is Pyro's ``TraceMeanField_ELBO`` on the same samples.
vae = make_model()
x, idx = images[:64], torch.arange(64)
hit = HITLoss({"z1": 1.0, "z2": 1.0})
pyro.set_rng_seed(1)
hit_value = hit.loss(vae.model, vae.guide, x, idx, dataset_size=N)
pyro.set_rng_seed(1)
elbo_value = TraceMeanField_ELBO().loss(vae.model, vae.guide, x, idx, dataset_size=N)
print(f"HITLoss(1, 1) {hit_value:.3f}, TraceMeanField_ELBO {elbo_value:.3f}")
for name, value in hit.terms.items():
    print(f"{name:>12s} {value:9.3f}")

# %%
# Training with a schedule
# ------------------------
# The weights may come from a callable (or an object with a ``betas()`` method), read at every
# step, so that annealing plugs in directly. Here the top layer's weight is warmed up from 0 to
# 2 over the first half of training, while the bottom layer keeps weight 1.
pyro.clear_param_store()
pyro.set_rng_seed(0)
vae = make_model()
progress = {"step": 0}


def warm_up():
    return {"z1": 1.0, "z2": 2.0 * min(1.0, progress["step"] / (NUM_STEPS / 2))}


loss = HITLoss(warm_up)
svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), loss=loss)
generator = torch.Generator().manual_seed(0)
history = []
while progress["step"] < NUM_STEPS:
    for x, idx in data.batches(128, generator, drop_last=True):
        svi.step(x, idx, dataset_size=N)
        history.append(dict(loss.terms))
        progress["step"] += 1
        if progress["step"] == NUM_STEPS:
            break

fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
for name in ("rate/z1", "rate/z2", "distortion"):
    ax = axes[1] if name == "distortion" else axes[0]
    ax.plot([h[name] for h in history], label=name, lw=0.8)
axes[0].plot([h["beta/z2"] for h in history], "k--", label="beta/z2 (weight)")
for ax in axes:
    ax.set_xlabel("step")
    ax.legend()
axes[0].set_ylabel("nats per image")
fig.tight_layout()

# %%
# A grid of weights
# -----------------
# :func:`~pyro_hfvae.training.rate_grid.rate_grid` trains one model per setting (same initialisation,
# same batches) and measures each: the layers' rates and the distortion, the reconstruction's
# PSNR, the accuracy of a logistic regression on each layer's posterior means (fitted on half
# of the images, tested on the other half), and an inception score of generated samples.
grid = [{"z1": b1, "z2": b2} for b1 in GRID for b2 in GRID]
rows = rate_grid(
    make_model,
    images,
    grid,
    eval_labels=labels,
    steps=GRID_STEPS,
    batch_size=128,
    num_samples=200 if SMOKE else 1000,
)
columns = {
    "beta/z1": "beta1",
    "beta/z2": "beta2",
    "rate/z1": "R1",
    "rate/z2": "R2",
    "distortion": "distortion",
    "psnr": "PSNR",
    "logistic/z1": "acc z1",
    "logistic/z2": "acc z2",
    "inception_score": "IS",
}
print(" ".join(f"{label:>10s}" for label in columns.values()))
for row in rows:
    print(" ".join(f"{row[key]:10.3f}" for key in columns))

# %%
# The rate-rate view of the paper: every setting placed at its two rates and coloured by how
# good it is for one use. The diagonal settings (a plain beta-VAE, all weights equal) are
# circled; the best one is starred. Moving off the diagonal trades information between the
# layers, and the three uses prefer different corners.
fig, axes = plt.subplots(1, 3, figsize=(14, 4))
plot_rate_grid(rows, "psnr", ax=axes[0], title="reconstruction: PSNR (dB)")
plot_rate_grid(rows, "logistic/z2", ax=axes[1], title="representation: accuracy on z2")
plot_rate_grid(rows, "inception_score", ax=axes[2], title="generation: inception score")
fig.tight_layout()

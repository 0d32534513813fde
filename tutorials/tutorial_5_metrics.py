"""
Evaluating disentanglement
==========================

:mod:`pyro_hfvae.metrics` implements the disentanglement_lib metrics in PyTorch and NumPy,
with disentanglement_lib's conventions (the representation is the mean of :math:`q(z|x)`;
factors are integer classes). There are three kinds:

* **array metrics** take codes ``(num_samples, num_codes)`` and factors
  ``(num_samples, num_factors)``: :func:`~pyro_hfvae.metrics.mig`,
  :func:`~pyro_hfvae.metrics.mig_sup`, :func:`~pyro_hfvae.metrics.modularity`,
  :func:`~pyro_hfvae.metrics.dci`, :func:`~pyro_hfvae.metrics.sap`, ...;
* **sampling metrics** take a ground-truth data set and an ``encode`` function and draw their
  own votes: :func:`~pyro_hfvae.metrics.factor_vae_score`,
  :func:`~pyro_hfvae.metrics.beta_vae_score`;
* :func:`~pyro_hfvae.metrics.evaluate` runs several of them with shared samples and one seed.

This tutorial first scores codes whose quality is known, to see what each metric rewards, and
then a small model trained on procedural dSprites.
"""

# %%
# Set-up
# ------
# ``PYRO_HFVAE_SMOKE=1`` shrinks the run to a few seconds. disentanglement_lib's defaults are
# 10,000 training and 5,000 test points; the gradient-boosted trees of DCI are the slow part,
# so DCI gets fewer points here.
import os

import matplotlib.pyplot as plt
import numpy as np
import pyro
import torch
from pyro.infer import SVI

from pyro_hfvae import HFVAELoss
from pyro_hfvae.datasets import DSprites
from pyro_hfvae.metrics import dci, evaluate, factor_vae_score, mig, mig_sup, modularity
from pyro_hfvae.models.conv_hfvae import ConvHFVAE

SMOKE = os.environ.get("PYRO_HFVAE_SMOKE", "0") not in ("", "0")
NUM_POINTS = 1000 if SMOKE else 10000
NUM_DCI = 200 if SMOKE else 2000
NUM_VOTES = 100 if SMOKE else 2000
NUM_STEPS = 10 if SMOKE else 3000
NUM_IMAGES = 512 if SMOKE else 20000

rng = np.random.RandomState(0)
sprites = DSprites()
print("factors:", dict(zip(sprites.factor_names, sprites.factor_sizes)))
factors = sprites.sample_factors(NUM_POINTS, rng)
factors_test = sprites.sample_factors(NUM_DCI // 2, rng)

# %%
# Codes of known quality
# ----------------------
# Codes built from the factor classes themselves, scaled to [0, 1]:
#
# * **perfect**: one code per factor, plus two pure-noise codes;
# * **noisy**: the perfect code with Gaussian noise of standard deviation 0.1;
# * **rotated**: the perfect code mixed by a random rotation (all information kept, but every
#   code now depends on every factor);
# * **duplicated**: every factor coded twice;
# * **random**: seven codes independent of the factors.
sizes = np.array(sprites.factor_sizes)
rotation = np.linalg.qr(np.random.RandomState(1).normal(size=(5, 5)))[0]


def known_codes(factors, rng):
    scaled = factors / (sizes - 1)
    return {
        "perfect": np.hstack([scaled, rng.normal(size=(len(factors), 2))]),
        "noisy": scaled + rng.normal(0, 0.1, scaled.shape),
        "rotated": scaled @ rotation,
        "duplicated": np.hstack([scaled, scaled]),
        "random": rng.normal(size=(len(factors), 7)),
    }


codes = known_codes(factors, rng)
print(f"{'code':>11s} {'MIG':>6s} {'MIG-sup':>8s} {'modularity':>11s}")
for name, code in codes.items():
    scores = (mig(code, factors), mig_sup(code, factors), modularity(code, factors))
    print(f"{name:>11s} {scores[0]:6.3f} {scores[1]:8.3f} {scores[2]:11.3f}")

# %%
# DCI fits one gradient-boosted classifier per factor on a training split and reports
# disentanglement (does each code predict one factor?), completeness (is each factor
# predicted by one code?) and informativeness (the classifiers' test accuracy).
codes_test = known_codes(factors_test, rng)
for name in ("perfect", "rotated"):
    scores = dci(
        codes[name][:NUM_DCI], factors[:NUM_DCI], codes_test[name], factors_test
    )
    print(f"{name}:")
    for key, value in scores.items():
        print(f"    {key:>22s} {value:.3f}")

# %%
# Things to notice:
#
# * MIG of the *perfect* code is not 1: MIG discretises every code into 20 bins, and the
#   orientation (40 values) and positions (32 values) cannot keep their full entropy in 20
#   bins (0.8955 at 10,000 points, disentanglement_lib's number too).
# * The *noisy* code loses information on the finely divided factors, and with it MIG.
# * The *rotated* code keeps all the information (the rotation can be undone) but loses
#   disentanglement on every metric. Even DCI's informativeness drops: its trees split on
#   one code at a time, and every factor now needs all five codes at once.
# * The *duplicated* code has MIG 0 (the best and second-best codes of every factor carry the
#   same information) while MIG-sup, which looks at codes instead of factors, stays high.
# * Modularity only asks that each code depend on one factor: the *duplicated* code is
#   perfectly modular, and even *random* codes score well above 0.
#
# A sampling metric
# -----------------
# The FactorVAE score fixes one factor in a batch of samples, asks which code varies least
# (relative to its overall variance) and trains a majority-vote classifier from codes to the
# fixed factor. It needs a data set and an ``encode`` function. Any object with
# ``num_factors``, ``sample_factors`` and ``sample_observations_from_factors`` will do: here the
# "observations" are the scaled factors themselves, so that ``encode`` can be a known code.


class FactorsAsObservations:
    num_factors = len(sizes)

    def sample_factors(self, n, random_state):
        return sprites.sample_factors(n, random_state)

    def sample_observations_from_factors(self, factors, random_state):
        return torch.as_tensor(factors / (sizes - 1), dtype=torch.float32)


encoders = {
    "perfect": lambda x: x,
    "rotated": lambda x: x @ torch.as_tensor(rotation, dtype=torch.float32),
}
for name, encode in encoders.items():
    score = factor_vae_score(
        FactorsAsObservations(),
        encode,
        num_train=NUM_VOTES,
        num_eval=NUM_VOTES // 2,
        num_variance_estimate=NUM_POINTS,
    )
    accuracy, active = score["eval_accuracy"], score["num_active_dims"]
    print(f"FactorVAE score, {name} code: {accuracy:.3f} ({active:.0f} active codes)")

# %%
# A trained model
# ---------------
# A beta-TCVAE on procedural dSprites: :class:`~pyro_hfvae.models.conv_hfvae.ConvHFVAE` with a
# 6-dimensional Normal code and no class group (``num_classes=0``), an MLP encoder and decoder,
# trained with ``HFVAELoss(gamma=6)``: with a single group, the total correlation within it
# is the beta-TCVAE's total correlation. The training images are rendered from random factors.
pyro.clear_param_store()
pyro.set_rng_seed(0)
train_factors = sprites.sample_factors(NUM_IMAGES, rng)
images = sprites.sample_observations_from_factors(train_factors, rng)
vae = ConvHFVAE(
    (1, 64, 64), num_classes=0, style_dim=6, architecture="mlp", hidden_dim=256
)
untrained = ConvHFVAE(
    (1, 64, 64), num_classes=0, style_dim=6, architecture="mlp", hidden_dim=256
)
loss = HFVAELoss(alpha=1.0, beta=1.0, gamma=6.0)
svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), loss=loss)
history = []
for step in range(NUM_STEPS):
    idx = torch.randint(0, NUM_IMAGES, (128,))
    svi.step(images[idx], idx, dataset_size=NUM_IMAGES)
    history.append((loss.terms["log_likelihood"], loss.terms["tc_within"]))

fig, axes = plt.subplots(1, 2, figsize=(10, 3))
for ax, values, title in zip(
    axes, np.array(history).T, ("log likelihood", "total correlation of z")
):
    ax.plot(values, lw=0.8)
    ax.set_title(title)
    ax.set_xlabel("step")
fig.tight_layout()

# %%
# :func:`~pyro_hfvae.metrics.evaluate` samples factor tuples, renders them (procedural
# dSprites needs no data file), encodes them with the posterior means and computes every
# metric asked for, all from one seed. The untrained network is the baseline (DCI, the slow
# one, only for the trained model).
options = {
    "factor_vae": {
        "num_train": NUM_VOTES,
        "num_eval": NUM_VOTES // 2,
        "num_variance_estimate": NUM_POINTS,
    }
}
results = {}
for name, model in (("untrained", untrained), ("trained", vae)):
    metrics = ["mig", "mig_sup", "modularity", "factor_vae"]
    metrics += ["dci"] if model is vae else []
    with torch.no_grad():
        results[name] = evaluate(
            sprites,
            lambda x: model.encode(x)["z"],
            metrics=metrics,
            num_train=NUM_DCI,
            num_test=NUM_DCI // 2,
            batch_size=64,
            options=options,
        )
print(f"{'metric':>26s} {'untrained':>10s} {'trained':>10s}")
for key, value in results["trained"].items():
    before = results["untrained"].get(key)
    before = "-" if before is None else f"{before:.3f}"
    print(f"{key:>26s} {before:>10s} {value:10.3f}")

# %%
# Which code responds to which factor: the absolute correlation of each code (posterior mean)
# with each factor, over rendered sprites.
with torch.no_grad():
    means = vae.encode(images[:2000])["z"].numpy()
correlation = np.abs(np.corrcoef(means.T, train_factors[:2000].T)[:6, 6:])
fig, ax = plt.subplots(figsize=(5, 4))
shown = ax.imshow(np.nan_to_num(correlation), vmin=0, vmax=1, cmap="viridis")
ax.set_xticks(range(len(sizes)), sprites.factor_names, rotation=30)
ax.set_yticks(range(6), [f"z[{i}]" for i in range(6)])
fig.colorbar(shown, label="|correlation|")
fig.tight_layout()

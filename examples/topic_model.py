# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
A neural topic model with two groups of topics trained with the HFVAE objective.

ProdLDA (Srivastava and Sutton, ICLR 2017) encodes a document's word counts into Normal
latents ``z``, maps them to topic proportions ``softmax(z)`` and scores the words under a
product of experts, ``Multinomial(softmax(BatchNorm(beta^T softmax(z))))``. Its Normal prior
is the Laplace approximation of a symmetric Dirichlet(``alpha``) prior in the softmax basis,
mean :math:`\\log\\alpha_k - \\frac1K\\sum_i\\log\\alpha_i` and variance
:math:`\\frac{1}{\\alpha_k}(1 - \\frac2K) + \\frac{1}{K^2}\\sum_i\\frac{1}{\\alpha_i}` (here
``alpha = 1``: mean 0, variance :math:`1 - 1/K`), one such prior per group.

As in the HFVAE paper (Esmaeili et al., AISTATS 2019, Section 5.2) the HFVAE model has two
latent sites of 25 topics each, so two groups (each site is its own group), each with its own
softmax and topic-word matrix, trained with ``HFVAELoss(alpha=1, beta=0.1, gamma=4)``: a weak
penalty on the total correlation *between* the groups (topics of different groups may
correlate) and a strong one *within* each group. The baseline is ProdLDA with one group of 50
topics trained on the plain ELBO; ``--models two_groups_elbo`` adds the control that separates
the objective from the architecture: the HFVAE's two groups of 25 topics trained on the ELBO.

ProdLDA batch-normalises the encoder's means and log-variances without a learned scale
(``--encoder-norm fixed``, as in Pyro's ProdLDA tutorial), which keeps every topic equally
informative by construction and so hides the pruning the paper reports; this script learns
the scale and shift (``learned``, the default), so a topic can be switched off. Without
any normalisation (``none``) the topics collapsed in our short runs. Words that occur in more
than ``--max-df`` of the documents (headers such as "subject", "organization") are dropped.

Per model and seed the script prints every topic's top words with :math:`I(x; z_d)` (exact-mixture
estimate on the training split, nats) and the variance of its posterior means, marking topics as
pruned when :math:`I(x; z_d) < 0.1` nats; the NPMI coherence of the active topics (top-10 words,
document co-occurrence in the *test* split); the held-out perplexity of the test split (ProdLDA's
ELBO bound, every ``--eval-every`` epochs: the learning curve); and the strongest correlations of
topic activations (posterior means of ``z`` over the training split) across the two groups and
within a group. The number of epochs is fixed beforehand: the test split is reported, never used
to stop or choose. Each run is saved to ``--results`` as ``<model>_seed<k>.json`` as it finishes;
a rerun reads the saved runs instead of training them again (``--overwrite`` to retrain), and
``--summary`` prints, from the files alone, the lowest seed's report of each model and the table
over seeds.

Data: the 20 Newsgroups "bydate" splits as bag-of-words (``--data``, by default
``../shared/data/20newsgroups/20news_bydate_bow.npz``); where the file is absent, a small
fabricated corpus with planted topics (words named ``topic<k>_<j>``), saying so.

Commands::

    python examples/topic_model.py --preset smoke --results /tmp/topics   # seconds
    python examples/topic_model.py --preset cpu --seeds 0   # docs/topic_results.md, one seed per process
    python examples/topic_model.py --summary --figure       # the table and figure from the result files
"""
import argparse
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from _flags import (  # examples/_flags.py
    add_preset_flag,
    add_result_flags,
    mean_sd,
    parse_with_preset,
    read_results,
    write_json,
)
from pyro.infer import SVI
from pyro.optim import Adam
from torch import nn

from pyro_hfvae import HFVAELoss
from pyro_hfvae.datasets import BagOfWords
from pyro_hfvae.metrics import mutual_information
from pyro_hfvae.util import atomic_file

logger = logging.getLogger("topic_model")

#: Batch normalisation of the encoder's outputs: ProdLDA's (no affine), affine, or none.
ENCODER_NORMS = ("fixed", "learned", "none")

#: The two models compared: file name -> name in the tables.
MODELS = {"hfvae": "HFVAE, two groups of topics", "prodlda": "ProdLDA, one group of topics (ELBO)",
          "two_groups_elbo": "two groups of topics (ELBO)"}

#: The models run unless ``--models`` says otherwise: the paper's comparison (``two_groups_elbo``,
#: the HFVAE's architecture on the ELBO, is the control that separates objective from architecture).
DEFAULT_MODELS = ("hfvae", "prodlda")

#: Settings of ``--preset``; flags given explicitly take precedence. ``smoke``: seconds, every code
#: path; ``cpu``: the results page's runs (three seeds; about 10 minutes per model and seed on one quiet thread).
PRESETS = {
    "smoke": {"num_docs": 200, "num_topics": 6, "epochs": 2, "eval_every": 1, "batch_size": 50,
              "info_samples": 50, "perplexity_samples": 2, "threads": 1},
    "cpu": {"epochs": 200, "eval_every": 10, "seeds": [0, 1, 2], "threads": 1, "figure": True},
}

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "20newsgroups" / "20news_bydate_bow.npz"


def fabricate_corpus(num_docs: int, seed: int, num_topics: int = 6,
                     words_per_topic: int = 12) -> tuple[torch.Tensor, list[str]]:
    """Word counts of documents drawn from planted topics (LDA with Dirichlet(0.2) proportions)."""
    rng = np.random.RandomState(seed)
    vocab = [f"topic{k}_{j}" for k in range(num_topics) for j in range(words_per_topic)]
    vocab += [f"common_{j}" for j in range(words_per_topic)]
    topics = np.full((num_topics, len(vocab)), 0.02)
    for k in range(num_topics):
        topics[k, k * words_per_topic:(k + 1) * words_per_topic] = rng.dirichlet(np.ones(words_per_topic)) * 40
        topics[k, -words_per_topic:] = 2.0
    topics /= topics.sum(1, keepdims=True)
    proportions = rng.dirichlet(np.full(num_topics, 0.2), size=num_docs)
    lengths = rng.poisson(60, size=num_docs) + 5
    counts = np.stack([rng.multinomial(n, p @ topics) for n, p in zip(lengths, proportions)])
    return torch.tensor(counts, dtype=torch.float32), vocab


def load_corpus(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor, list[str], str]:
    """
    Dense word counts (documents, words) of the training and test splits on ``args.device``, the
    vocabulary, and what they are. The words dropped as too frequent are chosen on the training
    split alone; documents left without words are dropped from both splits.
    """
    path = Path(args.data).expanduser()
    if path.is_file():
        splits = []
        for split in ("train", "test"):
            corpus = BagOfWords(path, split=split, device=args.device)
            num_docs = len(corpus) if args.num_docs is None else min(args.num_docs, len(corpus))
            splits.append(corpus.observations(torch.arange(num_docs)))
        train, test = splits
        vocab = list(corpus.vocabulary)
        description = (f"20 Newsgroups from {path}: {len(train)} training and {len(test)} test documents, "
                       f"{len(vocab)} words")
    else:
        logger.warning("%s is absent: using a small fabricated corpus with planted topics", path)
        num_docs = args.num_docs or 1000
        counts, vocab = fabricate_corpus(num_docs + num_docs // 4, seed=0)
        train, test = counts[:num_docs].to(args.device), counts[num_docs:].to(args.device)
        description = (f"fabricated corpus (20 Newsgroups file absent): {len(train)} training and {len(test)} "
                       f"test documents, {len(vocab)} words")
    frequent = (train > 0).float().mean(0) > args.max_df
    if frequent.any():
        dropped = [word for word, drop in zip(vocab, frequent.tolist()) if drop]
        train, test = train[:, ~frequent], test[:, ~frequent]
        vocab = [word for word, drop in zip(vocab, frequent.tolist()) if not drop]
        description += (f"; dropped the {len(dropped)} words in more than {args.max_df:.0%} of the training "
                        f"documents ({' '.join(dropped)})")
    train, test = train[train.sum(-1) > 0], test[test.sum(-1) > 0]
    return train, test, vocab, description


def laplace_dirichlet_prior(num_topics: int, alpha: float) -> tuple[float, float]:
    """Mean and standard deviation of the Laplace approximation of Dirichlet(alpha, ..., alpha)."""
    variance = (1.0 / alpha) * (1.0 - 2.0 / num_topics) + num_topics / (num_topics ** 2 * alpha)
    return 0.0, math.sqrt(variance)


class ProdLDA(nn.Module):
    """
    ProdLDA with the topics split into groups: one latent site ``topics_<g>`` per group,
    proportions ``softmax(z_g)`` per group, word logits the sum of the groups' topic-word
    products, batch-normalised.

    :param int vocab_size: number of words.
    :param tuple group_sizes: topics per group.
    :param int hidden_dim: width of the encoder.
    :param float dropout: dropout rate of the encoder and of the topic proportions.
    :param float dirichlet_alpha: concentration of the approximated symmetric Dirichlet prior.
    :param str encoder_norm: batch normalisation of the posterior means and log-variances:
        ``"fixed"`` (no learned scale, as ProdLDA), ``"learned"`` (affine) or ``"none"``.
    """

    def __init__(self, vocab_size: int, group_sizes: tuple[int, ...], hidden_dim: int = 100,
                 dropout: float = 0.2, dirichlet_alpha: float = 1.0, encoder_norm: str = "learned") -> None:
        super().__init__()
        if encoder_norm not in ENCODER_NORMS:
            raise ValueError(f"expected encoder_norm in {ENCODER_NORMS} but got {encoder_norm!r}")
        self.group_sizes = tuple(group_sizes)
        self.sites = [f"topics_{g}" for g in range(len(group_sizes))]
        self.priors = [laplace_dirichlet_prior(k, dirichlet_alpha) for k in group_sizes]
        total = sum(group_sizes)
        self.encoder = nn.Sequential(nn.Linear(vocab_size, hidden_dim), nn.Softplus(),
                                     nn.Linear(hidden_dim, hidden_dim), nn.Softplus(), nn.Dropout(dropout),
                                     nn.Linear(hidden_dim, 2 * total))
        if encoder_norm == "none":
            self.loc_norm = self.log_variance_norm = nn.Identity()
        else:
            affine = encoder_norm == "learned"
            self.loc_norm = nn.BatchNorm1d(total, affine=affine)
            self.log_variance_norm = nn.BatchNorm1d(total, affine=affine)
        self.topic_words = nn.ModuleList([nn.Linear(k, vocab_size, bias=False) for k in group_sizes])
        self.proportion_dropout = nn.Dropout(dropout)
        self.word_norm = nn.BatchNorm1d(vocab_size, affine=False)

    def posterior(self, counts: torch.Tensor) -> dict[str, dist.Distribution]:
        loc, log_variance = self.encoder(counts).chunk(2, dim=-1)
        loc, log_variance = self.loc_norm(loc), self.log_variance_norm(log_variance)
        scale = (0.5 * log_variance).clamp(-10.0, 5.0).exp()
        return {site: dist.Normal(m, s).to_event(1)
                for site, m, s in zip(self.sites, loc.split(self.group_sizes, -1), scale.split(self.group_sizes, -1))}

    def word_logits(self, zs: list[torch.Tensor]) -> torch.Tensor:
        logits = sum(words(self.proportion_dropout(z.softmax(-1))) for words, z in zip(self.topic_words, zs))
        return self.word_norm(logits)

    def model(self, counts: torch.Tensor, idx: torch.Tensor, num_docs: int) -> None:
        pyro.module("prodlda", self)
        with pyro.plate("documents", num_docs, subsample=idx):
            zs = [pyro.sample(site, dist.Normal(counts.new_full((k,), mean), std).to_event(1))
                  for site, k, (mean, std) in zip(self.sites, self.group_sizes, self.priors)]
            total_count = int(counts.sum(-1).max())
            pyro.sample("words", dist.Multinomial(total_count, logits=self.word_logits(zs), validate_args=False),
                        obs=counts)

    def guide(self, counts: torch.Tensor, idx: torch.Tensor, num_docs: int) -> None:
        pyro.module("prodlda", self)
        posterior = self.posterior(counts)
        with pyro.plate("documents", num_docs, subsample=idx):
            for site in self.sites:  # each site is a group of its own
                pyro.sample(site, posterior[site])

    def topic_word_matrix(self) -> np.ndarray:
        """(topics, words) weights, the groups' topics one after another."""
        return torch.cat([words.weight.detach().T for words in self.topic_words]).cpu().numpy()


def train(lda: ProdLDA, counts: torch.Tensor, test: torch.Tensor, loss, args: argparse.Namespace,
          seed: int, name: str) -> tuple[list[dict], float]:
    """
    Trains ``lda`` for ``args.epochs`` epochs (a number fixed beforehand: the test split is only
    reported, never used to stop or choose). Returns the learning curve, one row per epoch with
    the training loss per document and, every ``args.eval_every`` epochs, the held-out
    perplexity; and the seconds of training (the evaluations left out).
    """
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    svi = SVI(lda.model, lda.guide, Adam({"lr": args.lr, "betas": (0.99, 0.999)}), loss)
    num_docs, batch_size = len(counts), min(args.batch_size, len(counts))
    curve, seconds = [], 0.0
    for epoch in range(1, args.epochs + 1):
        lda.train()
        start = time.perf_counter()
        order = torch.randperm(num_docs, device=counts.device)
        total, steps = 0.0, 0
        for first in range(0, num_docs - batch_size + 1, batch_size):
            idx = order[first:first + batch_size]
            total += svi.step(counts[idx], idx, num_docs)
            steps += 1
        seconds += time.perf_counter() - start
        row = {"epoch": epoch, "train_loss": total / steps / num_docs}
        if epoch % args.eval_every == 0 or epoch == args.epochs:
            lda.eval()
            row["heldout_perplexity"] = heldout_perplexity(lda, test, args.perplexity_samples, seed)
            logger.info("%s seed %d epoch %d: loss per document %.1f, held-out perplexity %.0f", name, seed, epoch,
                        row["train_loss"], row["heldout_perplexity"])
        curve.append(row)
    lda.eval()
    return curve, seconds


def heldout_perplexity(lda: ProdLDA, counts: torch.Tensor, num_samples: int, seed: int) -> float:
    """
    :math:`\\exp(-\\sum_d \\mathcal{L}_d / \\sum_d N_d)`, the perplexity bound of ProdLDA's paper:
    :math:`\\mathcal{L}_d` is document :math:`d`'s ELBO (``num_samples`` reparameterised
    samples of the expected log-likelihood of its words, the KL from the prior in closed form) and
    :math:`N_d` its number of words. The multinomial coefficient is left out, as there. ``lda``
    is scored as it is (call ``lda.eval()`` first for the deterministic network).
    """
    generator = torch.Generator(device=counts.device).manual_seed(seed)
    bound = 0.0
    with torch.no_grad():
        for batch in counts.split(1024):
            posterior = lda.posterior(batch)
            kl = sum(torch.distributions.kl_divergence(posterior[site], dist.Normal(
                batch.new_full((k,), mean), std).to_event(1)) for site, k, (mean, std)
                in zip(lda.sites, lda.group_sizes, lda.priors))
            log_likelihood = 0.0
            for _ in range(num_samples):
                zs = [q.base_dist.loc + q.base_dist.scale * torch.randn(q.base_dist.loc.shape, generator=generator,
                                                                          device=counts.device)
                      for q in posterior.values()]
                log_likelihood = log_likelihood + (batch * lda.word_logits(zs).log_softmax(-1)).sum(-1)
            bound += float((log_likelihood / num_samples - kl).sum())
    return math.exp(-bound / float(counts.sum()))


def npmi(binary: np.ndarray, words: np.ndarray) -> float:
    """Mean normalised pointwise mutual information of the word pairs (document co-occurrence)."""
    present = binary[:, words].astype(np.float64)
    num_docs = len(binary)
    joint = present.T @ present / num_docs
    single = np.diag(joint)
    scores = []
    for i in range(len(words)):
        for j in range(i + 1, len(words)):
            if joint[i, j] == 0:
                scores.append(-1.0)
            elif joint[i, j] == 1:
                scores.append(1.0)
            else:
                scores.append(math.log(joint[i, j] / (single[i] * single[j])) / -math.log(joint[i, j]))
    return float(np.mean(scores))


def analyse(lda: ProdLDA, counts: torch.Tensor, test: torch.Tensor, vocab: list[str], args: argparse.Namespace,
            seed: int) -> dict:
    """
    Per topic: :math:`I(x; z_d)` on the training split, the variance of its posterior means, its
    top words and, if active, their NPMI coherence on the test split (document co-occurrence);
    the correlations of the active topics' activations (posterior means over the training split),
    strongest first, and how many exceed ``args.correlated_above`` in size, across and within groups.
    """
    with torch.no_grad():
        means = torch.cat([torch.cat([d.mean for d in lda.posterior(batch).values()], -1)
                           for batch in counts.split(1024)]).cpu().numpy()
    information = mutual_information(lda.posterior, counts, num_samples=min(args.info_samples, len(counts)),
                                     random_state=seed)
    info = np.concatenate([information.variables[site] for site in lda.sites])
    weights = lda.topic_word_matrix()
    top = np.argsort(-weights, axis=1)[:, :10]
    binary = (test > 0).cpu().numpy()
    group_of = np.repeat(np.arange(len(lda.group_sizes)), lda.group_sizes)
    active = info >= args.pruned_below
    topics = [{"group": int(group_of[k]), "index": k, "info": float(info[k]), "variance": float(means[:, k].var()),
               "active": bool(active[k]), "words": [vocab[w] for w in top[k]],
               "npmi": npmi(binary, top[k]) if active[k] else None} for k in range(len(info))]
    correlation = np.corrcoef(means.T)
    pairs = [(float(correlation[a, b]), int(a), int(b), bool(group_of[a] != group_of[b]))
             for a in np.flatnonzero(active) for b in np.flatnonzero(active) if a < b]
    pairs.sort(key=lambda p: -abs(p[0]))
    strong = [across for r, _, _, across in pairs if abs(r) > args.correlated_above]
    correlated = {"across": sum(strong), "within": len(strong) - sum(strong)}
    return {"topics": topics, "num_active": int(active.sum()),
            "pairs": [p for p in pairs if p[3]][:args.top_pairs] + [p for p in pairs if not p[3]][:args.top_pairs],
            "correlated": correlated,
            "mean_npmi": float(np.mean([t["npmi"] for t in topics if t["active"]])) if active.any() else float("nan")}


def report(name: str, result: dict, args: argparse.Namespace) -> str:
    """One run's topics (strongest first), coherence, perplexity and correlations, as Markdown."""
    lines = [f"### {name}, seed {result['seed']}", "",
             f"{result['num_active']} of {len(result['topics'])} topics active (I(x; z_d) >= {args.pruned_below:g} "
             f"nats); mean test NPMI of the active topics {result['mean_npmi']:.3f}; held-out perplexity "
             f"{result['heldout_perplexity']:.0f}; training {result['seconds']:.0f} s", "",
             "| group | topic | I(x; z_d) | var of means | NPMI | top words |", "|---|---|---|---|---|---|"]
    for topic in sorted(result["topics"], key=lambda t: -t["info"]):
        mark = "" if topic["active"] else " (pruned)"
        coherence = "-" if topic["npmi"] is None else f"{topic['npmi']:.3f}"
        lines.append(f"| {topic['group']} | {topic['index']}{mark} | {topic['info']:.3f} | {topic['variance']:.3f} "
                     f"| {coherence} | {' '.join(topic['words'][:args.top_words])} |")
    words = {t["index"]: " ".join(t["words"][:5]) for t in result["topics"]}
    for across, title in ((True, "across groups"), (False, "within a group")):
        chosen = [p for p in result["pairs"] if p[3] == across]
        if not chosen:
            continue
        lines += ["", f"Strongest correlations of active topics {title} (posterior means over the corpus):", ""]
        lines += [f"- r = {r:+.3f}: [{a}] {words[a]}  <->  [{b}] {words[b]}" for r, a, b, _ in chosen]
    return "\n".join(lines)


def pairs_possible(topics: list[dict]) -> dict[str, int]:
    """How many pairs of active topics there are across groups and within a group."""
    sizes = np.bincount([t["group"] for t in topics if t["active"]])
    within = int((sizes * (sizes - 1) // 2).sum())
    total = int(sizes.sum() * (sizes.sum() - 1) // 2)
    return {"across": total - within, "within": within}


def summary(results: Path, correlated_above: float) -> str:
    """
    The table over seeds of every model's result files in ``results``: mean +- sd (sample sd).
    Correlated pairs are counted and, in brackets, given as a percentage of the pairs of active
    topics there are (models that keep more topics have more pairs to correlate).
    """
    records = read_results(results)
    lines = ["| model | seeds | topics active | held-out perplexity | test NPMI (active topics) "
             f"| pairs with abs(r) > {correlated_above:g} across groups | within a group | epochs | train s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for model in MODELS:
        rows = sorted((r for r in records if r["model"] == model), key=lambda r: r["seed"])
        if not rows:
            continue
        within, across = (_correlated_pairs(rows, where) for where in ("within", "across"))
        lines.append(f"| {MODELS[model]} | {', '.join(str(r['seed']) for r in rows)} "
                     f"| {mean_sd([r['num_active'] for r in rows], 1)} "
                     f"| {mean_sd([r['heldout_perplexity'] for r in rows], 0)} "
                     f"| {mean_sd([r['mean_npmi'] for r in rows])} | {across} | {within} "
                     f"| {rows[0]['curve'][-1]['epoch']} | {mean_sd([r['seconds'] for r in rows], 0)} |")
    return "\n".join(lines)


def _correlated_pairs(rows: list[dict], where: str) -> str:
    counts = [r["correlated"][where] for r in rows]
    possible = [pairs_possible(r["topics"])[where] for r in rows]
    if not all(possible):
        return "-"
    return f"{mean_sd(counts, 1)} ({mean_sd([100 * c / n for c, n in zip(counts, possible)], 0)} %)"


def plot_results(results: Path, path: Path) -> None:
    """Held-out perplexity against epochs, and every topic's I(x; z_d) in decreasing order, per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_results(results)
    fig, (curve_ax, info_ax) = plt.subplots(1, 2, figsize=(10, 3.8))
    colours = {model: f"C{i}" for i, model in enumerate(MODELS)}
    labelled = set()
    for record in records:
        # one legend entry per model: its seeds share a colour
        label = None if record["model"] in labelled else MODELS[record["model"]]
        labelled.add(record["model"])
        points = [(row["epoch"], row["heldout_perplexity"]) for row in record["curve"] if "heldout_perplexity" in row]
        curve_ax.plot(*zip(*points), color=colours[record["model"]], marker=".", alpha=0.8, label=label)
        info = sorted((t["info"] for t in record["topics"]), reverse=True)
        info_ax.plot(range(1, len(info) + 1), info, color=colours[record["model"]], alpha=0.8, label=label)
    curve_ax.set(xlabel="epoch", ylabel="held-out perplexity (test split)", title="learning curves")
    info_ax.axhline(records[0]["pruned_below"] if records else 0.1, color="grey", linestyle=":", label="pruned below")
    info_ax.set(xlabel="topic (by decreasing information)", ylabel="I(x; z_d), nats", title="information per topic")
    info_ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_file(path) as file:
        fig.savefig(file, dpi=100, format="png")
    plt.close(fig)


def run(args: argparse.Namespace, model: str, seed: int, counts: torch.Tensor, test: torch.Tensor,
        vocab: list[str]) -> dict:
    """Trains and analyses one model with one seed; returns its record."""
    half = args.num_topics // 2
    group_sizes, loss = {
        "hfvae": ((half, args.num_topics - half), HFVAELoss(1.0, args.beta, args.gamma)),
        "prodlda": ((args.num_topics,), HFVAELoss(1.0, 1.0, 1.0)),
        "two_groups_elbo": ((half, args.num_topics - half), HFVAELoss(1.0, 1.0, 1.0)),
    }[model]
    pyro.set_rng_seed(seed)
    lda = ProdLDA(len(vocab), group_sizes, args.hidden_dim, args.dropout, args.dirichlet_alpha,
                  args.encoder_norm).to(args.device)
    curve, seconds = train(lda, counts, test, loss, args, seed, MODELS[model])
    return analyse(lda, counts, test, vocab, args, seed) | {
        "model": model, "seed": seed, "curve": curve, "seconds": seconds, "heldout_perplexity":
        curve[-1]["heldout_perplexity"], "pruned_below": args.pruned_below, "settings": run_settings(args),
        "documents": {"train": len(counts), "test": len(test)}, "vocabulary": len(vocab)}


def run_settings(args: argparse.Namespace) -> dict:
    """
    The flags that decide a run's result: not where the data and the results are (a clone of the
    repository elsewhere continues the committed runs), which runs, the device nor the threads.
    """
    return {key: value for key, value in vars(args).items()
            if key not in ("data", "results", "overwrite", "summary", "seeds", "models", "device", "threads", "preset",
                           "figure")}


def saved_run(path: Path, args: argparse.Namespace) -> dict:
    """The run saved at ``path``, checked to have been made with the settings of ``args``."""
    record = json.loads(path.read_text())
    changed = sorted(key for key, value in run_settings(args).items() if record["settings"].get(key) != value)
    if changed:
        raise ValueError(f"expected {path} to be a run of these settings but it differs in {changed}; "
                         "choose another --results folder or pass --overwrite")
    return record


def main(args: argparse.Namespace) -> list[dict]:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    results = Path(args.results)
    if args.summary:
        for model in args.models:
            first = min(results.glob(f"{model}_seed*.json"), default=None, key=lambda p: int(p.stem.split("seed")[1]))
            if first is not None:
                print(report(MODELS[model], json.loads(first.read_text()), args) + "\n")
        print(summary(results, args.correlated_above))
        if args.figure:
            plot_results(results, results / "topics.png")
        return []
    counts, test, vocab, description = load_corpus(args)
    print(f"Data: {description}.\n")
    records = []
    for seed in args.seeds:
        for model in args.models:
            path = results / f"{model}_seed{seed}.json"
            if path.exists() and not args.overwrite:
                records.append(saved_run(path, args))
                continue
            record = run(args, model, seed, counts, test, vocab)
            print(report(MODELS[model], record, args) + "\n")
            write_json(path, record, sort_keys=False)
            records.append(record)
    print(summary(results, args.correlated_above))
    if args.figure:
        plot_results(results, results / "topics.png")
    return records


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_preset_flag(parser, PRESETS)
    add_result_flags(parser, "docs/_static/topics")
    parser.add_argument("--data", default=str(DEFAULT_DATA),
                        help="bag-of-words npz in the 20 Newsgroups layout (a fabricated corpus if absent)")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(DEFAULT_MODELS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--num-docs", type=int, default=None, help="use only the first N documents of each split")
    parser.add_argument("--num-topics", type=int, default=50, help="topics in all (HFVAE: two equal groups)")
    parser.add_argument("--max-df", type=float, default=0.25,
                        help="drop words that occur in more than this share of the training documents")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--eval-every", type=int, default=5, help="epochs between held-out perplexities")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--beta", type=float, default=0.1, help="HFVAE weight of the TC between the groups")
    parser.add_argument("--gamma", type=float, default=4.0, help="HFVAE weight of the TC within each group")
    parser.add_argument("--dirichlet-alpha", type=float, default=1.0)
    parser.add_argument("--hidden-dim", type=int, default=100)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--encoder-norm", choices=ENCODER_NORMS, default="learned",
                        help="batch normalisation of the posterior means and log-variances")
    parser.add_argument("--pruned-below", type=float, default=0.1,
                        help="I(x; z_d) in nats below which a topic counts as pruned")
    parser.add_argument("--correlated-above", type=float, default=0.3,
                        help="size of a correlation of topic activations counted as one")
    parser.add_argument("--info-samples", type=int, default=2000, help="samples scored for I(x; z_d)")
    parser.add_argument("--perplexity-samples", type=int, default=10, help="samples per test document's ELBO")
    parser.add_argument("--top-words", type=int, default=8)
    parser.add_argument("--top-pairs", type=int, default=8, help="correlations kept, across and within groups")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--figure", action="store_true", help="draw the learning curves and information per topic")
    return parser


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    main(parse_with_preset(make_parser(), PRESETS))

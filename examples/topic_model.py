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
topics trained on the plain ELBO.

ProdLDA batch-normalises the encoder's means and log-variances without a learned scale
(``--encoder-norm fixed``, as in Pyro's ProdLDA tutorial), which keeps every topic equally
informative by construction and so hides the pruning the paper reports; this script learns
the scale and shift (``learned``, the default), so a topic can be switched off. Without
any normalisation (``none``) the topics collapsed in our short runs. Words that occur in more
than ``--max-df`` of the documents (headers such as "subject", "organization") are dropped.

The script prints, per model, every topic's top words with :math:`I(x; z_d)` (exact-mixture
estimate, nats) and the variance of its posterior means over the corpus, marking topics as
pruned when :math:`I(x; z_d) < 0.1` nats; the NPMI coherence of the active topics (top-10
words, document co-occurrence in the training corpus); and the strongest correlations of
topic activations (posterior means of ``z`` over the corpus) across the two groups, against
the strongest within a group.

Data: the 20 Newsgroups "bydate" training split as bag-of-words (``--data``, by default
``../shared/data/20newsgroups/20news_bydate_bow.npz``); where the file is absent, a small
fabricated corpus with planted topics (words named ``topic<k>_<j>``), saying so.

CPU run (docs/examples_results.md, about 10 minutes)::

    python examples/topic_model.py --threads 1
"""
import argparse
import logging
import math
import time
from pathlib import Path

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI
from pyro.optim import Adam
from torch import nn

from pyro_hfvae import HFVAELoss
from pyro_hfvae.datasets import BagOfWords
from pyro_hfvae.metrics import mutual_information

logger = logging.getLogger("topic_model")

#: Batch normalisation of the encoder's outputs: ProdLDA's (no affine), affine, or none.
ENCODER_NORMS = ("fixed", "learned", "none")

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


def load_corpus(args: argparse.Namespace) -> tuple[torch.Tensor, list[str], str]:
    """Dense word counts (documents, words) on ``args.device``, the vocabulary, and what they are."""
    path = Path(args.data).expanduser()
    if path.is_file():
        corpus = BagOfWords(path, split="train", device=args.device)
        num_docs = len(corpus) if args.num_docs is None else min(args.num_docs, len(corpus))
        counts = corpus.observations(torch.arange(num_docs))
        vocab = list(corpus.vocabulary)
        description = f"20 Newsgroups train split from {path}: {num_docs} documents, {len(vocab)} words"
    else:
        logger.warning("%s is absent: using a small fabricated corpus with planted topics", path)
        counts, vocab = fabricate_corpus(args.num_docs or 1000, args.seed)
        counts = counts.to(args.device)
        description = f"fabricated corpus (20 Newsgroups file absent): {len(counts)} documents, {len(vocab)} words"
    frequent = (counts > 0).float().mean(0) > args.max_df
    if frequent.any():
        dropped = [word for word, drop in zip(vocab, frequent.tolist()) if drop]
        counts, vocab = counts[:, ~frequent], [word for word, drop in zip(vocab, frequent.tolist()) if not drop]
        counts = counts[counts.sum(-1) > 0]
        description += (f"; dropped the {len(dropped)} words in more than {args.max_df:.0%} of the documents "
                        f"({' '.join(dropped)})")
    return counts, vocab, description


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


def train(lda: ProdLDA, counts: torch.Tensor, loss, args: argparse.Namespace, name: str) -> float:
    """Trains ``lda``; returns the seconds it took."""
    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)
    svi = SVI(lda.model, lda.guide, Adam({"lr": args.lr, "betas": (0.99, 0.999)}), loss)
    num_docs, batch_size = len(counts), min(args.batch_size, len(counts))
    lda.train()
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        order = torch.randperm(num_docs, device=counts.device)
        total = 0.0
        for first in range(0, num_docs - batch_size + 1, batch_size):
            idx = order[first:first + batch_size]
            total += svi.step(counts[idx], idx, num_docs)
        if epoch % args.log_every == 0 or epoch == args.epochs:
            logger.info("%s epoch %d: loss per document %.1f", name, epoch,
                        total / (num_docs // batch_size) / num_docs)
    lda.eval()
    return time.perf_counter() - start


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


def analyse(lda: ProdLDA, counts: torch.Tensor, vocab: list[str], args: argparse.Namespace) -> dict:
    """Per-topic information, variance, top words and coherence; correlations of activations."""
    with torch.no_grad():
        means = torch.cat([torch.cat([d.mean for d in lda.posterior(batch).values()], -1)
                           for batch in counts.split(1024)]).cpu().numpy()
    information = mutual_information(lda.posterior, counts, num_samples=min(args.info_samples, len(counts)),
                                     random_state=args.seed)
    info = np.concatenate([information.variables[site] for site in lda.sites])
    weights = lda.topic_word_matrix()
    top = np.argsort(-weights, axis=1)[:, :10]
    binary = (counts > 0).cpu().numpy()
    group_of = np.repeat(np.arange(len(lda.group_sizes)), lda.group_sizes)
    active = info >= args.pruned_below
    topics = [{"group": int(group_of[k]), "index": k, "info": float(info[k]), "variance": float(means[:, k].var()),
               "active": bool(active[k]), "words": [vocab[w] for w in top[k]],
               "npmi": npmi(binary, top[k]) if active[k] else None} for k in range(len(info))]
    correlation = np.corrcoef(means.T)
    pairs = []
    for a in np.flatnonzero(active):
        for b in np.flatnonzero(active):
            if a < b:
                pairs.append((float(correlation[a, b]), int(a), int(b), group_of[a] != group_of[b]))
    pairs.sort(key=lambda p: -abs(p[0]))
    return {"topics": topics, "pairs": pairs, "num_active": int(active.sum()),
            "mean_npmi": float(np.mean([t["npmi"] for t in topics if t["active"]])) if active.any() else float("nan")}


def report(name: str, result: dict, args: argparse.Namespace) -> str:
    lines = [f"### {name}", "",
             f"{result['num_active']} of {len(result['topics'])} topics active (I(x; z_d) >= {args.pruned_below:g} "
             f"nats); mean NPMI of the active topics {result['mean_npmi']:.3f}; training {result['seconds']:.0f} s", "",
             "| group | topic | I(x; z_d) | var of means | NPMI | top words |", "|---|---|---|---|---|---|"]
    for topic in sorted(result["topics"], key=lambda t: -t["info"]):
        mark = "" if topic["active"] else " (pruned)"
        coherence = "-" if topic["npmi"] is None else f"{topic['npmi']:.3f}"
        lines.append(f"| {topic['group']} | {topic['index']}{mark} | {topic['info']:.3f} | {topic['variance']:.3f} "
                     f"| {coherence} | {' '.join(topic['words'][:args.top_words])} |")
    words = {t["index"]: " ".join(t["words"][:5]) for t in result["topics"]}
    for across, title in ((True, "across groups"), (False, "within a group")):
        chosen = [p for p in result["pairs"] if p[3] == across][:args.top_pairs]
        if not chosen:
            continue
        lines += ["", f"Strongest correlations of active topics {title} (posterior means over the corpus):", ""]
        lines += [f"- r = {r:+.3f}: [{a}] {words[a]}  <->  [{b}] {words[b]}" for r, a, b, _ in chosen]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> dict[str, dict]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    pyro.set_rng_seed(args.seed)
    counts, vocab, description = load_corpus(args)
    print(f"Data: {description}.\n")
    half = args.num_topics // 2
    runs = {
        f"HFVAE, 2 groups of {half} topics (alpha=1, beta={args.beta:g}, gamma={args.gamma:g})":
            ((half, args.num_topics - half), HFVAELoss(1.0, args.beta, args.gamma)),
        f"ProdLDA, 1 group of {args.num_topics} topics (ELBO)": ((args.num_topics,), HFVAELoss(1.0, 1.0, 1.0)),
    }
    results = {}
    for name, (group_sizes, loss) in runs.items():
        lda = ProdLDA(len(vocab), group_sizes, args.hidden_dim, args.dropout, args.dirichlet_alpha,
                      args.encoder_norm).to(args.device)
        seconds = train(lda, counts, loss, args, name)
        results[name] = analyse(lda, counts, vocab, args) | {"seconds": seconds}
        print(report(name, results[name], args) + "\n")
    return results


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA),
                        help="bag-of-words npz in the 20 Newsgroups layout (a fabricated corpus if absent)")
    parser.add_argument("--num-docs", type=int, default=None, help="use only the first N documents")
    parser.add_argument("--num-topics", type=int, default=50, help="topics in all (HFVAE: two equal groups)")
    parser.add_argument("--max-df", type=float, default=0.25,
                        help="drop words that occur in more than this share of the documents")
    parser.add_argument("--epochs", type=int, default=40)
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
    parser.add_argument("--info-samples", type=int, default=2000, help="samples scored for I(x; z_d)")
    parser.add_argument("--top-words", type=int, default=8)
    parser.add_argument("--top-pairs", type=int, default=8)
    parser.add_argument("--log-every", type=int, default=5, help="epochs between log lines")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return parser


if __name__ == "__main__":
    main(make_parser().parse_args())

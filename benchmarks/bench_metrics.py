# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Speed of :mod:`pyro_hfvae.metrics`, printed as tables (not a test).

1. MIG, MIG-sup and modularity on 10,000 x 10 codes, side by side with disentanglement_lib's
   loop over (code, factor) pairs with ``sklearn.metrics.mutual_info_score``.
2. The FactorVAE score with the default 10,000 + 5,000 votes of 64 points and a trivial
   encoder: total time split into encoder, data set and metric-own time, side by side with a
   vote-by-vote loop as disentanglement_lib runs it.
3. The full-data-set (beta-TCVAE) MIG of a synthetic Gaussian posterior over the 737,280-item
   dSprites grid, with a subset of samples per entropy on CPU (the cost is linear in it).

Run ``python benchmarks/bench_metrics.py --help`` for the options.
"""

import argparse
import math
import resource
import time

import numpy as np
import pyro.distributions as dist
import sklearn.metrics
import torch

from pyro_hfvae.metrics import factor_vae_score, mig, mig_posterior, mig_sup, modularity

DSPRITES_SIZES = (3, 6, 40, 32, 32)
DSPRITES_NAMES = ("shape", "scale", "orientation", "posX", "posY")


def best_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def print_table(title, header, rows):
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    print(f"\n{title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)))


def loop_mutual_information(codes, factors, num_bins=20):
    """disentanglement_lib: np.histogram discretisation, then one mutual_info_score per pair."""
    bins = [np.digitize(c, np.histogram(c, num_bins)[1][:-1]) for c in codes.T]
    return np.array([[sklearn.metrics.mutual_info_score(f, b) for f in factors.T] for b in bins])


def loop_mig(codes, factors):
    m = loop_mutual_information(codes, factors)
    entropy = np.array([sklearn.metrics.mutual_info_score(f, f) for f in factors.T])
    top = np.sort(m, axis=0)[::-1]
    return np.mean((top[0] - top[1]) / entropy)


def loop_mig_sup(codes, factors):
    m = loop_mutual_information(codes, factors)
    entropy = np.array([sklearn.metrics.mutual_info_score(f, f) for f in factors.T])
    top = np.sort(m / entropy, axis=1)[:, ::-1]
    return np.mean((top[:, 0] - top[:, 1])[np.var(codes, axis=0, ddof=1) > 0.01])


def loop_modularity(codes, factors):
    squared = loop_mutual_information(codes, factors) ** 2
    largest = squared.max(axis=1)
    return np.mean(1.0 - (squared.sum(1) - largest) / (largest * (squared.shape[1] - 1.0)))


def bench_array_metrics(args):
    rs = np.random.RandomState(0)
    sizes = np.array(DSPRITES_SIZES)
    factors = np.stack([rs.randint(s, size=args.num_points) for s in sizes], axis=1)
    codes = np.hstack(
        [
            factors / (sizes - 1.0) + 0.05 * rs.randn(args.num_points, len(sizes)),
            rs.randn(args.num_points, args.num_codes - len(sizes)),
        ]
    )
    rows = []
    for name, ours, loop in [
        ("mig", mig, loop_mig),
        ("mig_sup", mig_sup, loop_mig_sup),
        ("modularity", modularity, loop_modularity),
    ]:
        ours_s = best_time(lambda: ours(codes, factors), args.repeats)
        loop_s = best_time(lambda: loop(codes, factors), args.repeats)
        difference = abs(ours(codes, factors) - loop(codes, factors))
        rows.append(
            [
                name,
                f"{ours_s * 1e3:.1f}",
                f"{loop_s * 1e3:.1f}",
                f"{loop_s / ours_s:.1f}x",
                f"{difference:.1e}",
            ]
        )
    print_table(
        f"Array metrics on {args.num_points:,} x {args.num_codes} codes (best of {args.repeats})",
        ["metric", "pyro_hfvae ms", "pair loop ms", "speed-up", "|difference|"],
        rows,
    )


class FactorGrid:
    """dSprites-sized ground-truth data set whose observations are the factor classes."""

    factor_names = DSPRITES_NAMES
    factor_sizes = DSPRITES_SIZES
    num_factors = len(DSPRITES_SIZES)

    def __init__(self):
        self.seconds = 0.0

    def sample_factors(self, n, random_state):
        start = time.perf_counter()
        factors = np.stack([random_state.randint(s, size=n) for s in self.factor_sizes], axis=1)
        self.seconds += time.perf_counter() - start
        return factors

    def sample_observations_from_factors(self, factors, random_state):
        start = time.perf_counter()
        observations = torch.as_tensor(np.asarray(factors), dtype=torch.float32)
        self.seconds += time.perf_counter() - start
        return observations

    def __len__(self):
        return math.prod(self.factor_sizes)

    def factors_of(self, indices):
        return np.stack(np.unravel_index(np.asarray(indices), self.factor_sizes), axis=-1)

    def observations(self, indices):
        return torch.as_tensor(self.factors_of(indices), dtype=torch.float32)


class LinearEncoder:
    """A trivial encoder: a fixed linear map of the factors to 10 codes; times itself."""

    def __init__(self, num_codes=10):
        generator = torch.Generator().manual_seed(0)
        self.weight = torch.randn(len(DSPRITES_SIZES), num_codes, generator=generator)
        self.seconds = 0.0
        self.calls = 0

    def __call__(self, observations):
        start = time.perf_counter()
        codes = observations @ self.weight + 0.1 * torch.sin(97.0 * observations.sum(1, True))
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return codes


def vote_by_vote_factor_vae(dataset, encode, random_state, num_train, num_eval, batch_size=64):
    """disentanglement_lib's loop: one randint, one sample, one encoder call per vote."""
    observations = dataset.sample_observations_from_factors(
        dataset.sample_factors(10000, random_state), random_state
    )
    global_variance = np.var(encode(observations).numpy(), axis=0, ddof=1)
    active = np.sqrt(global_variance) >= 0.05

    def votes(num):
        counts = np.zeros((dataset.num_factors, global_variance.shape[0]), dtype=np.int64)
        for _ in range(num):
            k = random_state.randint(dataset.num_factors)
            factors = dataset.sample_factors(batch_size, random_state)
            factors[:, k] = factors[0, k]
            codes = encode(dataset.sample_observations_from_factors(factors, random_state)).numpy()
            local = np.var(codes, axis=0, ddof=1)
            counts[k, np.argmin(local[active] / global_variance[active])] += 1
        return counts

    train = votes(num_train)
    classifier = np.argmax(train, axis=0)
    other = np.arange(train.shape[1])
    evaluation = votes(num_eval)
    return evaluation[classifier, other].sum() / evaluation.sum()


def bench_factor_vae(args):
    rows = []
    for label, run in [
        (
            "vectorised (pyro_hfvae)",
            lambda d, e: factor_vae_score(
                d, e, num_train=args.votes_train, num_eval=args.votes_eval
            )["eval_accuracy"],
        ),
        (
            "vote by vote (disentanglement_lib loop)",
            lambda d, e: vote_by_vote_factor_vae(
                d, e, np.random.RandomState(0), args.votes_train, args.votes_eval
            ),
        ),
    ]:
        dataset, encoder = FactorGrid(), LinearEncoder()
        start = time.perf_counter()
        accuracy = run(dataset, encoder)
        total = time.perf_counter() - start
        own = total - encoder.seconds - dataset.seconds
        rows.append(
            [
                label,
                f"{total:.2f}",
                f"{encoder.seconds:.2f}",
                f"{dataset.seconds:.2f}",
                f"{own:.2f}",
                encoder.calls,
                f"{accuracy:.4f}",
            ]
        )
    print_table(
        f"FactorVAE score, {args.votes_train:,} + {args.votes_eval:,} votes of 64 points, "
        "trivial linear encoder",
        [
            "implementation",
            "total s",
            "encoder s",
            "data set s",
            "metric-own s",
            "encoder calls",
            "eval accuracy",
        ],
        rows,
    )


def bench_posterior_mig(args):
    dataset = FactorGrid()
    weight = torch.randn(
        len(DSPRITES_SIZES), args.num_codes, generator=torch.Generator().manual_seed(1)
    )
    scale = torch.tensor(DSPRITES_SIZES, dtype=torch.float32)

    def posterior(x):
        # Gaussian posterior whose mean mixes the normalised factors: every code informs MIG.
        return dist.Normal((x / scale) @ weight, 0.1).to_event(1)

    num_items = len(dataset)
    start = time.perf_counter()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    value = mig_posterior(
        posterior,
        dataset,
        num_samples=args.posterior_samples,
        batch_size=args.posterior_batch,
        pairwise_memory_mb=args.pairwise_memory_mb,
    )
    seconds = time.perf_counter() - start
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Pairs (sample, component) evaluated: marginal plus every value of the 4 kept factors.
    pairs = args.posterior_samples * num_items
    for size in DSPRITES_SIZES[1:]:
        pairs += size * min(args.posterior_samples, num_items // size) * (num_items // size)
    rows = [
        [
            f"{num_items:,}",
            args.posterior_samples,
            f"{seconds:.1f}",
            f"{pairs * args.num_codes / seconds / 1e6:.1f}",
            f"{seconds * 10000 / args.posterior_samples / 60:.0f}",
            f"{(rss_after - rss_before) / 1024:.0f}",
            f"{value:.4f}",
        ]
    ]
    print_table(
        "Full-data-set MIG (beta-TCVAE estimator), synthetic Gaussian posterior, "
        f"{args.num_codes} codes, CPU",
        [
            "items",
            "samples/entropy",
            "seconds",
            "M log-densities/s",
            "min at 10,000 samples",
            "peak RSS growth MB",
            "MIG",
        ],
        rows,
    )


def main(args=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-points", type=int, default=10000)
    parser.add_argument("--num-codes", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--votes-train", type=int, default=10000)
    parser.add_argument("--votes-eval", type=int, default=5000)
    parser.add_argument(
        "--posterior-samples",
        type=int,
        default=100,
        help="samples per entropy estimate (beta-TCVAE uses 10,000; linear cost)",
    )
    parser.add_argument("--posterior-batch", type=int, default=1024)
    parser.add_argument("--pairwise-memory-mb", type=float, default=1024.0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (more than the free cores makes every small op wait on the others)",
    )
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=["array", "factor_vae", "posterior"]
    )
    args = parser.parse_args(args)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if "array" not in args.skip:
        bench_array_metrics(args)
    if "factor_vae" not in args.skip:
        bench_factor_vae(args)
    if "posterior" not in args.skip:
        bench_posterior_mig(args)


if __name__ == "__main__":
    main()

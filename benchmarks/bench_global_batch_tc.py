"""
Accuracy of the global-batch total-correlation estimate as data-parallel ranks are added, at a
fixed local batch: ``k`` ranks of ``b`` rows with ``HFVAELoss(global_batch=True)`` estimate over
``k * b`` rows exactly what one process does over a batch of ``k * b`` (the gloo tests in
``tests/infer/test_hfvae_distributed.py`` check it to 1e-10), so the ranks are simulated in one
process by batches of ``k * b`` rows.

Known answer: the data set is the full grid ``{0..L-1}^D`` (N = L^D points) and the posterior of
point ``x`` is ``Normal(mu[x], s^2 I)`` with ``mu`` a per-coordinate map; the aggregate posterior
is then the product of its per-variable marginals, so its total correlation is exactly 0 and the
estimate's error is the estimate. Printed: the mean absolute error (nats) over ``--seeds``
batches drawn without replacement, per ``k``.

    python benchmarks/bench_global_batch_tc.py --seeds 50
"""

import argparse
import itertools
import time

import torch
from torch.distributions import Independent, Normal

from pyro_hfvae.ops import aggregate_log_marginals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--dims", type=int, default=5, help="latent variables D")
    parser.add_argument("--levels", type=int, default=6, help="grid values per variable L (N = L^D)")
    parser.add_argument("--scale", type=float, default=0.3, help="posterior standard deviation s")
    parser.add_argument("--local-batch", type=int, default=64, help="rows per rank b")
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4, 8], help="numbers of ranks k")
    parser.add_argument("--seeds", type=int, default=50)
    args = parser.parse_args()
    torch.set_default_dtype(torch.float64)
    grid = torch.tensor(list(itertools.product(range(args.levels), repeat=args.dims)))
    means = torch.linspace(-2, 2, args.levels)[grid]
    N = means.shape[0]
    print(f"N = {N} ({args.levels}^{args.dims} grid), s = {args.scale}, b = {args.local_batch}, {args.seeds} seeds; "
          "true TC = 0")
    for k in args.ranks:
        B, errors, start = k * args.local_batch, [], time.time()
        for seed in range(args.seeds):
            generator = torch.Generator().manual_seed(seed)
            rows = torch.randperm(N, generator=generator)[:B]
            posterior = Independent(Normal(means[rows], args.scale), 1)
            z = means[rows] + args.scale * torch.randn(B, args.dims, generator=generator)
            out = aggregate_log_marginals({"z": z}, {"z": posterior}, dataset_size=N)
            errors.append(out.total_correlations()["z"].mean().item())
        errors = torch.tensor(errors)
        print(f"k = {k:2d} ranks (B = {B:5d}): mean |TC error| {errors.abs().mean():.3f} nats "
              f"(mean {errors.mean():+.3f}, sd {errors.std():.3f}; {time.time() - start:.1f} s)")


if __name__ == "__main__":
    main()

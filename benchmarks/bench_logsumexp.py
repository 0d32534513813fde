# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Time the reduction of the pairwise tables, forward and backward: :func:`torch.logsumexp`
against :func:`~pyro_hfvae.ops.logsumexp.safe_logsumexp`, which raises underflowing exponents
to ``EXP_FLOOR`` before ``exp``, on the Normal tables of the default job's style group
(``V = 10`` variables, stratified weights) in two states, interleaved:

  fresh    posteriors as at initialisation (means near 0, scales near 1): no term underflows
  trained  sharp, spread posteriors (means ~ N(0, 1), scales 0.05): most terms far below e^-87,
           where torch's vectorised CPU exp takes its slow path

    python benchmarks/bench_logsumexp.py --batch-sizes 64 256 1024 --repeats 15
"""
import argparse

import torch
from _timing import interleaved_median_ms
from torch.distributions import Normal

from pyro_hfvae.ops import safe_logsumexp, stratified_log_weights

STATES = {"fresh": (0.1, 1.0), "trained": (1.0, 0.05)}  # (spread of the means, scale)


def normal_table(batch_size: int, num_variables: int, state: str, generator: torch.Generator) -> torch.Tensor:
    """``[r, b, v] = log N(z_rv; mu_bv, sigma)`` with ``z_r`` drawn from row ``r``'s posterior, a leaf."""
    spread, scale = STATES[state]
    loc = spread * torch.randn(batch_size, num_variables, generator=generator)
    value = loc + scale * torch.randn(batch_size, num_variables, generator=generator)
    return Normal(loc, scale).log_prob(value[:, None]).requires_grad_()


def reduce_and_backward(logsumexp, table: torch.Tensor, log_weights: torch.Tensor) -> None:
    logsumexp(table + log_weights[..., None], 1).sum().backward()
    table.grad = None


def main(args: argparse.Namespace) -> dict[tuple[int, str], dict[str, float]]:
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    results = {}
    print(f"CPU, threads {args.threads}, torch {torch.__version__}; ms per reduction (forward + backward) of a "
          f"(B, B, {args.num_variables}) table, median of {args.repeats} interleaved repeats")
    print(f"{'B':>6} | {'state':>7} | {'below e^-87':>11} | {'torch.logsumexp':>15} | {'safe_logsumexp':>14} | "
          f"{'ratio':>5}")
    for batch_size in args.batch_sizes:
        log_weights = stratified_log_weights(slice(0, batch_size), batch_size, args.dataset_size)
        for state in STATES:
            table = normal_table(batch_size, args.num_variables, state, generator)
            underflow = ((table + log_weights[..., None]) - torch.logsumexp(table + log_weights[..., None], 1,
                                                                             keepdim=True) < -87).float().mean()
            calls = {"torch.logsumexp": lambda t=table, w=log_weights: reduce_and_backward(torch.logsumexp, t, w),
                     "safe_logsumexp": lambda t=table, w=log_weights: reduce_and_backward(safe_logsumexp, t, w)}
            ms = interleaved_median_ms(calls, args.repeats, args.warmup, args.inner)
            results[batch_size, state] = ms
            print(f"{batch_size:>6} | {state:>7} | {underflow.item():11.0%} | {ms['torch.logsumexp']:15.2f} | "
                  f"{ms['safe_logsumexp']:14.2f} | {ms['safe_logsumexp'] / ms['torch.logsumexp']:5.2f}")
    return results


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[64, 256, 1024])
    parser.add_argument("--num-variables", type=int, default=10)
    parser.add_argument("--dataset-size", type=int, default=737280, help="N of the stratified weights (dSprites)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--inner", type=int, default=3, help="reductions per timed repeat")
    parser.add_argument("--threads", type=int, default=1)
    return parser


if __name__ == "__main__":
    main(make_parser().parse_args())

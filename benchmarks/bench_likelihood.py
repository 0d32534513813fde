# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Time the Bernoulli image likelihood, forward and backward: Pyro's ``Bernoulli(logits=...)``
(torch's ``binary_cross_entropy_with_logits``) against
:class:`~pyro_hfvae.distributions.LogitBernoulli`, on a batch of 64 x 64 binary images with
logits in two states, interleaved:

  moderate   logits uniform in [-10, 10], as at the start of training
  confident  a trained decoder's: 80 % background pixels with logits in [-120, -20], 20 %
             foreground pixels in [5, 35], where torch's log_sigmoid and log1p take slow paths

    python benchmarks/bench_likelihood.py --batch-sizes 64 256 --repeats 15
"""
import argparse

import pyro.distributions as dist
import torch
from _timing import interleaved_median_ms

from pyro_hfvae.distributions import LogitBernoulli
from pyro_hfvae.training.allocator import retain_freed_memory


def logits_and_images(batch_size: int, state: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, 1, 64, 64)`` logits (a leaf) and the binary images they score."""
    shape = (batch_size, 1, 64, 64)
    uniform = torch.rand(shape, generator=generator)
    if state == "moderate":
        logits = 20 * uniform - 10
    else:
        background = torch.rand(shape, generator=generator) < 0.8
        logits = torch.where(background, -20 - 100 * uniform, 5 + 30 * uniform)
    images = (logits > 0).float()
    return logits.requires_grad_(), images


def log_prob_and_backward(likelihood, logits: torch.Tensor, images: torch.Tensor) -> None:
    likelihood(logits=logits, validate_args=False).to_event(3).log_prob(images).sum().backward()
    logits.grad = None


def main(args: argparse.Namespace) -> dict[tuple[int, str], dict[str, float]]:
    torch.set_num_threads(args.threads)
    retain_freed_memory()  # as the trainer does: fresh memory's page faults would blur both
    generator = torch.Generator().manual_seed(0)
    results = {}
    print(f"CPU, threads {args.threads}, torch {torch.__version__}; ms per log_prob + backward of B 64 x 64 images, "
          f"median of {args.repeats} interleaved repeats")
    print(f"{'B':>6} | {'state':>9} | {'dist.Bernoulli':>14} | {'LogitBernoulli':>14} | {'ratio':>5}")
    for batch_size in args.batch_sizes:
        for state in ("moderate", "confident"):
            logits, images = logits_and_images(batch_size, state, generator)
            calls = {name: (lambda f=likelihood: log_prob_and_backward(f, logits, images))
                     for name, likelihood in (("dist.Bernoulli", dist.Bernoulli), ("LogitBernoulli", LogitBernoulli))}
            ms = interleaved_median_ms(calls, args.repeats, args.warmup, args.inner)
            results[batch_size, state] = ms
            print(f"{batch_size:>6} | {state:>9} | {ms['dist.Bernoulli']:14.2f} | {ms['LogitBernoulli']:14.2f} | "
                  f"{ms['LogitBernoulli'] / ms['dist.Bernoulli']:5.2f}")
    return results


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[64, 256])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--inner", type=int, default=3, help="evaluations per timed repeat")
    parser.add_argument("--threads", type=int, default=1)
    return parser


if __name__ == "__main__":
    main(make_parser().parse_args())

# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Time the optimiser step of the default job's model: Pyro's ``PyroOptim`` (one torch optimiser
per parameter) against :class:`~pyro_hfvae.training.grouped_optim.GroupedOptim` (one for all
of them), both fused Adam with the job's arguments, on the same parameters and gradients,
interleaved so that machine noise hits each alike.

    python benchmarks/bench_optimizer.py --architectures mlp conv --repeats 30
"""
import argparse

import torch
from _timing import interleaved_median_ms
from pyro.optim import PyroOptim

from pyro_hfvae.training.config import load_config
from pyro_hfvae.training.grouped_optim import GroupedOptim
from pyro_hfvae.training.trainer import Trainer


def main(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    torch.set_num_threads(args.threads)
    results = {}
    print(f"the default job's device, threads {args.threads}, torch {torch.__version__}; ms per optimiser step, "
          f"median of {args.repeats} interleaved repeats of {args.inner} steps")
    print(f"{'network':>8} | {'tensors':>7} | {'parameters':>10} | {'PyroOptim':>9} | {'GroupedOptim':>12} | "
          f"{'ratio':>5}")
    for architecture in args.architectures:
        trainer = Trainer(load_config(None, {"training.checkpoint_every": 0, "model.architecture": architecture}),
                          None, progress=False)
        trainer.step()  # registers the parameters in the param store
        params = set(trainer.model.parameters())
        device = next(iter(params)).device
        for p in params:
            p.grad = torch.randn_like(p) * 1e-3
        grouped = trainer.optimizer  # the job's: a GroupedOptim of its [optimizer] settings
        optimizers = {"PyroOptim": PyroOptim(grouped.pt_optim_constructor, grouped.pt_optim_args),
                      "GroupedOptim": GroupedOptim(grouped.pt_optim_constructor, grouped.pt_optim_args)}
        calls = {name: (lambda optimizer=optimizer: optimizer(params)) for name, optimizer in optimizers.items()}
        ms = interleaved_median_ms(calls, args.repeats, args.warmup, args.inner, device=device)
        results[architecture] = ms
        print(f"{architecture:>8} | {len(params):>7} | {sum(p.numel() for p in params):>10,} | "
              f"{ms['PyroOptim']:9.3f} | {ms['GroupedOptim']:12.3f} | {ms['GroupedOptim'] / ms['PyroOptim']:5.2f}")
    return results


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--architectures", nargs="+", choices=["mlp", "conv"], default=["mlp", "conv"])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--inner", type=int, default=5, help="optimiser steps per timed repeat")
    parser.add_argument("--threads", type=int, default=1)
    return parser


if __name__ == "__main__":
    main(make_parser().parse_args())

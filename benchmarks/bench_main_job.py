# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Time the step of the default ``pyro-hfvae train`` job against the floor that its networks set:
how fast could any training step of this model be on this machine?

Three steps on the same model (the default configuration's ``ConvHFVAE``: MLP networks, a
Concrete(3) and a Normal(10) latent, batch 64 of procedural dSprites by default: the default job's
batch when its 2x goal was set), interleaved so that machine noise hits each alike:

  trainer      ``Trainer.step()`` of the default job: HFVAELoss (pairwise tables, structure
               cache), the gradients' finiteness check, fused Adam
  plain_torch  a hand-written PyTorch step of the same networks without anything HFVAE adds:
               reparameterised samples, the Bernoulli log-likelihood, the Normal's KL in closed
               form and the Concrete's log-density ratio, backward, the same fused Adam
  networks     the networks' forward and backward passes alone (no optimiser): what is left
               when the objective and the update cost nothing

``plain_torch`` computes a cheaper objective than the job's (no total-correlation terms), so it
is a lower bound on the job's step, not an alternative to it. The ratios say how much of the
step is the library's and how much the networks'.

    python benchmarks/bench_main_job.py --repeats 30
"""
import argparse

import pyro
import torch
from _timing import interleaved_median_ms

from pyro_hfvae.training.config import load_config
from pyro_hfvae.training.trainer import Trainer

#: images/s of the default job measured before the fast-path work (docs/performance.rst): 37.3 ms per step
BEFORE_MS_PER_STEP = 37.3


def plain_step(model, optimizer, x: torch.Tensor, dataset_size: int) -> None:
    """One step of the networks' ELBO written by hand (no pairwise tables, no Pyro)."""
    logits, loc, scale = model._posterior_params(x)
    y = pyro.distributions.RelaxedOneHotCategorical(model.temperature, logits=logits)
    y_value = y.rsample()
    z = loc + scale * torch.randn_like(loc)
    prior_y = pyro.distributions.RelaxedOneHotCategorical(model.temperature, logits=torch.zeros_like(logits))
    log_ratio_y = y.log_prob(y_value) - prior_y.log_prob(y_value)
    kl_z = 0.5 * (scale ** 2 + loc ** 2 - 1.0).sum(-1) - scale.log().sum(-1)
    reconstruction = torch.nn.functional.binary_cross_entropy_with_logits(
        model._logits(y_value, z), x, reduction="none").flatten(1).sum(-1)
    loss = (reconstruction + kl_z + log_ratio_y).mean() * dataset_size
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def networks_step(model, x: torch.Tensor) -> None:
    """The networks' forward and backward passes alone."""
    logits, loc, scale = model._posterior_params(x)
    out = model._logits(logits.softmax(-1), loc + scale)
    out.sum().backward()
    for parameter in model.parameters():
        parameter.grad = None


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    trainer = Trainer(load_config(None, {"training.checkpoint_every": 0, "training.batch_size": args.batch_size}),
                      None, progress=False)
    model = trainer.model
    batch = trainer.observations(trainer.sampler.next()[:trainer.config["training"]["batch_size"]])
    # The same networks' copy for the hand-written steps, so that the trainer's parameters are its own.
    plain = type(model)(image_shape=model.image_shape, num_classes=model.num_classes, style_dim=model.style_dim,
                        architecture="mlp", hidden_dim=trainer.config["model"]["hidden_dim"])
    plain.load_state_dict(model.state_dict())
    optimizer = torch.optim.Adam(plain.parameters(), lr=1e-3, fused=True)
    steps = {
        "trainer": trainer.step,
        "plain_torch": lambda: plain_step(plain, optimizer, batch, trainer.dataset_size),
        "networks": lambda: networks_step(plain, batch),
    }
    ms = interleaved_median_ms(steps, args.repeats, args.warmup, args.inner, device=trainer.device)
    batch_size = trainer.config["training"]["batch_size"]
    print(f"default job, batch {batch_size}, threads {args.threads}, torch {torch.__version__}; "
          f"median of {args.repeats} interleaved repeats of {args.inner} steps")
    print(f"{'step':>12} | {'ms/step':>8} | {'images/s':>8} | {'vs trainer':>10}")
    for name, value in ms.items():
        print(f"{name:>12} | {value:8.1f} | {batch_size * 1000 / value:8.0f} | {value / ms['trainer']:10.2f}")
    goal = BEFORE_MS_PER_STEP / 2
    print(f"the 2x goal is {goal:.1f} ms per step on a quiet machine ({BEFORE_MS_PER_STEP} ms before); here "
          f"the hand-written step takes {ms['plain_torch'] / ms['trainer']:.2f} of the trainer's")
    return ms


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--inner", type=int, default=5, help="steps per timed repeat")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64,
                        help="the default job's batch when the 2x goal was set (it is 256 now)")
    return parser


if __name__ == "__main__":
    main(make_parser().parse_args())

"""
Time one SVI step of HFVAELoss against Pyro's Trace_ELBO and hand-written PyTorch
objectives on the same dSprites-sized conv networks (SPEC section 7), side by side.

Methods (all on the same ConvHFVAE networks, Concrete(3) + Normal(10) latents, Adam):
  torch_elbo   plain PyTorch ELBO (reparameterised, sampled KL)
  torch_hfvae  plain PyTorch HFVAE objective (pairwise tables, stratified weights)
  trace_elbo   Pyro SVI with Trace_ELBO
  hfvae_loss   Pyro SVI with pyro_hfvae.HFVAELoss(alpha=1, beta=4, gamma=3)

Runs are interleaved round-robin so that machine noise hits every method alike;
the table reports the median ms/step and ratios measured in the same run.

    python benchmarks/bench_hfvae_step.py --batch-sizes 64 256 --repeats 5
    python benchmarks/bench_hfvae_step.py --device cuda --batch-sizes 256 1024 4096
"""

import argparse
import math
import statistics
import time

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO

from pyro_hfvae import HFVAELoss
from pyro_hfvae.models.conv_hfvae import ConvHFVAE

ALPHA, BETA, GAMMA = 1.0, 4.0, 3.0
DATASET_SIZE = 737_280


def _posterior_samples(vae, x):
    logits, loc, scale = vae._posterior_params(x)
    q_y = dist.RelaxedOneHotCategorical(vae.temperature, logits=logits)
    y = q_y.rsample()
    z = loc + scale * torch.randn_like(loc)
    return logits, loc, scale, q_y, y, z


def _log_priors(vae, y, z):
    uniform = y.new_zeros(vae.num_classes)
    log_py = dist.RelaxedOneHotCategorical(vae.temperature, logits=uniform).log_prob(y)
    log_pz_d = dist.Normal(0.0, 1.0).log_prob(z)
    return log_py, log_pz_d


def torch_elbo_loss(vae, x):
    _, loc, scale, q_y, y, z = _posterior_samples(vae, x)
    log_px = dist.Bernoulli(logits=vae._logits(y, z), validate_args=False).log_prob(x).sum((1, 2, 3))
    log_py, log_pz_d = _log_priors(vae, y, z)
    log_q = q_y.log_prob(y) + dist.Normal(loc, scale).log_prob(z).sum(-1)
    return -(DATASET_SIZE / x.size(0)) * (log_px + log_py + log_pz_d.sum(-1) - log_q).sum()


def torch_hfvae_loss(vae, x):
    logits, loc, scale, _, y, z = _posterior_samples(vae, x)
    batch = x.size(0)
    log_px = dist.Bernoulli(logits=vae._logits(y, z), validate_args=False).log_prob(x).sum((1, 2, 3))
    log_w = torch.full((batch, batch), math.log((DATASET_SIZE - 1) / (DATASET_SIZE * (batch - 1))), device=x.device)
    log_w.fill_diagonal_(-math.log(DATASET_SIZE))
    # [b, b'] tables: sample of b under the posterior of b'.
    q_y = dist.RelaxedOneHotCategorical(vae.temperature, logits=logits.unsqueeze(0)).log_prob(y.unsqueeze(1))
    q_z = dist.Normal(loc.unsqueeze(0), scale.unsqueeze(0)).log_prob(z.unsqueeze(1))
    q_z_joint = q_z.sum(-1)
    log_q = q_y.diagonal() + q_z_joint.diagonal()
    lqh = torch.logsumexp(q_y + q_z_joint + log_w, 1)
    lqh_y = torch.logsumexp(q_y + log_w, 1)
    lqh_z = torch.logsumexp(q_z_joint + log_w, 1)
    lqh_zd = torch.logsumexp(q_z + log_w.unsqueeze(-1), 1)
    log_py, log_pz_d = _log_priors(vae, y, z)
    elbo = (
        log_px
        - ALPHA * (log_q - lqh)
        - BETA * (lqh - lqh_y - lqh_z)
        - GAMMA * (lqh_z - lqh_zd.sum(-1))
        - (lqh_y - log_py)
        - (lqh_zd - log_pz_d).sum(-1)
    )
    return -(DATASET_SIZE / batch) * elbo.sum()


def make_torch_step(loss_fn, vae, x, lr):
    optimizer = torch.optim.Adam(vae.parameters(), lr=lr)

    def step():
        optimizer.zero_grad()
        loss = loss_fn(vae, x)
        loss.backward()
        optimizer.step()

    return step


def make_pyro_step(loss, vae, x, idx, lr):
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": lr}), loss=loss)

    def step():
        svi.step(x, idx, DATASET_SIZE)

    return step


def time_methods(steps: dict, repeats: int, warmup: int, device: torch.device) -> dict:
    for step in steps.values():
        for _ in range(warmup):
            step()
    timings = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            timings[name].append(1000 * (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in timings.items()}


def main(args):
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    pyro.enable_validation(False)  # as in production training loops
    rows = []
    for batch in args.batch_sizes:
        pyro.clear_param_store()
        torch.manual_seed(0)
        x = (torch.rand(batch, 1, 64, 64, device=device) < 0.05).float()
        idx = torch.arange(batch, device=device)
        nets = {name: ConvHFVAE().to(device) for name in ("torch_elbo", "torch_hfvae", "trace_elbo", "hfvae_loss")}
        steps = {
            "torch_elbo": make_torch_step(torch_elbo_loss, nets["torch_elbo"], x, args.lr),
            "torch_hfvae": make_torch_step(torch_hfvae_loss, nets["torch_hfvae"], x, args.lr),
            "trace_elbo": make_pyro_step(Trace_ELBO(), nets["trace_elbo"], x, idx, args.lr),
            "hfvae_loss": make_pyro_step(HFVAELoss(ALPHA, BETA, GAMMA), nets["hfvae_loss"], x, idx, args.lr),
        }
        # Each Pyro step registers its own module: give them distinct names in the param store.
        for name in ("trace_elbo", "hfvae_loss"):
            net = nets[name]
            net.model = _renamed(net.model, name)
            net.guide = _renamed(net.guide, name)
        ms = time_methods(steps, args.repeats, args.warmup, device)
        rows.append((batch, ms))
    print(
        f"device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
        f"threads: {torch.get_num_threads()}, torch {torch.__version__}, pyro {pyro.__version__}"
    )
    header = f"{'batch':>6} | {'torch_elbo':>10} | {'torch_hfvae':>11} | {'trace_elbo':>10} | {'hfvae_loss':>10} |"
    header += " hfvae/torch_hfvae | hfvae/trace_elbo | hfvae/torch_elbo"
    print(header)
    print("-" * len(header))
    for batch, ms in rows:
        print(
            f"{batch:>6} | {ms['torch_elbo']:>10.1f} | {ms['torch_hfvae']:>11.1f} | {ms['trace_elbo']:>10.1f} | "
            f"{ms['hfvae_loss']:>10.1f} | {ms['hfvae_loss'] / ms['torch_hfvae']:>17.2f} | "
            f"{ms['hfvae_loss'] / ms['trace_elbo']:>16.2f} | {ms['hfvae_loss'] / ms['torch_elbo']:>16.2f}"
        )
    print("(ms per SVI step, median of interleaved repeats)")
    return rows


def _renamed(fn, prefix):
    # pyro.module("hfvae", ...) inside ConvHFVAE: keep the two Pyro runs' params apart.
    def wrapped(*args, **kwargs):
        with pyro.poutine.scope(prefix=prefix):
            return fn(*args, **kwargs)

    return wrapped


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    main(parser.parse_args())

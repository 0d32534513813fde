"""
Time one training step of HFVAELoss against Pyro's Trace_ELBO, a naive hand-written
PyTorch beta-TCVAE step that materialises the B x B x D tables, and peer libraries where
installed (pythae's BetaTCVAE), all on the same networks and the same data, side by side.

The objective is beta-TCVAE's (Chen et al. 2018) with exact minibatch-stratified weights:
one Normal site of ``--latent`` variables, mutual information weight 1, total correlation
weight 6, dimension-wise KL weight 1 (``HFVAELoss(alpha=1, beta=1, gamma=6)``: one group, so
its within-group TC is beta-TCVAE's TC). HFVAELoss is timed with each way of building the
pairwise tables: ``hfvae_loss`` the generic path (``kernel="generic"``, Distribution.log_prob
under autograd, the default), ``hfvae_fused`` the eager fused kernels, ``hfvae_jit``
JitHFVAELoss (torch.compile'd kernels; compiled during the warm-up steps). ``hit_loss`` is
:class:`~pyro_hfvae.HITLoss` with the weight 6 on the one site (a beta-VAE, analytic KL), to time
its per-step overhead. Networks:

  tiny  one linear layer each way (4096 -> 2D, D -> 4096): the step is the objective's own
        work and the library's per-step Python overhead, as a GPU step of small networks is
  mlp   4096-256-256-2D encoder and D-256-256-4096 decoder

Methods are run round-robin (interleaved) so that machine noise hits each alike; the table
reports the median ms per step and ratios measured in the same run.

    python benchmarks/bench_step.py --net tiny --batch-sizes 64 256 1024 4096
    python benchmarks/bench_step.py --net tiny --latent 20 --batch-sizes 16384 --methods hfvae_jit --repeats 1
    python benchmarks/bench_step.py --net mlp --batch-sizes 1024
    python benchmarks/bench_step.py --device cuda --batch-sizes 256 1024 4096 16384 --json out.json
"""

import argparse
import importlib.util
import json
import math

import pyro
import pyro.distributions as dist
import torch
from _timing import interleaved_median_ms
from pyro.infer import SVI, Trace_ELBO
from torch import nn

from pyro_hfvae import HFVAELoss, HITLoss
from pyro_hfvae.infer import JitHFVAELoss

INPUT_DIM = 4096
DATASET_SIZE = 737_280
TC_WEIGHT = 6.0


def make_networks(net: str, latent: int) -> tuple[nn.Module, nn.Module]:
    if net == "tiny":
        return nn.Linear(INPUT_DIM, 2 * latent), nn.Linear(latent, INPUT_DIM)
    if net == "mlp":
        encoder = nn.Sequential(nn.Linear(INPUT_DIM, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                                nn.Linear(256, 2 * latent))
        decoder = nn.Sequential(nn.Linear(latent, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                                nn.Linear(256, INPUT_DIM))
        return encoder, decoder
    raise ValueError(f"expected --net tiny or mlp but got {net!r}")


def _posterior(encoder: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    loc, log_scale = encoder(x).chunk(2, -1)
    return loc, log_scale.exp()


def pyro_step(loss, encoder, decoder, x, lr, name):
    latent = decoder.in_features if isinstance(decoder, nn.Linear) else decoder[0].in_features

    def model(x, idx):
        pyro.module(f"{name}_decoder", decoder)
        with pyro.plate("data", size=DATASET_SIZE, subsample=idx):
            z = pyro.sample("z", dist.Normal(x.new_zeros(latent), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=decoder(z), validate_args=False).to_event(1), obs=x)

    def guide(x, idx):
        pyro.module(f"{name}_encoder", encoder)
        with pyro.plate("data", size=DATASET_SIZE, subsample=idx):
            loc, scale = _posterior(encoder, x)
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    svi = SVI(model, guide, pyro.optim.Adam({"lr": lr}), loss=loss)
    idx = torch.arange(x.size(0), device=x.device)
    return lambda: svi.step(x, idx)


def naive_btcvae_loss(encoder, decoder, x):
    """beta-TCVAE with the exact stratified weights, materialising the (B, B, D) table."""
    loc, scale = _posterior(encoder, x)
    z = loc + scale * torch.randn_like(loc)
    batch = x.size(0)
    log_px = dist.Bernoulli(logits=decoder(z), validate_args=False).log_prob(x).sum(-1)
    log_w = torch.full((batch, batch), math.log((DATASET_SIZE - 1) / (DATASET_SIZE * (batch - 1))), device=x.device)
    log_w.fill_diagonal_(-math.log(DATASET_SIZE))
    table = dist.Normal(loc.unsqueeze(0), scale.unsqueeze(0)).log_prob(z.unsqueeze(1))  # [b, b', d]
    log_q = table.diagonal().sum(0)
    log_qz = torch.logsumexp(table.sum(-1) + log_w, 1)
    log_qz_d = torch.logsumexp(table + log_w.unsqueeze(-1), 1)
    log_pz_d = dist.Normal(0.0, 1.0).log_prob(z)
    elbo = log_px - (log_q - log_qz) - TC_WEIGHT * (log_qz - log_qz_d.sum(-1)) - (log_qz_d - log_pz_d).sum(-1)
    return -(DATASET_SIZE / batch) * elbo.sum()


def torch_step(loss_fn, encoder, decoder, x, lr):
    optimizer = torch.optim.Adam(list(encoder.parameters()) + list(decoder.parameters()), lr=lr)

    def step():
        optimizer.zero_grad()
        loss_fn(encoder, decoder, x).backward()
        optimizer.step()

    return step


def pythae_step(encoder, decoder, x, lr, latent):
    """pythae's BetaTCVAE (minibatch-stratified sampling) on the same networks."""
    from pythae.models import BetaTCVAE, BetaTCVAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.net = encoder

        def forward(self, x):
            loc, log_scale = self.net(x).chunk(2, -1)
            return ModelOutput(embedding=loc, log_covariance=2 * log_scale)

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.net = decoder

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z)))

    config = BetaTCVAEConfig(input_dim=(INPUT_DIM,), latent_dim=latent, reconstruction_loss="bce",
                             alpha=1.0, beta=TC_WEIGHT, gamma=1.0, use_mss=True)
    model = BetaTCVAE(config, encoder=Encoder(), decoder=Decoder()).to(x.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    inputs = {"data": x}

    def step():
        optimizer.zero_grad()
        model(inputs, dataset_size=DATASET_SIZE).loss.backward()
        optimizer.step()

    return step


def build_steps(args, batch: int, device: torch.device) -> dict:
    torch.manual_seed(0)
    x = (torch.rand(batch, INPUT_DIM, device=device) < 0.05).float()
    steps = {}
    for method in args.methods:
        encoder, decoder = (net.to(device) for net in make_networks(args.net, args.latent))
        if method == "trace_elbo":
            steps[method] = pyro_step(Trace_ELBO(), encoder, decoder, x, args.lr, method)
        elif method == "hfvae_loss":
            loss = HFVAELoss(1.0, 1.0, TC_WEIGHT, kernel="generic")
            steps[method] = pyro_step(loss, encoder, decoder, x, args.lr, method)
        elif method == "hfvae_fused":
            steps[method] = pyro_step(HFVAELoss(1.0, 1.0, TC_WEIGHT, kernel="fused"), encoder, decoder, x, args.lr,
                                      method)
        elif method == "hfvae_jit":
            steps[method] = pyro_step(JitHFVAELoss(1.0, 1.0, TC_WEIGHT), encoder, decoder, x, args.lr, method)
        elif method == "hit_loss":
            steps[method] = pyro_step(HITLoss({"z": TC_WEIGHT}), encoder, decoder, x, args.lr, method)
        elif method == "naive_torch":
            steps[method] = torch_step(naive_btcvae_loss, encoder, decoder, x, args.lr)
        elif method == "pythae":
            if importlib.util.find_spec("pythae") is None:
                print("pythae is not installed: skipping its beta-TCVAE")
                continue
            steps[method] = pythae_step(encoder, decoder, x, args.lr, args.latent)
        else:
            raise ValueError(f"expected a method in {METHODS} but got {method!r}")
    return steps


METHODS = ("trace_elbo", "hfvae_loss", "hfvae_fused", "hfvae_jit", "hit_loss", "naive_torch", "pythae")


def main(args):
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    pyro.enable_validation(False)  # as in production training loops
    results = []
    for batch in args.batch_sizes:
        pyro.clear_param_store()
        ms = interleaved_median_ms(build_steps(args, batch, device), args.repeats, args.warmup, device=device)
        results.append({"batch": batch, "ms": ms})
    print(f"net: {args.net}, latent: {args.latent}, device: {device} "
          f"({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
          f"threads: {torch.get_num_threads()}, torch {torch.__version__}, pyro {pyro.__version__}")
    names = list(results[0]["ms"])
    ours = [n for n in names if n.startswith("hfvae") or n == "hit_loss"]
    others = [n for n in names if n not in ours]
    ratios = [(a, b) for a in ours for b in others if a != "hit_loss" or b == "trace_elbo"]
    header = f"{'batch':>6} | " + " | ".join(f"{n:>11}" for n in names)
    header += "".join(f" | {a.removeprefix('hfvae_')}/{b}" for a, b in ratios)
    print(header)
    print("-" * len(header))
    for row in results:
        ms = row["ms"]
        line = f"{row['batch']:>6} | " + " | ".join(f"{ms[n]:>11.1f}" for n in names)
        line += "".join(f" | {ms[a] / ms[b]:>{len(a.removeprefix('hfvae_') + b) + 1}.2f}" for a, b in ratios)
        print(line)
    print("(ms per step, median of interleaved repeats)")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"net": args.net, "latent": args.latent, "device": str(device),
                       "threads": torch.get_num_threads(), "results": results}, file, indent=1)
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--net", choices=["tiny", "mlp"], default="tiny")
    parser.add_argument("--latent", type=int, default=10)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--json", default=None, help="also write the timings to this JSON file")
    return parser


if __name__ == "__main__":
    main(build_parser().parse_args())

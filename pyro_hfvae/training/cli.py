# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
The ``pyro-hfvae`` command line: train, evaluate and plot runs.

::

    pyro-hfvae train --out runs/dsprites              # the embedded default: HFVAE on procedural dSprites
    pyro-hfvae train --config hfvae_dsprites --device cuda --out runs/paper
    pyro-hfvae train --resume runs/dsprites --steps 8000
    pyro-hfvae evaluate runs/dsprites --preset full
    pyro-hfvae plot runs/dsprites
    pyro-hfvae compare runs/a runs/b --out comparison.png
    pyro-hfvae configs

Under ``torchrun`` (data-parallel training, see :doc:`/scaling_out`)::

    torchrun --standalone --nproc_per_node=2 -m pyro_hfvae.training train --out runs/ddp --batch-size 128
"""
import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pyro_hfvae.training.config import COMMAND_LINE_KEYS, ConfigError, load_config, shipped_configs

logger = logging.getLogger(__name__)

__all__ = [
    "build_parser",
    "main",
]

_FLAG_TYPES = {
    "steps": int, "batch_size": int, "lr": float, "device": str, "seed": int, "num_threads": int,
    "alpha": float, "beta": float, "gamma": float, "log_every": int, "eval_every": int,
    "checkpoint_every": int, "data": str, "subset": int, "model": str, "objective": str, "preset": str,
}

_FLAG_HELP = {
    "data": "data set (dsprites, mnist, digits, fashion_mnist, shapes3d)",
    "subset": "train on a fixed random subset of this many items (0: all)",
    "model": "model (conv_hfvae, vlae, hierarchical_vae, ladder_vae)",
    "objective": "objective (hfvae, hit)",
    "device": "cpu, cuda, cuda:N or auto",
    "num_threads": "torch CPU threads (default 1; 0: torch's default, e.g. for conv models on an idle CPU)",
    "preset": "evaluation preset: auto, fast, full or none",
}


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (exit status 2), like the command's other errors."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (each sets the config key shown; --set reaches every key)")
    for flag, key in COMMAND_LINE_KEYS.items():
        help_text = _FLAG_HELP.get(flag, "")
        group.add_argument("--" + flag.replace("_", "-"), dest=flag, type=_FLAG_TYPES[flag], default=None,
                           metavar=flag.upper(), help=f"{help_text} [{key}]".strip())
    group.add_argument("--set", dest="settings", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="any config setting, value in TOML syntax (repeatable), e.g. --set model.style_dim=6")


def _overrides(args: argparse.Namespace) -> dict:
    from pyro_hfvae.training.config import parse_override

    overrides = {COMMAND_LINE_KEYS[flag]: getattr(args, flag) for flag in COMMAND_LINE_KEYS
                 if getattr(args, flag, None) is not None}
    for item in args.settings:
        key, value = parse_override(item)
        overrides[key] = value
    return overrides


def build_parser() -> argparse.ArgumentParser:
    """
    The argument parser of ``pyro-hfvae``.

    :rtype: argparse.ArgumentParser
    """
    parser = _Parser(prog="pyro-hfvae", description="Train, evaluate and plot structured and "
                                     "hierarchical disentangled representation models (pyro_hfvae).")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress messages")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = commands.add_parser("train", help="train a model (or continue a run)",
                                description="Train a model from a configuration, or continue a run with --resume.")
    source = train.add_mutually_exclusive_group()
    source.add_argument("--config", help="a TOML file or a shipped configuration name (see pyro-hfvae configs); "
                                         "default: HFVAE on procedural dSprites, a few minutes on a CPU")
    source.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its checkpoint")
    train.add_argument("--out", metavar="RUN_DIR", help="the new run directory")
    train.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.add_argument("--no-report", action="store_true", help="skip the final evaluation, figures and summary")
    _add_setting_flags(train)

    evaluate = commands.add_parser("evaluate", help="evaluate a run (writes metrics.json and the summary)")
    evaluate.add_argument("run_dir", metavar="RUN_DIR")
    evaluate.add_argument("--preset", choices=("auto", "fast", "full", "none"), default=None,
                          help="evaluation preset (default: the run's)")
    evaluate.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto")

    plot = commands.add_parser("plot", help="draw the figures of one or more runs",
                               description="Draw every figure of each run into RUN_DIR/figures and update its "
                                           "summary; with several runs also the MIG / MIG-sup comparison.")
    plot.add_argument("run_dirs", metavar="RUN_DIR", nargs="+")
    plot.add_argument("--out", default="comparison.png", help="the comparison figure (several runs)")
    plot.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto")

    compare = commands.add_parser("compare", help="MIG / MIG-sup scatter plot of evaluated runs")
    compare.add_argument("run_dirs", metavar="RUN_DIR", nargs="+")
    compare.add_argument("--out", default="comparison.png", help="the figure to write")

    commands.add_parser("configs", help="list the shipped configurations")
    return parser


def _report(trainer, preset: str | None = None) -> None:
    from pyro_hfvae.training.run_figures import plot_run
    from pyro_hfvae.training.run_summary import write_summary

    print(f"evaluating ({trainer.evaluation_preset(preset)} preset) ...", flush=True)
    result = trainer.evaluate(preset)
    for name, value in result["metrics"].items():
        print(f"  {name:32s} {value:.4f}")
    information = result["information"]
    print(f"  I(x; z) {information['total']:.3f} nats; per group: "
          + ", ".join(f"{k} {v:.3f}" for k, v in information["groups"].items()))
    figures = plot_run(trainer, evaluation=result)
    summary = write_summary(trainer.run_dir)
    print(f"figures: {', '.join(sorted(figures))}\nsummary: {summary}")


def _rank() -> int:
    """This process's rank under torchrun (0 in a single process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def _train(args: argparse.Namespace) -> int:
    from pyro_hfvae.training.trainer import Trainer

    # Under torchrun every rank trains; only rank 0 prints, writes the run directory and reports.
    say = print if _rank() == 0 else (lambda *a, **k: None)

    overrides = _overrides(args)
    if args.resume:
        if args.out and Path(args.out) != Path(args.resume):
            raise ConfigError("expected --out to be left out with --resume (the run continues in its own directory)")
        if args.overwrite:
            raise ConfigError("expected --overwrite to be left out with --resume (a resumed run keeps its checkpoint); "
                              "to start the run anew use --out RUN_DIR --overwrite")
        trainer = Trainer.from_run(args.resume, overrides, progress=not args.no_progress)
        say(f"resuming {args.resume} at step {trainer.step_count} of {trainer.config['training']['steps']}")
    else:
        if not args.out:
            raise ConfigError("expected --out RUN_DIR (where the run is written) or --resume RUN_DIR")
        config = load_config(args.config, overrides)
        trainer = Trainer(config, args.out, progress=not args.no_progress, overwrite=args.overwrite)
        model, objective = config["model"]["name"], config["objective"]["name"]
        ranks = "" if trainer._parallel is None else f" x {trainer._parallel.world_size} processes"
        say(f"training {model} with the {objective} objective on {config['data']['name']} "
            f"({trainer.dataset_size} items) on {trainer.device}{ranks} for {config['training']['steps']} steps; "
            f"run directory {trainer.run_dir}")
    status = trainer.train()
    rank = _rank()
    _leave_process_group()
    if status == "interrupted":
        say(f"interrupted at step {trainer.step_count}; checkpoint written. Continue with: "
            f"pyro-hfvae train --resume {trainer.run_dir}")
        return 130
    if not args.no_report and rank == 0:
        _report(trainer)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from pyro_hfvae.training.run_summary import write_summary
    from pyro_hfvae.training.trainer import Trainer

    overrides = {"training.device": args.device} if args.device else {}
    trainer = Trainer.from_run(args.run_dir, overrides, read_only=True)
    print(f"evaluating {args.run_dir} at step {trainer.step_count} ({trainer.evaluation_preset(args.preset)} preset)")
    result = trainer.evaluate(args.preset)
    for name, value in result["metrics"].items():
        print(f"  {name:32s} {value:.4f}")
    print(f"  I(x; z) {result['information']['total']:.3f} nats")
    print(f"summary: {write_summary(args.run_dir)}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from pyro_hfvae.training.run_figures import plot_comparison, plot_run
    from pyro_hfvae.training.run_summary import write_summary
    from pyro_hfvae.training.trainer import Trainer

    overrides = {"training.device": args.device} if args.device else {}
    for run_dir in args.run_dirs:
        trainer = Trainer.from_run(run_dir, overrides, read_only=True)
        figures = plot_run(trainer)
        write_summary(run_dir)
        print(f"{run_dir}: {', '.join(str(p) for p in figures.values())}")
    if len(args.run_dirs) > 1:
        print(f"comparison: {plot_comparison(args.run_dirs, args.out)}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from pyro_hfvae.training.run_figures import plot_comparison

    print(f"comparison: {plot_comparison(args.run_dirs, args.out)}")
    return 0


def _configs(args: argparse.Namespace) -> int:
    for name, path in shipped_configs().items():
        with open(path, encoding="utf-8") as file:
            first = file.readline().lstrip("# ").strip()
        print(f"{name:20s} {first}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """
    Runs ``pyro-hfvae`` with ``argv`` (default: the process's arguments).

    :param argv: the arguments, without the program name.
    :returns: the exit status: 0 on success, 1 on an error in the input, in the file system or
        a diverged run (printed as one line: configuration errors name the key and the allowed
        values; under ``torchrun`` by every rank, ranks other than 0 naming themselves), 2 on a
        malformed command line, 130 when training was interrupted (after writing a checkpoint).
    :rtype: int
    """
    from pyro_hfvae.infer.terms_elbo import NonFiniteLossError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    command = {"train": _train, "evaluate": _evaluate, "plot": _plot, "compare": _compare, "configs": _configs}
    try:
        return command[args.command](args)
    except (ValueError, NonFiniteLossError, OSError) as error:
        # One line: the library's messages are; an OSError or a third-party message may hold several.
        message = " ".join(str(error).split()) or type(error).__name__
        rank = _rank()
        print(f"pyro-hfvae {args.command}{f' (rank {rank})' if rank else ''}: error: {message}", file=sys.stderr)
        if isinstance(error, NonFiniteLossError) and _process_group():
            # Every rank raised this same diagnosis (the ranks agree on divergence): let all of them print it
            # before torchrun, seeing the first one exit, stops the others.
            _process_group().barrier()
        return 1
    finally:
        if _process_group():
            _process_group().destroy_process_group()


def _leave_process_group() -> None:
    """
    Under ``torchrun``, every rank meets the others and then destroys the process group: a rank
    that left while a peer still held its gloo connections could abort (SIGABRT) on exit.
    """
    if _process_group():
        _process_group().barrier()
        _process_group().destroy_process_group()


def _process_group():
    """:mod:`torch.distributed` if a process group is initialised, else ``None``."""
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


if __name__ == "__main__":
    sys.exit(main())

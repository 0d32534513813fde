# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
A short human-readable report of a run directory: ``summary.md`` (and ``summary.html``)
showing the setting, how training went, the metrics and the information per latent,
next to the figures.
"""
import html
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

from pyro_hfvae._format import format_number
from pyro_hfvae.util import atomic_file

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

logger = logging.getLogger(__name__)

__all__ = [
    "SUMMARY_FILE",
    "write_summary",
]

#: The Markdown summary's file name (the HTML one is ``summary.html``).
SUMMARY_FILE = "summary.md"

_METRIC_NOTES = {
    "mig": ("MIG", "per factor, gap in mutual information between the two most informative codes (higher is better)"),
    "mig_sup": ("MIG-sup", "per active code, gap between the two factors it informs most about"),
    "modularity": ("Modularity", "each code depends on a single factor"),
    "sap": ("SAP", "per factor, gap in predictiveness between the two best single codes"),
    "factor_vae_eval_accuracy": ("FactorVAE score", "majority-vote accuracy at naming the fixed factor"),
    "factor_vae_train_accuracy": ("FactorVAE training accuracy", "the same on the votes the classifier was fit to"),
    "factor_vae_num_active_dims": ("FactorVAE active codes", "codes with std >= 0.05, used by the score"),
    "dci_disentanglement": ("DCI disentanglement", "each code is important for one factor"),
    "dci_completeness": ("DCI completeness", "each factor is captured by one code"),
    "dci_informativeness_test": ("DCI informativeness", "test accuracy of gradient-boosted trees on the codes"),
    "beta_vae_eval_accuracy": ("beta-VAE score", "linear classification of the fixed factor"),
    "beta_vae_train_accuracy": ("beta-VAE training accuracy", "the same on the training votes"),
    "explicitness_test": ("Explicitness", "test AUC of linear classifiers on the codes"),
}

# HFVAE paper, Table 3 (dSprites, beta=4, gamma=3, 10 restarts).
_PAPER_DSPRITES_HFVAE = {"factor_vae_eval_accuracy": "0.63 ± 0.08", "dci_disentanglement": "0.39 ± 0.16"}

_FIGURES = [
    ("training_curves", "Terms of the objective over training (thin: logged values; thick: moving average)."),
    ("variable_information", "I(x; z_d) per latent variable, sorted; variables below the dotted line are pruned "
                             "(unused); the categorical (Concrete) variable is hatched (HFVAE paper, Fig. 4)."),
    ("latent_traversals", "Latent traversals, most informative variable first: each continuous row sweeps one "
                          "variable from -3 to 3; each categorical row sets one category for several images."),
    ("reconstructions", "Data, their reconstructions, and samples from the prior."),
    ("structure_graph", "The latent structure and the weights of the objective: total correlation between groups "
                        "(β) and within groups (γ)."),
    ("information_flow", "I(x; z_l) of each level at the end of each progressive stage (pro-VLAE, Fig. 5)."),
]


def _read_json(path: Path) -> Any:
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def _status(records: list[dict], steps: int) -> tuple[str, int, dict]:
    events = [r for r in records if "event" in r]
    logged = [r for r in records if "event" not in r]
    last = logged[-1] if logged else {}
    if events and events[-1]["step"] >= last.get("step", 0):
        event = events[-1]
        return f"{event['event']}: {event['message']}", event["step"], last
    step = last.get("step", 0)
    return ("completed" if step >= steps else f"stopped at step {step} of {steps}"), step, last


def _blocks(run_dir: Path) -> list[tuple]:
    from pyro_hfvae.training.run_figures import FIGURES_DIR
    from pyro_hfvae.training.trainer import CONFIG_FILE, LOG_FILE, METRICS_FILE, read_jsonl

    with open(run_dir / CONFIG_FILE, "rb") as file:
        config = tomllib.load(file)
    records = read_jsonl(run_dir / LOG_FILE)
    evaluation = _read_json(run_dir / METRICS_FILE)
    data, model, objective = config["data"], config["model"], config["objective"]
    training, optimizer = config["training"], config["optimizer"]
    status, step, last = _status(records, training["steps"])
    blocks: list[tuple] = [("h1", f"Run {run_dir.name}")]
    weights = ", ".join(f"{k}={objective[k]:g}" for k in ("alpha", "beta", "gamma", "default_beta") if k in objective)
    if objective.get("warmup_steps", 0) > 0:
        warmup_weights = ", ".join(f"{k} x {v:g}" for k, v in objective["warmup_betas"].items()) or "all x 1"
        weights += f"; first {objective['warmup_steps']} steps HITLoss with rates {warmup_weights}"
    subset = f" (a subset of {data['subset']} items)" if data.get("subset") else ""
    model_options = ", ".join(f"{k}={v}" for k, v in model.items() if k != "name")
    blocks.append(("p", f"**{objective['name']}** objective ({weights}) on **{data['name']}**{subset}, model "
                        f"**{model['name']}** ({model_options}); {optimizer['name']} lr={optimizer['lr']:g}, batch "
                        f"{training['batch_size']}, seed {training['seed']}."))
    seconds = last.get("seconds")
    timing = f" in {seconds / 60:.1f} min of training" if seconds else ""
    blocks.append(("p", f"Status: **{status}** after {step} of {training['steps']} steps{timing}."))
    if last:
        blocks.append(("h2", "Objective at the last logged step"))
        blocks.append(("p", "Nats per data point (averaged over the last batch): log_likelihood / distortion is the "
                            "reconstruction term; the others split the KL (rate) of the objective."))
        terms = [(k, v) for k, v in last.items() if k not in ("step", "seconds", "loss") and "/" not in k]
        blocks.append(("table", ["term", "value"], [[k, format_number(v)] for k, v in terms]))
    if evaluation is not None:
        metrics = evaluation.get("metrics", {})
        if metrics:
            paper = _PAPER_DSPRITES_HFVAE if data["name"] == "dsprites" and objective["name"] == "hfvae" else {}
            blocks.append(("h2", f"Disentanglement metrics ({evaluation['preset']} preset, step {evaluation['step']})"))
            headers = ["metric", "value", "meaning"] + (["HFVAE paper (Table 3)"] if paper else [])
            rows = []
            for key, value in metrics.items():
                name, note = _METRIC_NOTES.get(key, (key, ""))
                row = [name, format_number(value, count="num_" in key), note]
                rows.append(row + ([paper.get(key, "")] if paper else []))
            blocks.append(("table", headers, rows))
            if paper:
                blocks.append(("p", "The paper's values (10 restarts) come from its convolutional network trained "
                                    "much longer on a GPU: `pyro-hfvae train --config hfvae_dsprites --device cuda`."))
        from pyro_hfvae.metrics.information import PRUNED_NATS  # the metrics import scikit-learn: only here

        information = evaluation["information"]
        blocks.append(("h2", "Information I(x; z)"))
        ceiling = math.log(information["num_data"])
        variables = [v for values in information["variables"].values() for v in values]
        pruned = sum(v < PRUNED_NATS for v in variables)
        blocks.append(("p", f"Estimated with the exact aggregate posterior over {information['num_data']} training "
                            f"items, so every value is at most log N = {ceiling:.2f} nats. {pruned} of "
                            f"{len(variables)} variables carry less than {PRUNED_NATS} nats (pruned)."))
        collapsed = {k: v for k, v in information["groups"].items() if v < PRUNED_NATS}
        if collapsed:
            listing = ", ".join(f"{k} ({format_number(v, 3)} nats)" for k, v in collapsed.items())
            which = "this group" if len(collapsed) == 1 else "these groups"
            blocks.append(("p", f"**Collapsed:** {listing}: less than {PRUNED_NATS} nats each, so the posterior of "
                                f"{which} hardly depends on the input and the model does not use it. "
                                + _collapse_hint(objective)))
        rows = [[f"group {k}", format_number(v, 2)] for k, v in information["groups"].items()]
        rows += [[f"site {k}", format_number(v, 2)] for k, v in information["sites"].items()]
        rows.append(["all latents", format_number(information["total"], 2)])
        blocks.append(("table", ["latents", "I(x; z) [nats]"], rows))
        blocks += _hold_out_blocks(evaluation.get("hold_out"), data.get("hold_out"))
    blocks += _budget_blocks(config, step)
    figures = run_dir / FIGURES_DIR
    shown = [(name, caption) for name, caption in _FIGURES if (figures / f"{name}.png").is_file()]
    if shown:
        blocks.append(("h2", "Figures"))
        for name, caption in shown:
            blocks.append(("img", f"{FIGURES_DIR}/{name}.png", caption))
    blocks.append(("h2", "Next"))
    blocks.append(("code", f"pyro-hfvae train --resume {run_dir} --steps {2 * training['steps']}   # train longer\n"
                           f"pyro-hfvae evaluate {run_dir} --preset full   # disentanglement_lib protocol\n"
                           f"pyro-hfvae plot {run_dir}                     # redraw the figures"))
    return blocks


def _images(count: int) -> str:
    """``1.02M`` from a million up, else the count with thousands separators."""
    return f"{count / 1e6:.2f}M" if count >= 1_000_000 else f"{count:,}"


def _metric_title(name: str) -> str:
    """A metric's name in the tables; ``information/<group>`` is I(x; group)."""
    if name.startswith("information/"):
        return f"I(x; {name.partition('/')[2]}) [nats]"
    return _METRIC_NOTES.get(name, (name,))[0]


def _budget_blocks(config: dict, step: int) -> list[tuple]:
    """Where the run's images seen stand on the reference curve of its configuration (none if no curve matches)."""
    from pyro_hfvae.training.reference_runs import matching_reference

    reference = matching_reference(config)
    if reference is None or not reference["points"]:
        return []
    images = step * config["training"]["batch_size"]
    paper, size = reference["paper"], reference["dataset_size"]
    names = list(reference["points"][0]["metrics"])
    nearest = min(reference["points"], key=lambda point: abs(point["images"] - images))
    rows = []
    for point in reference["points"]:
        mark = " (nearest to this run)" if point is nearest else ""
        rows.append([f"{_images(point['images'])}{mark}"]
                    + [f"{format_number(mean, 3)} ± {format_number(sd, 3)}" for mean, sd in
                       (point["metrics"][name] for name in names)])
    rows.append([f"{_images(paper['images'])} (paper, Table 3)"] + [paper["metrics"].get(name, "") for name in names])
    headers = ["images seen"] + [_metric_title(name) for name in names]
    beyond = " (beyond the curve's end)" if images > reference["points"][-1]["images"] else ""
    return [("h2", "Where this budget stands"),
            ("p", f"This run saw {_images(images)} images{beyond}, {images / size:.2f} epochs of the {size:,} "
                  f"items; the paper-size configuration (`--config {paper['configuration']}`) trains on "
                  f"{_images(paper['images'])}. The same configuration as this run, trained "
                  f"longer on a CPU ({len(reference['seeds'])} seeds, mean ± sd; {reference['source']}):"),
            ("table", headers, rows)]


def _collapse_hint(objective: dict) -> str:
    """What to change when a group collapsed, for the run's objective."""
    if objective["name"] == "hfvae" and objective.get("concrete_scoring") == "relaxed":
        return ("If it holds a Concrete: scored with its relaxed density, a confident class costs tens of nats of "
                "dimension-wise KL, so the model keeps it uniform; `--set 'objective.concrete_scoring=\"argmax\"'` "
                "scores it by its argmax (the default run's setting), which kept the class group in use "
                "(docs/mnist_results.md). Otherwise lower the weights of its terms (beta, gamma) or train longer.")
    hint = "Lower the weights of its terms (beta, gamma; a per-site beta for HIT) or train longer."
    if objective["name"] == "hfvae" and not objective.get("warmup_steps"):
        hint += (" If it is a Concrete beside a continuous group: a warm-up that makes the continuous group's rate "
                 "costly first (`--set objective.warmup_steps=500 --set 'objective.warmup_betas={style = 64.0}'`) "
                 "put the digit into the Concrete on MNIST (docs/mnist_results.md).")
    return hint


def _hold_out_blocks(hold_out: dict | None, spec: Any) -> list[tuple]:
    """The held-out factor combinations against held-in items sharing part of them (none without a hold-out)."""
    if not hold_out:
        return []
    names = {"held_out": "held-out combinations", "held_in_neighbours": "held-in items sharing part of them"}
    rows = [[names[k], v["items"], format_number(v["elbo"], 2), format_number(v["reconstruction_error"], 2)]
            for k, v in hold_out.items()]
    gap = hold_out["held_in_neighbours"]["elbo"] - hold_out["held_out"]["elbo"]
    return [("h2", "Unseen factor combinations"),
            ("p", f"Training left out the combinations {spec}. The ELBO (one sample per item) and the squared "
                  f"reconstruction error (summed over an item's pixels) of held-out items, against held-in items "
                  f"that share a factor class with them; the held-out ELBO is {format_number(gap, 2)} nats lower."),
            ("table", ["items", "count", "ELBO [nats]", "reconstruction error"], rows)]


def _markdown(blocks: list[tuple]) -> str:
    lines = []
    for block in blocks:
        kind = block[0]
        if kind == "h1":
            lines += [f"# {block[1]}", ""]
        elif kind == "h2":
            lines += [f"## {block[1]}", ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "table":
            headers, rows = block[1], block[2]
            lines.append("| " + " | ".join(headers) + " |")
            lines.append("|" + "---|" * len(headers))
            lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
            lines.append("")
        elif kind == "img":
            lines += [f"![{Path(block[1]).stem}]({block[1]})", "", f"*{block[2]}*", ""]
        elif kind == "code":
            lines += ["```", block[1], "```", ""]
    return "\n".join(lines)


def _inline_html(text: str) -> str:
    """Markdown's ``**bold**`` and ```code``` spans as HTML."""
    code_spans = html.escape(text).split("`")
    out = []
    for i, span in enumerate(code_spans):
        if i % 2:
            out.append(f"<code>{span}</code>")
            continue
        parts = span.split("**")
        out.append("".join(f"<b>{part}</b>" if j % 2 else part for j, part in enumerate(parts)))
    return "".join(out)


def _html(blocks: list[tuple]) -> str:
    body = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2"):
            body.append(f"<{kind}>{html.escape(block[1])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{_inline_html(block[1])}</p>")
        elif kind == "table":
            head = "".join(f"<th>{html.escape(h)}</th>" for h in block[1])
            rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                           for row in block[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "img":
            body.append(f'<figure><img src="{html.escape(block[1])}" alt="{html.escape(Path(block[1]).stem)}">'
                        f"<figcaption>{html.escape(block[2])}</figcaption></figure>")
        elif kind == "code":
            body.append(f"<pre>{html.escape(block[1])}</pre>")
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em;line-height:1.4}"
             "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:0.2em 0.6em;"
             "text-align:left}img{max-width:100%}figcaption{font-style:italic;font-size:0.9em}"
             "pre{background:#f4f4f4;padding:0.6em}")
    title = html.escape(blocks[0][1])
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title><style>{style}</style>"
            f"</head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_summary(run_dir: str | os.PathLike, *, write_html: bool = True) -> Path:
    """
    Writes ``summary.md`` (and ``summary.html``) into a run directory, from its files:
    ``config.toml``, ``log.jsonl``, ``metrics.json`` (if evaluated) and ``figures/`` (if
    plotted). The summary states the setting and how training ended, tabulates the last
    terms of the objective, the disentanglement metrics (with the HFVAE paper's values for
    its dSprites setting) and I(x; z) per group and site, and shows the figures with
    captions.

    :param run_dir: the run directory.
    :param bool write_html: also write ``summary.html``.
    :returns: the path of ``summary.md``.
    :rtype: pathlib.Path
    """
    from pyro_hfvae.training.trainer import CONFIG_FILE

    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"expected a run directory with {CONFIG_FILE} but {run_dir} has none")
    blocks = _blocks(run_dir)
    path = run_dir / SUMMARY_FILE
    with atomic_file(path, "w") as file:
        file.write(_markdown(blocks))
    if write_html:
        with atomic_file(run_dir / "summary.html", "w") as file:
            file.write(_html(blocks))
    return path

# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Draws the overview figure of the documentation: the HFVAE objective's decomposition of
the KL term and the group tree (root -> groups -> variables) each term lives on.

Run it from anywhere; it rewrites ``docs/_static/overview/hfvae_objective.png``::

    python docs/make_overview_figure.py
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

from pyro_hfvae.util import atomic_file  # noqa: E402

OUTPUT = Path(__file__).resolve().parent / "_static" / "overview" / "hfvae_objective.png"

#: One colour per weight, shared by the equation and the tree.
COLORS = {"alpha": "#3b6fb6", "beta": "#e07b18", "gamma": "#2e8b57", "one": "#8a4fa3"}
PALE = {"alpha": "#dbe6f5", "beta": "#fbe6d1", "gamma": "#d7efe1", "one": "#eadcf0"}

#: The four terms: (key, weight label, name, formula per data point).
TERMS = (
    (
        "alpha",
        r"$\times\,\alpha$",
        "mutual information $I(x;z)$",
        r"$\log q(z|x) - \log \hat q(z)$",
    ),
    (
        "beta",
        r"$\times\,\beta$",
        "TC between groups",
        r"$[\log \hat q(z) - \sum_g \log \hat q(z_g)]$"
        "\n"
        r"$-\ [\log p(z) - \sum_g \log p(z_g)]$",
    ),
    (
        "gamma",
        r"$\times\,\gamma$",
        "TC within groups",
        r"$\sum_g [\log \hat q(z_g) - \sum_e \log \hat q(z_{ge})]$"
        "\n"
        r"$-\ [\log p(z_g) - \sum_e \log p(z_{ge})]$",
    ),
    (
        "one",
        r"$\times\,1$",
        "dimension-wise KL",
        r"$\sum_{g,e}\ \log \hat q(z_{ge}) - \log p(z_{ge})$",
    ),
)


def _box(ax, x, y, w, h, face, edge, lw=1.5, radius=0.012):
    ax.add_patch(
        FancyBboxPatch(
            (x, y),
            w,
            h,
            boxstyle=f"round,pad=0,rounding_size={radius}",
            facecolor=face,
            edgecolor=edge,
            linewidth=lw,
        )
    )


def _node(ax, x, y, text, face, edge, w=0.11, h=0.062, size=10):
    _box(ax, x - w / 2, y - h / 2, w, h, face, edge, lw=1.4, radius=0.01)
    ax.text(x, y, text, ha="center", va="center", fontsize=size)


def _edge(ax, start, end, color, lw=1.4, style="-"):
    ax.add_patch(
        FancyArrowPatch(
            start,
            end,
            arrowstyle=style,
            color=color,
            linewidth=lw,
            shrinkA=0,
            shrinkB=0,
            mutation_scale=12,
        )
    )


def draw() -> Figure:
    """The overview figure (1 row: the equation on top, the group tree below)."""
    figure = Figure(figsize=(12.0, 7.4), dpi=150)
    ax = figure.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")

    # The equation: E_x KL(q(z|x) || p(z)) = four weighted terms.
    ax.text(
        0.5,
        0.965,
        "The HFVAE objective: the KL term of the ELBO, split into four weighted parts",
        ha="center",
        va="center",
        fontsize=14,
        weight="bold",
    )
    ax.text(
        0.5,
        0.918,
        r"$\mathcal{L}(x) = \mathbb{E}_{q(z|x)}\,\left[\log p(x|z)\ -\ "
        r"(\alpha\,\cdot\, \mathrm{I} + \beta\,\cdot\, \mathrm{II} + \gamma\,\cdot\, \mathrm{III}"
        r" + 1\,\cdot\, \mathrm{IV})\right]$,   where  I + II + III + IV "
        r"$=\log q(z|x) - \log p(z)$",
        ha="center",
        va="center",
        fontsize=12,
    )
    width, gap, top, height = 0.228, 0.016, 0.885, 0.2
    left0 = (1 - 4 * width - 3 * gap) / 2
    for i, (key, weight, name, formula) in enumerate(TERMS):
        left = left0 + i * (width + gap)
        _box(ax, left, top - height, width, height, PALE[key], COLORS[key], lw=2)
        ax.text(
            left + width / 2,
            top - 0.028,
            f"{'I II III IV'.split()[i]}. {name}",
            ha="center",
            va="center",
            fontsize=10.5,
            weight="bold",
            color=COLORS[key],
        )
        ax.text(left + width / 2, top - 0.105, formula, ha="center", va="center", fontsize=10)
        ax.text(
            left + width / 2,
            top - height + 0.026,
            "weight " + weight,
            ha="center",
            va="center",
            fontsize=12,
            color=COLORS[key],
            weight="bold",
        )
        if i < 3:
            ax.text(
                left + width + gap / 2, top - height / 2, "+", ha="center", va="center", fontsize=16
            )
    ax.text(
        0.5,
        top - height - 0.032,
        r"$\alpha=\beta=\gamma=1$: the terms telescope to the plain ELBO (Trace_ELBO), "
        r"sample by sample;   $\beta=\gamma$: beta-TCVAE."
        "\n"
        r"$\hat q(z) = \frac{1}{N}\sum_n q(z|x_n)$: the aggregate posterior (and its marginals "
        r"$\hat q(z_g)$, $\hat q(z_{ge})$), estimated by minibatch-stratified sampling.",
        ha="center",
        va="center",
        fontsize=9.5,
        color="0.25",
        linespacing=1.6,
    )

    # The group tree: x -> root -> groups -> variables.
    y_root, y_group, y_var = 0.52, 0.33, 0.12
    x_root = 0.5
    groups = (
        ("class", "Concrete(3)", 0.27, ["y"]),
        ("style", "Normal(4)", 0.68, ["$z_1$", "$z_2$", "$z_3$", "$z_4$"]),
    )
    ax.text(
        0.035, y_root, "root\n(all latents $z$)", ha="left", va="center", fontsize=10, color="0.3"
    )
    ax.text(
        0.035,
        y_group,
        "groups $z_g$\n(sample sites or\ngroup(...) contexts)",
        ha="left",
        va="center",
        fontsize=10,
        color="0.3",
    )
    ax.text(0.035, y_var, "variables $z_{ge}$", ha="left", va="center", fontsize=10, color="0.3")

    # I(x; z): the data point and its code.
    _node(ax, 0.23, y_root + 0.005, "data $x_n$", "white", "0.3", w=0.09)
    _edge(
        ax, (0.276, y_root + 0.005), (x_root - 0.062, y_root), COLORS["alpha"], lw=2.4, style="-|>"
    )
    ax.text(
        0.345,
        y_root + 0.03,
        r"$I(x;z)$  ($\alpha$)",
        ha="center",
        va="bottom",
        fontsize=10.5,
        color=COLORS["alpha"],
        weight="bold",
    )
    _node(ax, x_root, y_root, "$z$", PALE["alpha"], COLORS["alpha"], w=0.11)

    # TC between groups: the root's children.
    for label, family, x, _ in groups:
        _edge(ax, (x_root, y_root - 0.031), (x, y_group + 0.031), COLORS["beta"], lw=2.2)
    ax.text(
        x_root + 0.005,
        (y_root + y_group) / 2 + 0.005,
        "TC between groups ($\\beta$):\ndependence among the\nroot's children",
        ha="center",
        va="center",
        fontsize=9.5,
        color=COLORS["beta"],
        weight="bold",
        bbox=dict(facecolor="white", edgecolor="none", pad=1.5),
    )

    for label, family, x, variables in groups:
        _node(
            ax,
            x,
            y_group,
            f"{label}\n{family}",
            PALE["beta"],
            COLORS["beta"],
            w=0.13,
            h=0.07,
            size=9.5,
        )
        spread = 0.085
        xs = [x + spread * (i - (len(variables) - 1) / 2) for i in range(len(variables))]
        for xv, name in zip(xs, variables):
            _edge(
                ax,
                (x, y_group - 0.035),
                (xv, y_var + 0.027),
                COLORS["gamma"] if len(variables) > 1 else "0.5",
                lw=2.0,
            )
            _node(ax, xv, y_var, name, PALE["one"], COLORS["one"], w=0.06, h=0.054, size=11)
        if len(variables) > 1:
            ax.text(
                x + 0.15,
                (y_group + y_var) / 2 + 0.01,
                "TC within the group ($\\gamma$):\ndependence among\nthe group's variables",
                ha="left",
                va="center",
                fontsize=9.5,
                color=COLORS["gamma"],
                weight="bold",
            )
        else:
            ax.text(
                x - 0.05,
                (y_group + y_var) / 2 + 0.01,
                "one multivariate variable:\nno within-group TC",
                ha="right",
                va="center",
                fontsize=9,
                color="0.35",
            )
    ax.text(
        0.5,
        y_var - 0.06,
        "dimension-wise KL (weight 1): each variable's aggregate marginal "
        r"$\hat q(z_{ge})$ against its prior $p(z_{ge})$",
        ha="center",
        va="center",
        fontsize=10,
        color=COLORS["one"],
        weight="bold",
    )
    ax.text(
        0.5,
        0.018,
        'Nested groups (group("a") around group("b")) add levels to the tree; '
        "the TC at depth 2, 3, ... is weighted by level_weights.",
        ha="center",
        va="center",
        fontsize=9,
        color="0.35",
    )
    return figure


def save(figure: Figure, path: Path) -> None:
    """Writes ``figure`` to ``path`` atomically (a temporary file beside it, then a rename)."""
    with atomic_file(path) as file:
        figure.savefig(file, format=path.suffix.lstrip("."))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUTPUT, help="where to write the PNG")
    save(draw(), parser.parse_args().out)

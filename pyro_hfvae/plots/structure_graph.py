# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""Drawing of a model's latent structure graph (:func:`pyro_hfvae.infer.inspect.structure_graph`)."""
import os

import networkx as nx
from matplotlib.figure import Figure

from pyro_hfvae.plots._figure import save_figure

__all__ = [
    "plot_structure_graph",
]

_COLORS = {"root": "#d9d9d9", "group": "#c6dbef", "site": "#fdd0a2", "variable": "#e5f5e0"}


def _collapse(graph: nx.DiGraph, max_variables: int) -> nx.DiGraph:
    """Replaces the variables of a site with more than ``max_variables`` by one node."""
    graph = graph.copy()
    for node, data in list(graph.nodes(data=True)):
        if data["kind"] != "site":
            continue
        children = list(graph.successors(node))
        if len(children) > max_variables:
            graph.remove_nodes_from(children)
            key = f"variables:{data['label']}"
            graph.add_node(key, kind="variable", label=f"{data['label']}[0..{len(children) - 1}]",
                           depth=data["depth"] + 1)
            graph.add_edge(node, key)
    return graph


def _layout(graph: nx.DiGraph) -> dict:
    """Tree layout: leaves evenly spaced left to right, parents above the middle of their children."""
    depth_max = max(d["depth"] for _, d in graph.nodes(data=True))
    positions, next_leaf = {}, [0.0]

    def place(node) -> float:
        children = list(graph.successors(node))
        if children:
            xs = [place(child) for child in children]
            x = sum(xs) / len(xs)
        else:
            x = next_leaf[0]
            next_leaf[0] += 1.0
        positions[node] = (x, float(depth_max - graph.nodes[node]["depth"]))
        return x

    place("root")
    return positions


def _node_text(data: dict) -> str:
    kind = data["kind"]
    if kind in ("root", "group"):
        lines = [data["label"]]
        if data.get("tc_weight") is not None:
            symbol = {0: "β", 1: "γ"}.get(data["depth"], f"w{data['depth']}")
            lines.append(f"TC × {symbol}={data['tc_weight']:g}")
        if kind == "root" and data.get("mi_weight") is not None:
            lines.append(f"MI × α={data['mi_weight']:g}")
        return "\n".join(lines)
    if kind == "site":
        lines = [f"{data['label']} ~ {data['prior']}", f"q: {data['posterior']}"]
        if data.get("rate_weight") is not None:
            lines.append(f"rate × β={data['rate_weight']:g}")
        return "\n".join(lines)
    return data["label"]


def plot_structure_graph(graph: nx.DiGraph, *, max_variables: int = 12, title: str | None = None,
                         path: str | os.PathLike | None = None) -> Figure:
    """
    Draws a structure graph top-down: the root, the groups (with the weights of their total
    correlations), the sites (prior, posterior family and, for HIT, the rate weight) and
    their variables.

    :param networkx.DiGraph graph: a graph from :func:`~pyro_hfvae.infer.inspect.structure_graph`.
    :param int max_variables: sites with more variables show them as one node.
    :param str title: the figure's title.
    :param path: where to save the PNG.
    :returns: the figure.
    :rtype: matplotlib.figure.Figure
    """
    if "root" not in graph:
        raise ValueError("expected a structure graph with a 'root' node, as structure_graph() builds")
    graph = _collapse(graph, max_variables)
    positions = _layout(graph)
    width = max(x for x, _ in positions.values()) + 1
    height = max(y for _, y in positions.values()) + 1
    figure = Figure(figsize=(max(5.0, 1.0 * width + 1.5), 1.35 * height + 0.6))
    ax = figure.add_subplot()
    nx.draw_networkx_edges(graph, positions, ax=ax, arrows=False, edge_color="0.55", width=1.0)
    for node, data in graph.nodes(data=True):
        x, y = positions[node]
        ax.text(x, y, _node_text(data), ha="center", va="center", fontsize=8 if data["kind"] != "variable" else 7,
                rotation=90 if data["kind"] == "variable" and len(data["label"]) > 5 else 0,
                bbox={"boxstyle": "round,pad=0.35", "facecolor": _COLORS[data["kind"]], "edgecolor": "0.4"})
    ax.set_xlim(-0.8, width - 0.2)
    ax.set_ylim(-0.6, height - 0.4)
    ax.axis("off")
    ax.set_title(title or "latent structure: root → groups → sites → variables", fontsize=10)
    save_figure(figure, path)
    return figure

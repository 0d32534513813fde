# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
A sphinx-gallery image scraper for matplotlib figures made without pyplot.

pyro_hfvae's plotting functions build :class:`matplotlib.figure.Figure` objects directly (no
pyplot state), which sphinx-gallery's own matplotlib scraper does not see. This scraper saves
every such figure that a tutorial's code block has just bound to a global name, once.
"""

from sphinx_gallery.scrapers import figure_rst

_SEEN = "pyro_hfvae_scraped_figures"


def scrape_figures(block, block_vars, gallery_conf) -> str:
    """
    Saves the new pyplot-less figures among the example's globals and returns their rST.

    :param block: the code block just executed.
    :param dict block_vars: sphinx-gallery's per-example state (globals, image paths).
    :param dict gallery_conf: the gallery configuration.
    :rtype: str
    """
    from matplotlib.figure import Figure

    seen = block_vars.setdefault(_SEEN, set())
    paths = []
    for value in list(block_vars["example_globals"].values()):
        # Figures made by pyplot carry a number and are the matplotlib scraper's.
        if not isinstance(value, Figure) or hasattr(value, "number") or id(value) in seen:
            continue
        seen.add(id(value))
        path = next(block_vars["image_path_iterator"])
        value.savefig(path, bbox_inches="tight")
        paths.append(path)
    return figure_rst(paths, gallery_conf["src_dir"])

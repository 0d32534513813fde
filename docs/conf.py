# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Sphinx configuration of the pyro_hfvae documentation.

Build (warnings are errors; ``PYRO_HFVAE_SMOKE=1`` runs the tutorials at smoke size)::

    PYRO_HFVAE_SMOKE=1 sphinx-build -W --keep-going -b html docs docs/_build/html
"""

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS))

import pyro_hfvae  # noqa: E402

SMOKE = os.environ.get("PYRO_HFVAE_SMOKE", "0") not in ("", "0")
if SMOKE:
    import torch

    # Smoke-size tutorials gain nothing from threads, which oversubscribe a busy machine's cores.
    torch.set_num_threads(1)

project = "pyro_hfvae"
author = "Contributors to the pyro_hfvae project"
copyright = "Contributors to the pyro_hfvae project"
version = release = pyro_hfvae.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "sphinxarg.ext",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = [
    "_build",
    "**.ipynb_checkpoints",
    "tutorials/*.ipynb",
    "tutorials/*.py",
    "tutorials/*.zip",
    "tutorials/*.md5",
    "tutorials/*.json",
]
templates_path = []

# -- autodoc ---------------------------------------------------------------------------------
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_class_signature = "mixed"
autodoc_preserve_defaults = True

# -- MyST (the results pages are Markdown) ---------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

# -- sphinx-gallery: the tutorials, executed at build time ------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "tutorials"),
    "gallery_dirs": "tutorials",
    "filename_pattern": r"/tutorial_",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    # Always execute: a full-size build must never reuse a smoke-size run's outputs.
    "run_stale_examples": True,
    "only_warn_on_example_error": False,
    "show_memory": False,
    "min_reported_time": 1,
    "matplotlib_animations": False,
    # Show printed output only, not the repr of a cell's last expression.
    "capture_repr": (),
    # pyro_hfvae's plotting functions return pyplot-less Figures: docs/figure_scraper.py shows them.
    "image_scrapers": ("matplotlib", "figure_scraper.scrape_figures"),
    "plot_gallery": "True",
}

# -- HTML ------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"pyro_hfvae {release}"
html_static_path = ["_static"]
html_theme_options = {"sidebar_hide_name": False, "navigation_with_keys": True}
pygments_style = "friendly"
# Typographic quotes, but "--flag" stays two hyphens.
smartquotes_action = "qe"


# -- API reference: every public name, on the page of the package users import it from -----


def setup(app):
    import api_coverage

    api_coverage.setup(app)

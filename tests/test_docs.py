"""
The documentation's API coverage, checked from the sources (the site is not built here):
every public name has a description and appears on an API page; plus the tutorials' smoke
switch. The full build is ``PYRO_HFVAE_SMOKE=1 sphinx-build -W --keep-going -b html docs
docs/_build/html``.
"""

import importlib
import re
import sys
import textwrap

import pytest

from .conftest import ROOT

sys.path.insert(0, str(ROOT / "docs"))
import api_coverage  # noqa: E402

MODULES = list(api_coverage.public_modules())
TUTORIALS = sorted((ROOT / "tutorials").glob("tutorial_*.py"))


@pytest.mark.parametrize("module_name", MODULES)
def test_public_names_are_described(module_name):
    missing = api_coverage.undocumented(module_name)
    assert not missing, f"public names without a docstring: {missing}"


@pytest.mark.parametrize("module_name", MODULES)
def test_public_names_are_on_an_api_page(module_name):
    names = set(api_coverage.page_names(module_name))
    covered = api_coverage.rst_coverage().get(module_name, set())
    missing = sorted(names - covered)
    assert not missing, (
        f"{module_name} names {missing} appear on no page of docs/api/: add "
        f"'.. automodule:: {module_name}' with ':members:' to the page of its subject"
    )


def test_package_exports_are_documented_where_users_import_them():
    # A re-exported name is documented on its package's page, not on its module's.
    for module_name in MODULES:
        for name in api_coverage.page_names(module_name):
            assert not api_coverage.exported_by_parent(module_name, name)
    package = importlib.import_module("pyro_hfvae.metrics")
    assert "mig" in package.__all__
    assert api_coverage.page_names("pyro_hfvae.metrics.mig") == []
    assert "mig" in api_coverage.page_names("pyro_hfvae.metrics")


def test_no_module_page_collides_with_a_package_name():
    # A module named like an object its package re-exports (a module "group" beside the class
    # "group") cannot get an automodule: Sphinx would describe the name twice.
    for path in sorted(api_coverage.API_DIR.glob("*.rst")):
        for module_name in re.findall(r"^\.\. automodule:: (\S+)$", path.read_text(), re.M):
            parent_name, _, short = module_name.rpartition(".")
            if not parent_name:
                continue
            parent = importlib.import_module(parent_name)
            assert short not in getattr(parent, "__all__", ()), (
                f"{path.name}: {module_name} is also the name of {parent_name}.{short}; use "
                f"'.. py:currentmodule:: {module_name}' and document its names one by one"
            )


def test_rst_coverage_reads_directives(tmp_path):
    (tmp_path / "page.rst").write_text(
        textwrap.dedent("""\
        Title
        =====

        .. automodule:: pyro_hfvae.metrics
           :members:
           :exclude-members: mig, sap

        .. automodule:: pyro_hfvae.poutine.groups
           :members: GroupNode

        .. py:currentmodule:: pyro_hfvae.distributions.util

        .. autofunction:: soft_value

        .. autoclass:: pyro_hfvae.models.vlae.VLAE
    """)
    )
    covered = api_coverage.rst_coverage(tmp_path)
    metrics = set(importlib.import_module("pyro_hfvae.metrics").__all__)
    assert covered["pyro_hfvae.metrics"] == metrics - {"mig", "sap"}
    assert covered["pyro_hfvae.poutine.groups"] == {"GroupNode"}
    assert covered["pyro_hfvae.distributions.util"] == {"soft_value"}
    assert covered["pyro_hfvae.models.vlae"] == {"VLAE"}


def test_constant_comment_found_in_defining_module():
    # METRICS is assigned (with its '#:' comment) in metrics/evaluate.py and re-exported.
    comment = api_coverage.constant_comment("pyro_hfvae.metrics", "METRICS")
    assert comment and "evaluate" in comment[0]
    assert api_coverage.constant_comment("pyro_hfvae.metrics", "evaluate") == []


def test_tutorials_have_a_smoke_size():
    assert len(TUTORIALS) >= 5
    for path in TUTORIALS:
        text = path.read_text(encoding="utf-8")
        assert 'os.environ.get("PYRO_HFVAE_SMOKE"' in text, (
            f"{path.name} does not read PYRO_HFVAE_SMOKE"
        )
        assert text.startswith('"""'), (
            f"{path.name} needs a docstring with a title for sphinx-gallery"
        )

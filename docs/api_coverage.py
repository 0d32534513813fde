# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Which public names pyro_hfvae has, where the API pages document them, and the autodoc hooks
that make every name of a package's ``__all__`` appear on the page of the package users
import it from.

Public names are the ``__all__`` of every package and module whose dotted path has no part
starting with ``_``. A name that a package re-exports from one of its modules is documented
once, on the package's page (``automodule:: package :members:``); a module's page lists only
what its package does not re-export. Constants have no ``__doc__`` of their own: their
description is the ``#:`` comment above their assignment in the module that defines them.

Used by ``docs/conf.py`` (the hooks) and ``tests/test_docs.py`` (the coverage check, which
reads the ``.rst`` sources and never builds the site).
"""

import ast
import importlib
import inspect
import pkgutil
import re
import sys
from pathlib import Path

API_DIR = Path(__file__).resolve().parent / "api"
PACKAGE = "pyro_hfvae"

_DIRECTIVE = re.compile(
    r"^\s*\.\. (?:py:)?(automodule|autoclass|autofunction|autodata|autoexception|"
    r"currentmodule|module)::\s*(\S+)\s*$"
)
_OPTION = re.compile(r"^\s+:([\w-]+):\s*(.*)$")


def public_modules(package: str = PACKAGE) -> dict[str, object]:
    """
    Every public package and module of ``package`` (itself included), imported.

    :returns: dotted name -> module, sorted by name.
    """
    root = importlib.import_module(package)
    modules = {package: root}
    for info in pkgutil.walk_packages(root.__path__, package + "."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        modules[info.name] = importlib.import_module(info.name)
    return dict(sorted(modules.items()))


def exported_by_parent(module_name: str, name: str) -> bool:
    """Whether the parent package of ``module_name`` re-exports its ``name`` (the same object)."""
    parent_name = module_name.rpartition(".")[0]
    if not parent_name:
        return False
    parent, module = sys.modules.get(parent_name), sys.modules.get(module_name)
    if parent is None or module is None or name not in getattr(parent, "__all__", ()):
        return False
    return getattr(parent, name, None) is getattr(module, name, None)


def page_names(module_name: str) -> list[str]:
    """The names on ``module_name``'s API page: its ``__all__`` less its package's exports."""
    module = importlib.import_module(module_name)
    return [
        name for name in getattr(module, "__all__", ()) if not exported_by_parent(module_name, name)
    ]


def _assignment_comment(module, name: str) -> list[str]:
    """The ``#:`` comment right above the top-level assignment of ``name`` in ``module``."""
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):  # no source (an extension module)
        return []
    lines = source.splitlines()
    for node in ast.parse(source).body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        if not any(isinstance(t, ast.Name) and t.id == name for t in targets):
            continue
        comment, row = [], node.lineno - 2
        while row >= 0 and lines[row].lstrip().startswith("#:"):
            comment.insert(0, lines[row].lstrip()[2:].strip())
            row -= 1
        if any(comment):
            return comment
    return []


def constant_comment(module_name: str, name: str) -> list[str]:
    """
    The ``#:`` comment of a constant, from the module that assigns it: ``module_name``
    itself or, for a package, the submodule that holds the same object under that name.

    :returns: the comment's lines (empty if there is none).
    """
    module = importlib.import_module(module_name)
    obj = getattr(module, name)
    candidates = [module] + [
        other
        for other_name, other in sorted(sys.modules.items())
        if other_name.startswith(module_name + ".")
        and other is not None
        and getattr(other, name, None) is obj
    ]
    for candidate in candidates:
        comment = _assignment_comment(candidate, name)
        if comment:
            return comment
    return []


def is_constant(obj) -> bool:
    """Whether ``obj`` is documented by a ``#:`` comment rather than its own docstring."""
    return not (
        inspect.isclass(obj)
        or inspect.isroutine(obj)
        or inspect.ismodule(obj)
        or isinstance(obj, property)
    )


def own_docstring(obj) -> str:
    """``obj``'s own docstring (not one inherited from ``object`` or a builtin type)."""
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    return (doc or "").strip()


def _inherited_doc(cls, attr: str) -> bool:
    """Whether a base class documents ``attr`` (autodoc then shows its docstring: ``forward``)."""
    return any(
        (getattr(base.__dict__.get(attr), "__doc__", None) or "").strip()
        for base in cls.__mro__[1:]
    )


def undocumented(module_name: str) -> list[str]:
    """
    Public names of ``module_name``'s page without a description: classes and functions
    without a docstring, constants without a ``#:`` comment, and public methods and
    properties defined in a public class without a docstring (unless they override a
    documented method of a base class, whose docstring autodoc then shows).
    """
    module = importlib.import_module(module_name)
    missing = []
    for name in page_names(module_name):
        obj = getattr(module, name)
        if is_constant(obj):
            if not constant_comment(module_name, name):
                missing.append(
                    f"{module_name}.{name} (a constant: add a '#:' comment above its assignment)"
                )
            continue
        if not own_docstring(obj):
            missing.append(f"{module_name}.{name}")
        if inspect.isclass(obj):
            for attr, value in vars(obj).items():
                if attr.startswith("_"):
                    continue
                func = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
                if (
                    (inspect.isfunction(func) or isinstance(func, property))
                    and not (func.__doc__ or "").strip()
                    and not _inherited_doc(obj, attr)
                ):
                    missing.append(f"{module_name}.{name}.{attr}")
    return missing


def rst_coverage(api_dir: Path = API_DIR) -> dict[str, set[str]]:
    """
    What the API ``.rst`` sources document, read without building: ``automodule:: M`` with
    ``:members:`` (no list) covers :func:`page_names` of ``M`` less its ``:exclude-members:``;
    ``:members: a, b`` covers those; ``autoclass``/``autofunction``/``autodata`` cover their
    name, resolved against the last ``currentmodule``/``automodule``.

    :returns: module name -> names covered.
    """
    covered: dict[str, set[str]] = {}
    for path in sorted(api_dir.glob("*.rst")):
        lines = path.read_text(encoding="utf-8").splitlines()
        current = None
        for i, line in enumerate(lines):
            match = _DIRECTIVE.match(line)
            if not match:
                continue
            kind, argument = match.groups()
            options = {}
            for option_line in lines[i + 1 :]:
                option = _OPTION.match(option_line)
                if not option:
                    break
                options[option.group(1)] = option.group(2).strip()
            if kind in ("currentmodule", "module", "automodule"):
                current = argument
                if kind == "automodule" and "members" in options:
                    listed = [n.strip() for n in options["members"].split(",") if n.strip()]
                    excluded = {
                        n.strip()
                        for n in options.get("exclude-members", "").split(",")
                        if n.strip()
                    }
                    names = listed or page_names(argument)
                    covered.setdefault(argument, set()).update(set(names) - excluded)
                continue
            module_name, _, name = (
                argument if "." in argument else f"{current}.{argument}"
            ).rpartition(".")
            covered.setdefault(module_name, set()).add(name)
    return covered


# -- Sphinx hooks ----------------------------------------------------------------------------


def _autodoc_module(app) -> str:
    return getattr(app.env.current_document, "autodoc_module", "") or ""


def skip_member(app, what, name, obj, skip, options):
    """
    ``autodoc-skip-member``: on a module's page keep every name of its ``__all__`` (constants
    included) except those its package re-exports, which the package's page documents.
    """
    if what != "module":
        return None
    module_name = _autodoc_module(app)
    module = sys.modules.get(module_name)
    if module is None or name not in getattr(module, "__all__", ()):
        return None
    return exported_by_parent(module_name, name)


def constant_docstring(app, what, name, obj, options, lines):
    """
    ``autodoc-process-docstring``: a constant re-exported by a package takes the ``#:``
    comment of the module that assigns it.
    """
    if what not in ("data", "attribute") or not is_constant(obj):
        return
    module_name, _, short = name.rpartition(".")
    if module_name not in sys.modules:
        return
    generic = (type(obj).__doc__ or "").strip()
    if lines and "\n".join(lines).strip() != generic:
        return
    lines[:] = constant_comment(module_name, short) + [""]


def setup(app) -> None:
    """Connects the hooks (called from ``conf.py``)."""
    app.connect("autodoc-skip-member", skip_member)
    app.connect("autodoc-process-docstring", constant_docstring)

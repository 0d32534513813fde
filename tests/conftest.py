import importlib.util
import os
from pathlib import Path

import pyro
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PYRO_HFVAE_SHARED_DATA", ROOT.parent / "shared" / "data"))

torch.set_num_threads(1)

#: Reason shown by ``pytest -rs`` for every ``cuda``-marked test on a machine without CUDA.
NO_CUDA_REASON = "needs a CUDA device: torch.cuda.is_available() is False"


def pytest_collection_modifyitems(config, items):
    """Skips every test marked ``@pytest.mark.cuda`` where torch finds no CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason=NO_CUDA_REASON)
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _clear_param_store():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()


@pytest.fixture
def failing_compiler(monkeypatch):
    """Makes every torch.compile of the fused kernels fail as a machine without a C++ compiler does."""
    from pyro_hfvae.ops import fused_marginals

    def failing_compile(function):
        def compiled(*args):
            raise RuntimeError("InductorError: no working C++ compiler")

        return compiled

    monkeypatch.setattr(fused_marginals, "_compile", failing_compile)
    monkeypatch.setattr(fused_marginals, "_COMPILED", {})
    monkeypatch.setattr(fused_marginals, "_compile_error", [])


@pytest.fixture
def shared_data():
    """Path to ``../shared/data``; skips the test where that folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent (set PYRO_HFVAE_SHARED_DATA)")
    return SHARED_DATA


def load_script(folder: Path, name: str, monkeypatch):
    """
    Imports ``<folder>/<name>.py`` as a module. The folder is not a package; it is put on
    ``sys.path``, as running a script there does, for the scripts' shared helpers (``_flags``,
    ``_timing``).
    """
    monkeypatch.syspath_prepend(str(folder))
    spec = importlib.util.spec_from_file_location(f"{folder.name}_{name}", folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def load_benchmark(monkeypatch):
    """Imports ``benchmarks/<name>.py`` as a module (see :func:`load_script`)."""
    return lambda name: load_script(ROOT / "benchmarks", name, monkeypatch)

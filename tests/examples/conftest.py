from pathlib import Path

import pytest

from tests.conftest import load_script

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def load_example(monkeypatch):
    """Imports ``examples/<name>.py`` as a module (see :func:`tests.conftest.load_script`)."""
    return lambda name: load_script(EXAMPLES, name, monkeypatch)

# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
import ctypes.util
import logging
import sys

import pytest

from pyro_hfvae.training import allocator
from pyro_hfvae.training import trainer as trainer_module
from pyro_hfvae.training.trainer import Trainer


class _Mallopt:
    """Records mallopt(parameter, value) calls and answers ``result``."""

    def __init__(self, result: int = 1):
        self.calls, self.result = [], result

    def __call__(self, parameter: int, value: int) -> int:
        self.calls.append((parameter, value))
        return self.result


def test_sets_both_thresholds(monkeypatch):
    mallopt = _Mallopt()
    monkeypatch.setattr(allocator, "_glibc_mallopt", lambda: mallopt)
    assert allocator.retain_freed_memory() is True
    # glibc's malloc.h: M_MMAP_THRESHOLD -3, M_TRIM_THRESHOLD -1.
    assert sorted(mallopt.calls) == [(-3, 32 * 2**20), (-1, 2**30)]


def test_refused_settings_warn(monkeypatch, caplog):
    monkeypatch.setattr(allocator, "_glibc_mallopt", lambda: _Mallopt(result=0))
    with caplog.at_level(logging.WARNING, logger=allocator.__name__):
        assert allocator.retain_freed_memory() is False
    assert "refused" in caplog.text


def test_no_glibc_changes_nothing(monkeypatch):
    monkeypatch.setattr(allocator, "_glibc_mallopt", lambda: None)
    assert allocator.retain_freed_memory() is False


@pytest.mark.skipif(not sys.platform.startswith("linux") or ctypes.util.find_library("c") is None,
                    reason="glibc's mallopt exists on Linux only")
def test_glibc_accepts_the_thresholds():
    mallopt = allocator._glibc_mallopt()
    if mallopt is None:
        pytest.skip("the C library is not glibc")
    assert allocator.retain_freed_memory() is True


@pytest.mark.parametrize("retain", [True, False])
def test_trainer_applies_the_setting(retain, tiny_config, monkeypatch):
    calls = []
    monkeypatch.setattr(trainer_module, "retain_freed_memory", lambda: calls.append(True) or True)
    Trainer(dict(tiny_config, training=dict(tiny_config.get("training", {}), retain_freed_memory=retain)))
    assert calls == ([True] if retain else [])

"""The spawn helper of the multi-process tests: a teardown crash after the results are saved passes, others fail."""
import os
import time

import pytest
import torch
import torch.multiprocessing as mp

from tests.spawned_ranks import spawn_ranks


def _aborting_worker(rank, world_size, store, out_dir, abort_before_saving):
    if rank == 1 and abort_before_saving:
        os.abort()
    if rank == 0:
        time.sleep(1.0)  # rank 1 aborts while rank 0 is still working, the case that once failed CI
    torch.save({"rank": rank}, os.path.join(out_dir, f"rank{rank}.pt"))
    if rank == 1:
        os.abort()  # as gloo's teardown does at times


def test_a_crash_after_every_result_is_saved_passes(tmp_path):
    assert spawn_ranks(_aborting_worker, 2, False, tmp_path) == [{"rank": 0}, {"rank": 1}]


def test_a_crash_before_the_results_are_saved_fails(tmp_path):
    with pytest.raises(mp.ProcessExitedException, match="SIGABRT"):
        spawn_ranks(_aborting_worker, 2, True, tmp_path)

"""Spawns a few ranks of a test's worker with a deadline, so that a distributed test fails rather than hangs."""
import time

import pytest
import torch
import torch.multiprocessing as mp

#: Seconds for a whole spawned run; then the ranks are killed and the test fails.
JOIN_TIMEOUT = 90.0


def spawn_ranks(worker, world_size: int, scenarios, tmp_path) -> list:
    """
    Runs ``worker(rank, world_size, store, out_dir, scenarios)`` in ``world_size`` processes;
    each saves its results to ``out_dir/rank{rank}.pt``, which are returned in rank order.
    """
    context = mp.start_processes(worker, args=(world_size, str(tmp_path / "store"), str(tmp_path), scenarios),
                                 nprocs=world_size, join=False, start_method="spawn")
    deadline = time.monotonic() + JOIN_TIMEOUT
    try:
        while not context.join(timeout=max(0.1, deadline - time.monotonic())):
            if time.monotonic() >= deadline:
                pytest.fail(f"{world_size} ranks did not finish within {JOIN_TIMEOUT} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
                process.join(5)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(world_size)]

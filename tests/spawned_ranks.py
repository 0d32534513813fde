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
    paths = [tmp_path / f"rank{r}.pt" for r in range(world_size)]
    join_ranks(context, paths, JOIN_TIMEOUT)
    return [torch.load(path, weights_only=False) for path in paths]


def join_ranks(context, result_paths: list, timeout: float) -> None:
    """
    Waits for the spawned ranks of ``context`` for at most ``timeout`` seconds (then kills them and
    fails the test). A rank killed by a signal after every rank saved its ``result_paths`` passes: gloo
    can abort a process while tearing down after the work is done ("terminate called without an active
    exception"), which is not the job's failure. An exception raised by a rank fails the test.
    """
    deadline = time.monotonic() + timeout
    try:
        while not context.join(timeout=max(0.1, deadline - time.monotonic())):
            if time.monotonic() >= deadline:
                pytest.fail(f"{len(context.processes)} ranks did not finish within {timeout} s")
    except mp.ProcessExitedException as error:
        for process in context.processes:
            process.join(max(0.1, deadline - time.monotonic()))
        if error.signal_name is None or not all(path.exists() for path in result_paths):
            raise
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
                process.join(5)

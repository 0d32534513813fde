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
    fails the test). A rank killed by a signal after saving its result passes once every other rank has
    saved its own: gloo can abort a process while tearing down after the work is done ("terminate called
    without an active exception"), which is not the job's failure. An exception raised by a rank, or a
    rank that dies before saving, fails the test.

    ``context.join`` is called only once the outcome is known, because on any failed rank it kills the
    others at once, and a rank aborted in teardown must not cut short a rank that is still saving.
    """
    deadline = time.monotonic() + timeout
    processes = context.processes
    try:
        while True:
            exited = [process.exitcode is not None for process in processes]
            failed_unsaved = any(process.exitcode not in (None, 0) and not (process.exitcode < 0 and path.exists())
                                 for process, path in zip(processes, result_paths))
            if failed_unsaved:
                context.join(timeout=0)  # raises the rank's own error and stops the others
            if all(exited):
                if all(process.exitcode == 0 for process in processes):
                    context.join(timeout=0)
                return
            if time.monotonic() >= deadline:
                pytest.fail(f"{len(processes)} ranks did not finish within {timeout} s")
            time.sleep(0.05)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(5)

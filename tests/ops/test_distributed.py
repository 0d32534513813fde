"""
Global-batch marginals under torch.distributed: 2 and 3 gloo ranks spawned on this machine
compute their rows' marginals and gradients; the parent process compares them with a
single-process computation over the concatenated batch, written out independently.
"""
import math
import os
import time
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist

from pyro_hfvae.ops import distributed
from pyro_hfvae.ops.aggregate_posterior import stratified_log_weights
from pyro_hfvae.ops.distributed import (
    GlobalBatch,
    gather_rows,
    global_logsumexp,
    global_marginals,
    global_stratified_log_weights,
    rank_and_world_size,
)

from ..spawned_ranks import spawn_ranks

requires_gloo = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="torch.distributed with the gloo backend is not available in this torch build",
)

_COLLECTIVE_TIMEOUT = timedelta(seconds=30)  # a collective waiting longer raises instead of hanging
_FAMILIES = {"normal": torch.distributions.Normal, "uniform": torch.distributions.Uniform}


# ---- scenarios: inputs built in the parent, shared by the ranks and the reference ----------


def _scenario(family, sizes, dataset_size, *, seed, rows_per_chunk=None, reduce_scatter=False):
    generator = torch.Generator().manual_seed(seed)
    B, D = sum(sizes), 2
    if family == "normal":
        a = torch.randn(B, D, generator=generator, dtype=torch.float64)
        b = 0.3 + torch.rand(B, D, generator=generator, dtype=torch.float64)
        values = a + b * torch.randn(B, D, generator=generator, dtype=torch.float64)
    else:
        # Each rank's intervals lie in [10 r, 10 r + 3): a row scores -inf under every other rank's
        # components, so those ranks' partial sums are -inf while the global marginal is finite.
        owner = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes)).to(torch.float64)
        a = 10 * owner[:, None] + torch.rand(B, D, generator=generator, dtype=torch.float64)
        b = a + 0.5 + torch.rand(B, D, generator=generator, dtype=torch.float64)
        values = a + (b - a) * torch.rand(B, D, generator=generator, dtype=torch.float64)
    return {
        "kind": "marginals",
        "family": family,
        "sizes": tuple(sizes),
        "dataset_size": dataset_size,
        "rows_per_chunk": rows_per_chunk,
        "reduce_scatter": reduce_scatter,
        "values": values,
        "a": a,
        "b": b,
        "coef_variables": torch.randn(B, D, generator=generator, dtype=torch.float64),
        "coef_joint": torch.randn(B, generator=generator, dtype=torch.float64),
    }


def _scenarios(world_size):
    uneven = {2: (4, 1), 3: (2, 0, 3)}[world_size]
    inf = -math.inf
    partials = torch.randn(world_size, 4, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    partials[:, 0, :] = inf  # -inf on every rank
    partials[0, 1, :] = inf  # -inf on rank 0 only
    partials[1:, 2, 1] = inf  # finite on rank 0 only
    return {
        "stratified": _scenario("normal", [3] * world_size, 50, seed=1),
        "uniform_weights": _scenario("normal", [3] * world_size, 3 * world_size, seed=2, rows_per_chunk=2),
        "uneven": _scenario("normal", uneven, 40, seed=3, rows_per_chunk=3),
        "disjoint_support": _scenario("uniform", [2] * world_size, 30, seed=4),
        "reduce_scatter": _scenario("normal", [2] * world_size, 20, seed=5, reduce_scatter=True),
        "logsumexp_inf": {
            "kind": "logsumexp",
            "partials": partials,
            "coef": torch.randn(world_size, 4, 3, generator=torch.Generator().manual_seed(8), dtype=torch.float64),
        },
        "shape_mismatch": {"kind": "shape_mismatch"},
    }


def _loss(variables, joint, coef_variables, coef_joint):
    # A scalar per rank, non-linear in the marginals; the sum over ranks is the global loss.
    return (coef_variables * variables).sum() + 0.1 * (coef_joint * joint**2).sum()


# ---- the ranks ------------------------------------------------------------------------------


def _grads(loss, inputs):
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]


def _run_marginals(rank, s):
    leaves = [s[k].clone().requires_grad_() for k in ("values", "a", "b")]  # replicated, as DDP's parameters
    values, a, b = leaves
    start = sum(s["sizes"][:rank])
    rows = slice(start, start + s["sizes"][rank])
    family = _FAMILIES[s["family"]]

    def score(gathered):
        return family(a[rows][None], b[rows][None], validate_args=False).log_prob(gathered[:, None])

    if s["reduce_scatter"]:
        distributed._use_reduce_scatter = lambda group: True
    try:
        variables, joint = global_marginals(
            values[rows], score, dataset_size=s["dataset_size"], rows_per_chunk=s["rows_per_chunk"]
        )
        grads = _grads(_loss(variables, joint, s["coef_variables"][rows], s["coef_joint"][rows]), leaves)
    except RuntimeError as error:
        if s["reduce_scatter"] and "not support" in str(error).lower():
            return {"unsupported": str(error)}
        raise
    finally:
        distributed._use_reduce_scatter = _use_reduce_scatter
    for grad in grads:
        dist.all_reduce(grad)  # DDP's gradient all-reduce (a sum; DDP's average divides by the world size)
    return {"variables": variables.detach(), "joint": joint.detach(), "grads": grads}


def _run_logsumexp(rank, s):
    partial = s["partials"][rank].clone().requires_grad_()
    out = global_logsumexp(partial)
    loss = (torch.where(torch.isfinite(out), out, torch.zeros_like(out)) * s["coef"][rank]).sum()
    return {"out": out.detach(), "grad": torch.autograd.grad(loss, partial)[0]}


def _run_shape_mismatch(rank, s):
    try:
        gather_rows(torch.zeros(2, 2 + rank, dtype=torch.float64))
        message = None
    except ValueError as error:
        message = str(error)
    # The group is still usable after the error.
    check = torch.tensor([1.0])
    dist.all_reduce(check)
    return {"message": message, "after": check.item()}


_use_reduce_scatter = distributed._use_reduce_scatter
_RUNNERS = {"marginals": _run_marginals, "logsumexp": _run_logsumexp, "shape_mismatch": _run_shape_mismatch}


def _worker(rank, world_size, store, out_dir, scenarios):
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=world_size, timeout=_COLLECTIVE_TIMEOUT
    )
    try:
        results = {name: _RUNNERS[s["kind"]](rank, s) for name, s in scenarios.items()}
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()  # no rank tears gloo down while a peer still uses it (it can abort)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module", params=[2, 3], ids=lambda w: f"{w}ranks")
def ranks(request, tmp_path_factory):
    """``(scenarios, results by rank)`` of one spawned run of every scenario."""
    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with the gloo backend is not available in this torch build")
    world_size = request.param
    scenarios = _scenarios(world_size)
    start = time.monotonic()
    results = spawn_ranks(_worker, world_size, scenarios, tmp_path_factory.mktemp(f"ranks{world_size}"))
    print(f"{world_size} ranks: {time.monotonic() - start:.1f} s")
    return scenarios, results


# ---- the single-process reference ---------------------------------------------------------


def _reference(s):
    leaves = [s[k].clone().requires_grad_() for k in ("values", "a", "b")]
    values, a, b = leaves
    B, N = values.shape[0], s["dataset_size"]
    table = _FAMILIES[s["family"]](a[None], b[None], validate_args=False).log_prob(values[:, None])  # (B, B, D)
    log_w = torch.full((B, B), math.log((N - 1) / (N * (B - 1))), dtype=torch.float64)
    log_w.fill_diagonal_(-math.log(N))
    variables = torch.logsumexp(table + log_w[..., None], 1)
    joint = torch.logsumexp(table.sum(-1) + log_w, 1)
    grads = _grads(_loss(variables, joint, s["coef_variables"], s["coef_joint"]), leaves)
    return variables.detach(), joint.detach(), grads


MARGINAL_SCENARIOS = ["stratified", "uniform_weights", "uneven", "disjoint_support", "reduce_scatter"]


def _result(results, name):
    if "unsupported" in results[0][name]:
        pytest.skip(f"the backend has no reduce_scatter: {results[0][name]['unsupported']}")
    return [r[name] for r in results]


@requires_gloo
@pytest.mark.parametrize("name", MARGINAL_SCENARIOS)
def test_marginals_equal_single_process(ranks, name):
    scenarios, results = ranks
    per_rank = _result(results, name)
    variables, joint, _ = _reference(scenarios[name])
    assert torch.isfinite(joint).all()
    for rank, size in enumerate(scenarios[name]["sizes"]):
        assert per_rank[rank]["variables"].shape == (size, 2) and per_rank[rank]["joint"].shape == (size,)
    torch.testing.assert_close(torch.cat([r["variables"] for r in per_rank]), variables, rtol=0, atol=1e-10)
    torch.testing.assert_close(torch.cat([r["joint"] for r in per_rank]), joint, rtol=0, atol=1e-10)


@requires_gloo
@pytest.mark.parametrize("name", MARGINAL_SCENARIOS)
def test_gradients_equal_single_process(ranks, name):
    scenarios, results = ranks
    per_rank = _result(results, name)
    _, _, expected = _reference(scenarios[name])
    assert all(g.abs().sum() > 0 for g in expected[1:])
    for result in per_rank:
        assert all(torch.isfinite(g).all() for g in result["grads"])
        for grad, want in zip(result["grads"], expected):
            torch.testing.assert_close(grad, want, rtol=0, atol=1e-10)


@requires_gloo
def test_global_logsumexp_with_inf_entries(ranks):
    scenarios, results = ranks
    s = scenarios["logsumexp_inf"]
    partials = s["partials"]  # (W, 4, 3)
    expected = torch.logsumexp(partials, 0)
    # d/dp_r of sum_r' sum c_r' * out = (sum_r' c_r') * softmax_r(p); zero where out is -inf.
    weights = torch.nan_to_num(torch.softmax(partials, 0), nan=0.0)
    expected_grads = s["coef"].sum(0) * weights
    assert torch.isinf(expected[0]).all() and torch.isfinite(expected[1:]).all()
    for rank, result in enumerate(results):
        out, grad = result["logsumexp_inf"]["out"], result["logsumexp_inf"]["grad"]
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
        assert not torch.isnan(grad).any()
        torch.testing.assert_close(grad, expected_grads[rank], rtol=0, atol=1e-12)


@requires_gloo
def test_shape_mismatch_raises_on_every_rank(ranks):
    _, results = ranks
    world_size = len(results)
    for result in results:
        message = result["shape_mismatch"]["message"]
        assert message is not None and message.startswith("expected every rank to have the same shape except")
        assert str([((2, 2 + r), torch.float64) for r in range(world_size)]) in message
        assert result["shape_mismatch"]["after"] == world_size


# ---- single process -----------------------------------------------------------------------


def test_not_initialised_raises():
    if dist.is_available() and dist.is_initialized():
        pytest.skip("a process group is initialised in this process")
    assert rank_and_world_size(global_batch=False) == (0, 1)
    match = "expected an initialised torch.distributed process group .* call torch.distributed.init_process_group"
    with pytest.raises(RuntimeError, match=match):
        rank_and_world_size()
    with pytest.raises(RuntimeError, match=match):
        gather_rows(torch.zeros(3, 2))
    with pytest.raises(RuntimeError, match=match):
        global_logsumexp(torch.zeros(3, 2))
    with pytest.raises(RuntimeError, match="or pass global_batch=False"):
        global_marginals(torch.zeros(3, 2), lambda rows: rows[:, None].expand(-1, 3, -1), dataset_size=10)


@pytest.mark.parametrize("batch_size,dataset_size", [(2, 2), (5, 5), (5, 40), (7, 1000)])
def test_global_weights_equal_slice_version(batch_size, dataset_size):
    B, N = batch_size, dataset_size
    full = stratified_log_weights(slice(0, B), B, N, dtype=torch.float64)
    for start, stop in [(0, B), (1, B), (B - 2, B - 1)]:
        index = global_stratified_log_weights(torch.arange(start, stop), torch.arange(B), B, N, dtype=torch.float64)
        torch.testing.assert_close(index, stratified_log_weights(slice(start, stop), B, N, dtype=torch.float64),
                                   rtol=0, atol=0)
    generator = torch.Generator().manual_seed(B)
    rows, components = torch.randperm(B, generator=generator)[: B - 1], torch.randperm(B, generator=generator)
    got = global_stratified_log_weights(rows, components, B, N, dtype=torch.float64)
    torch.testing.assert_close(got, full[rows][:, components], rtol=0, atol=0)
    # An independent check of the formula: every row is a probability vector with 1/N on its diagonal.
    torch.testing.assert_close(got.logsumexp(1), torch.zeros(B - 1, dtype=torch.float64), rtol=0, atol=1e-12)
    assert (got[rows[:, None] == components[None, :]] == -math.log(N)).all()


def test_global_weights_errors():
    with pytest.raises(ValueError, match=r"expected global rows in range\(4\) but got \[0, 4\]"):
        global_stratified_log_weights([0, 4], [0], 4, 10)
    with pytest.raises(ValueError, match="expected 1-D components"):
        global_stratified_log_weights([0], [[0]], 4, 10)
    with pytest.raises(ValueError, match="expected 2 <= batch_size <= dataset_size"):
        global_stratified_log_weights([0], [0], 4, 3)


def test_global_batch_layout():
    batch = GlobalBatch(rank=2, world_size=3, sizes=(2, 0, 3))
    assert batch.size == 5 and batch.local_rows == slice(2, 5)
    assert batch.index().tolist() == [2, 3, 4]
    assert GlobalBatch(rank=1, world_size=3, sizes=(2, 0, 3)).index().tolist() == []

"""
HFVAELoss(global_batch=True) under torch.distributed: 2 and 3 gloo ranks spawned on this machine each
evaluate their shard of one batch with the same (fixed-noise) samples; the parent process compares them
with the single-process loss, gradients and terms of the concatenated batch (global_batch=False).

"Terms of the same rows": rank r's ``loss.terms`` are batch means over its own rows of per-row terms.
The single-process per-row terms of those rows come from the single-process loss with every other
row masked out (``poutine.mask``): a masked-out data point contributes none of its own terms but stays
a component of the aggregate-posterior mixtures (HFVAELoss's documented mask rule), so those terms
are ``B_r / B`` times the mean over rank r's rows.
"""
import os
from datetime import timedelta

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.distributed as torch_dist

from pyro_hfvae import HFVAELoss, group

from ..fixed_noise import FixedNoise, gumbel
from ..spawned_ranks import spawn_ranks

requires_gloo = pytest.mark.skipif(
    not (torch_dist.is_available() and torch_dist.is_gloo_available()),
    reason="torch.distributed with the gloo backend is not available in this torch build",
)

_COLLECTIVE_TIMEOUT = timedelta(seconds=30)  # a collective waiting longer raises instead of hanging
_DATASET_SIZE = 40
_X_DIM = 5


# ---- the model: a batch-dependent prior p(z1 | z2), nested groups, a Concrete ------------------------


def _model(x, idx, with_y=True, fail=False):
    dec, a = pyro.param("dec"), pyro.param("a")
    with pyro.plate("data", _DATASET_SIZE, subsample=idx):
        z2 = pyro.sample("z2", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        z1 = pyro.sample("z1", dist.Normal(z2 @ a, 0.8).to_event(1))  # its marginals: the batch mixture
        parts = [z1, z2]
        if with_y:
            parts.append(pyro.sample("y", dist.RelaxedOneHotCategorical(torch.tensor(0.7), logits=torch.zeros(3))))
        features = torch.cat(parts, -1)
        pyro.sample("x", dist.Normal(features @ dec[: features.size(-1)], 1.0).to_event(1), obs=x)


def _guide(x, idx, with_y=True, fail=False):
    if fail:
        raise ValueError("a rank's own error before the collectives")
    with pyro.plate("data", _DATASET_SIZE, subsample=idx):
        with group("style"):
            pyro.sample("z2", dist.Normal(x @ pyro.param("loc2"), (x @ pyro.param("scale2")).exp()).to_event(1))
            pyro.sample("z1", dist.Normal(x @ pyro.param("loc1"), (x @ pyro.param("scale1")).exp()).to_event(1))
        if with_y:
            with group("class"):
                pyro.sample("y", dist.RelaxedOneHotCategorical(torch.tensor(0.7), logits=x @ pyro.param("logits")))


def _scenario(sizes, *, seed, kernel="generic", memory=1024.0, weights=(1.5, 3.0, 2.0)):
    g = torch.Generator().manual_seed(seed)
    B = sum(sizes)

    def randn(*shape, scale=1.0):
        return scale * torch.randn(*shape, generator=g, dtype=torch.float64)

    params = {"dec": randn(8, _X_DIM, scale=0.5), "a": randn(2, 3), "loc1": randn(_X_DIM, 3),
              "scale1": randn(_X_DIM, 3, scale=0.2), "loc2": randn(_X_DIM, 2), "scale2": randn(_X_DIM, 2, scale=0.2),
              "logits": randn(_X_DIM, 3)}
    noise = {"z1": randn(1, B, 3), "z2": randn(1, B, 2), "y": gumbel((1, B, 3), g)}
    idx = torch.randperm(_DATASET_SIZE, generator=g)[:B]
    return {"sizes": tuple(sizes), "params": params, "noise": noise, "x": randn(B, _X_DIM), "idx": idx,
            "kernel": kernel, "memory": memory, "weights": weights}


def _evaluate(s, rows=slice(None), *, global_batch=False, mask=None, **options):
    """The loss (a tensor), its terms and the parameters' gradients on ``rows`` of the scenario."""
    pyro.clear_param_store()
    for name, value in s["params"].items():
        pyro.param(name, value.clone())
    noise = {name: value[:, rows] for name, value in s["noise"].items()}
    model, guide = _model, FixedNoise(noise)(_guide)
    if mask is not None:
        model, guide = (pyro.poutine.mask(f, mask=mask) for f in (model, guide))
    alpha, beta, gamma = s["weights"]
    elbo = HFVAELoss(alpha, beta, gamma, global_batch=global_batch, kernel=s["kernel"],
                     pairwise_memory_mb=s["memory"])
    loss = elbo.differentiable_loss(model, guide, s["x"][rows], s["idx"][rows], **options)
    loss.backward()
    grads = {name: value.grad.clone() for name, value in pyro.get_param_store().named_parameters()}
    return loss.detach(), elbo.terms, grads


def _rows(sizes, rank):
    start = sum(sizes[:rank])
    return slice(start, start + sizes[rank])


# ---- the ranks --------------------------------------------------------------------------------------


def _run_exact(rank, world_size, s):
    loss, terms, grads = _evaluate(s, _rows(s["sizes"], rank), global_batch=True)
    for grad in grads.values():
        torch_dist.all_reduce(grad)  # DDP's gradient all-reduce: the mean over ranks
        grad /= world_size
    return {"loss": loss, "terms": terms, "grads": grads}


def _run_error(rank, world_size, s, **options):
    try:
        _evaluate(s, _rows(s["sizes"], rank), global_batch=True, **options)
        outcome = None
    except (ValueError, RuntimeError) as error:
        outcome = (type(error).__name__, str(error))
    check = torch.ones(1)
    torch_dist.all_reduce(check)  # the group is still usable: no rank is left inside a collective
    return {"error": outcome, "after": check.item()}


def _run(rank, world_size, s):
    last = rank == world_size - 1
    if s["kind"] == "exact":
        return _run_exact(rank, world_size, s)
    if s["kind"] == "different_structure":  # the last rank has no Concrete site
        return _run_error(rank, world_size, s, with_y=not last)
    if s["kind"] == "raises_in_the_guide":
        return _run_error(rank, world_size, s, fail=rank == 0)
    if s["kind"] == "different_masks":  # rank 0 masks its guide only: HFVAELoss's per-step mask check raises
        result = {}
        pyro.clear_param_store()
        for name, value in s["params"].items():
            pyro.param(name, value.clone())
        rows = _rows(s["sizes"], rank)
        x, idx = s["x"][rows], s["idx"][rows]
        mask = torch.arange(x.size(0)) > 0 if rank == 0 else None
        guide = _guide if mask is None else pyro.poutine.mask(_guide, mask=mask)
        try:
            HFVAELoss(2.0, global_batch=True).differentiable_loss(_model, guide, x, idx)
            result["error"] = None
        except (ValueError, RuntimeError) as error:
            result["error"] = (type(error).__name__, str(error))
        check = torch.ones(1)
        torch_dist.all_reduce(check)
        result["after"] = check.item()
        return result
    raise ValueError(s["kind"])


def _worker(rank, world_size, store, out_dir, scenarios):
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    torch_dist.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=world_size, timeout=_COLLECTIVE_TIMEOUT
    )
    try:
        results = {name: _run(rank, world_size, s) for name, s in scenarios.items()}
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
        torch_dist.barrier()  # no rank tears gloo down while a peer still uses it (it can abort)
    finally:
        torch_dist.destroy_process_group()


def _scenarios(world_size):
    even = [4] * world_size
    uneven = {2: (5, 1), 3: (2, 1, 4)}[world_size]
    return {
        "generic": dict(_scenario(even, seed=1), kind="exact"),
        # Fused Normal and Concrete kernels on gathered rows, chunks of rows recomputed in the backward pass.
        "fused_chunked": dict(_scenario(even, seed=2, kernel="fused", memory=5e-3), kind="exact"),
        "uneven": dict(_scenario(uneven, seed=3), kind="exact"),
        # All weights 1: the marginals are only reported (no gradient through them).
        "unweighted": dict(_scenario(even, seed=4, weights=(1.0, 1.0, 1.0)), kind="exact"),
        "different_structure": dict(_scenario(even, seed=5), kind="different_structure"),
        "raises_in_the_guide": dict(_scenario(even, seed=6), kind="raises_in_the_guide"),
        "different_masks": dict(_scenario(even, seed=7), kind="different_masks"),
    }


@pytest.fixture(scope="module", params=[2, 3], ids=lambda w: f"{w}ranks")
def ranks(request, tmp_path_factory):
    """``(scenarios, results by rank)`` of one spawned run of every scenario."""
    if not (torch_dist.is_available() and torch_dist.is_gloo_available()):
        pytest.skip("torch.distributed with the gloo backend is not available in this torch build")
    scenarios = _scenarios(request.param)
    return scenarios, spawn_ranks(_worker, request.param, scenarios, tmp_path_factory.mktemp(f"hfvae{request.param}"))


@pytest.fixture(autouse=True)
def float64():
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(default)


# ---- tests --------------------------------------------------------------------------------------


EXACT = ["generic", "fused_chunked", "uneven", "unweighted"]


@requires_gloo
@pytest.mark.parametrize("name", EXACT)
def test_losses_equal_single_process(ranks, name):
    scenarios, results = ranks
    s, sizes = scenarios[name], scenarios[name]["sizes"]
    expected, _, _ = _evaluate(s)
    # Each rank's loss is Pyro's: scaled by N / B_r; weighted by B_r / B they sum to the single-process loss
    # (the plain mean over ranks for even shards).
    combined = sum(r[name]["loss"] * size / sum(sizes) for r, size in zip(results, sizes))
    torch.testing.assert_close(combined, expected, rtol=0, atol=1e-10)
    if min(sizes) < 2 or s["weights"] == (1.0, 1.0, 1.0):  # (then the loss is the ELBO: no marginal in it)
        return
    # The test can fail: marginals over each rank's shard alone give another loss.
    per_shard = sum(_evaluate(s, _rows(sizes, r))[0] * size / sum(sizes) for r, size in enumerate(sizes))
    assert abs(per_shard - expected) > 1e-3


@requires_gloo
@pytest.mark.parametrize("name", ["generic", "fused_chunked", "unweighted"])
def test_averaged_gradients_equal_single_process(ranks, name):
    scenarios, results = ranks
    _, _, expected = _evaluate(scenarios[name])
    assert all(g.abs().sum() > 0 for g in expected.values())
    for result in results:
        assert result[name]["grads"].keys() == expected.keys()
        for param, grad in expected.items():
            torch.testing.assert_close(result[name]["grads"][param], grad, rtol=0, atol=1e-10,
                                       msg=lambda m, param=param: f"{param}: {m}")


@requires_gloo
@pytest.mark.parametrize("name", EXACT)
def test_terms_equal_single_process_terms_of_the_same_rows(ranks, name):
    scenarios, results = ranks
    s, sizes = scenarios[name], scenarios[name]["sizes"]
    B = sum(sizes)
    for rank, result in enumerate(results):
        rows = torch.zeros(B, dtype=torch.bool)
        rows[_rows(sizes, rank)] = True
        _, masked_terms, _ = _evaluate(s, mask=rows)
        terms = result[name]["terms"]
        assert terms.keys() == masked_terms.keys()
        assert {"mutual_info", "tc_between", "tc_within", "dimwise_kl", "tc_within/style"} <= terms.keys()
        for key, value in masked_terms.items():
            assert terms[key] == pytest.approx(value * B / sizes[rank], rel=1e-10, abs=1e-10), key


@requires_gloo
def test_a_different_structure_raises_on_every_rank(ranks):
    _, results = ranks
    for rank, result in enumerate(results):
        kind, message = result["different_structure"]["error"]
        assert kind == "ValueError" and "expected every rank to call it with the same structure" in message
        assert f"rank {rank} has" in message
        assert result["different_structure"]["after"] == len(results)


@requires_gloo
def test_an_error_on_one_rank_raises_on_every_rank(ranks):
    _, results = ranks
    for name, own in [("raises_in_the_guide", "a rank's own error"), ("different_masks", "expected the same mask")]:
        kind, message = results[0][name]["error"]
        assert kind == "ValueError" and own in message, message
        for result in results[1:]:
            kind, message = result[name]["error"]
            assert kind == "PeerRankError" and "rank(s) [0] of" in message and "failed before" in message
        assert all(r[name]["after"] == len(results) for r in results)


def test_global_batch_needs_a_process_group():
    if torch_dist.is_available() and torch_dist.is_initialized():
        pytest.skip("a process group is initialised in this process")
    s = _scenario([3, 3], seed=0)
    with pytest.raises(RuntimeError, match="expected an initialised torch.distributed process group"):
        _evaluate(s, global_batch=True)


def test_global_batch_is_a_bool():
    with pytest.raises(TypeError, match="expected global_batch to be a bool"):
        HFVAELoss(global_batch=1)

import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam
from torch.nn import functional as F

from pyro_hfvae.infer.hit import HITLoss
from pyro_hfvae.infer.progressive import ProgressiveSchedule
from pyro_hfvae.models.vlae import VLAE
from pyro_hfvae.training.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint


def small_vlae(levels=3, image_shape=(1, 32, 32), latent_dim=2):
    return VLAE(levels=levels, latent_dim=latent_dim, image_shape=image_shape, channels=4, hidden_dim=8)


def binary_images(num, image_shape=(1, 32, 32), seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand((num,) + tuple(image_shape), generator=generator) < 0.3).float()


def schedule_at(vlae, iteration, **kwargs):
    schedule = ProgressiveSchedule(vlae.sites, **{"steps_per_level": 10, "fade_in_steps": 4, **kwargs})
    for _ in range(iteration):
        schedule.step()
    return schedule


@pytest.mark.parametrize("levels", [1, 2, 3])
@pytest.mark.parametrize("image_shape", [(1, 64, 64), (1, 28, 28), (3, 32, 16)])
def test_shapes(levels, image_shape):
    vlae = small_vlae(levels, image_shape, latent_dim=3)
    x = binary_images(5, image_shape)
    assert vlae.sites == tuple(f"z{level}" for level in range(levels, 0, -1))
    posterior = vlae.posterior(x)
    assert list(posterior) == list(vlae.sites)
    for fn in posterior.values():
        assert fn.batch_shape == (5,) and fn.event_shape == (3,)
    codes = vlae.encode(x)
    assert list(codes) == list(vlae.sites)
    for site, fn in posterior.items():
        assert torch.equal(codes[site], fn.mean)
    recon = vlae.reconstruct(x)
    assert recon.shape == x.shape and ((recon > 0) & (recon < 1)).all()
    z = {site: torch.randn(2, 3) for site in vlae.sites}
    assert vlae.decode(z).shape == (2,) + image_shape


def test_padding_is_centred_and_cropped():
    vlae = small_vlae(image_shape=(1, 28, 28))
    assert vlae._padding == (2, 2, 2, 2)
    odd = small_vlae(levels=2, image_shape=(1, 29, 17))
    assert odd._padding == (7, 8, 1, 2)
    assert odd.reconstruct(binary_images(2, (1, 29, 17))).shape == (2, 1, 29, 17)


@pytest.mark.parametrize("iteration, inactive", [(0, ["z2", "z1"]), (5, ["z2", "z1"]), (12, ["z1"]), (19, ["z1"])])
def test_inactive_levels_do_not_influence_the_decoder(iteration, inactive):
    vlae = small_vlae()
    schedule = schedule_at(vlae, iteration)
    assert list(schedule.inactive) == inactive
    base = {site: torch.randn(6, 2) for site in vlae.sites}
    out = vlae.decode(base, schedule)
    for site in vlae.sites:
        changed = dict(base, **{site: 100.0 * torch.randn(6, 2)})
        if site in inactive:
            assert torch.equal(vlae.decode(changed, schedule), out)  # exactly: the embedding is zero
        else:
            assert not torch.allclose(vlae.decode(changed, schedule), out)
        # Without a schedule every level matters.
        assert not torch.allclose(vlae.decode(changed), vlae.decode(base))


def _features(vlae, x):
    h, features = F.pad(x, vlae._padding), {}
    for level in range(1, vlae.levels + 1):
        h = vlae.trunk[level - 1](h)
        features[f"z{level}"] = h
    return features


@pytest.mark.parametrize("iteration", [10, 11, 13, 20, 22, 40])
def test_fade_in_follows_eq_9(iteration):
    # q(z_l | alpha h_l) and g_l = f_l([alpha m_l(z_l); g_{l+1}]), restated with the modules.
    vlae = small_vlae()
    schedule = schedule_at(vlae, iteration)
    x = binary_images(4)
    features = _features(vlae, x)
    posterior = vlae.posterior(x, schedule)
    alphas = {site: schedule.fade_in(site) for site in vlae.sites}
    for site in vlae.sites:
        head_scale = alphas[site] if site in schedule.active else 1.0  # not yet added: unscaled features
        out = vlae.heads[site](head_scale * features[site])
        torch.testing.assert_close(posterior[site].base_dist.loc, out[:, :2], rtol=0, atol=0)
        torch.testing.assert_close(posterior[site].base_dist.scale, out[:, 2:].mul(0.5).exp(), rtol=0, atol=0)
    z = {site: torch.randn(4, 2) for site in vlae.sites}
    g = vlae.merges["z3"](vlae.embeddings["z3"](z["z3"]))
    for site in ["z2", "z1"]:
        g = vlae.merges[site](torch.cat([alphas[site] * vlae.embeddings[site](z[site]), g], 1))
    expected = torch.sigmoid(vlae.output(g))
    torch.testing.assert_close(vlae.decode(z, schedule), expected)


def test_fully_grown_equals_plain_vlae():
    vlae = small_vlae()
    schedule = schedule_at(vlae, 30)
    x = binary_images(3)
    grown, plain = vlae.encode(x, schedule), vlae.encode(x)
    assert list(grown) == list(plain) and all(torch.equal(grown[site], plain[site]) for site in plain)
    assert torch.equal(vlae.reconstruct(x, schedule), vlae.reconstruct(x))


def test_pyro_sites_plate_and_scale():
    vlae = small_vlae()
    x, idx = binary_images(4), torch.tensor([3, 7, 50, 99])
    guide_trace = poutine.trace(vlae.guide).get_trace(x, idx, dataset_size=100)
    model_trace = poutine.trace(poutine.replay(vlae.model, trace=guide_trace)).get_trace(x, idx, dataset_size=100)
    for trace, names in ((guide_trace, vlae.sites), (model_trace, vlae.sites + ("x",))):
        for name in names:
            site = trace.nodes[name]
            (frame,) = [f for f in site["cond_indep_stack"] if f.name == "data"]
            assert frame.size == 4 and frame.full_size == 100
            assert site["scale"] == 25.0
        assert torch.equal(trace.nodes["data"]["value"], idx)
    assert model_trace.nodes["x"]["is_observed"]
    # Without idx: a subsampled plate of the given size, or the batch as the data set.
    trace = poutine.trace(vlae.guide).get_trace(x, dataset_size=100)
    assert trace.nodes["z1"]["scale"] == 25.0
    trace = poutine.trace(vlae.guide).get_trace(x)
    assert trace.nodes["z1"]["scale"] == 1.0


def test_trace_elbo_matches_closed_form_scaling():
    vlae = small_vlae()
    x, idx = binary_images(4), torch.arange(4)
    guide_trace = poutine.trace(vlae.guide).get_trace(x, idx, dataset_size=40)
    model_trace = poutine.trace(poutine.replay(vlae.model, trace=guide_trace)).get_trace(x, idx, dataset_size=40)
    z = {site: guide_trace.nodes[site]["value"] for site in vlae.sites}
    posterior = vlae.posterior(x)
    logits = torch.logit(vlae.decode(z), eps=0.0)
    log_px = torch.distributions.Bernoulli(logits=logits).log_prob(x).sum((1, 2, 3))
    log_pz = sum(torch.distributions.Normal(0.0, 1.0).log_prob(z[s]).sum(-1) for s in vlae.sites)
    log_qz = sum(posterior[s].log_prob(z[s]) for s in vlae.sites)
    expected = -(40 / 4) * (log_px + log_pz - log_qz).sum()
    actual = -(model_trace.log_prob_sum() - guide_trace.log_prob_sum())
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-2)


def _snapshot(module):
    return {name: value.detach().clone() for name, value in module.named_parameters()}


def _changed(before, module, prefix):
    return any(
        not torch.equal(before[name], value) for name, value in module.named_parameters() if name.startswith(prefix)
    )


@pytest.mark.parametrize("use_pre_kl", [True, False])
def test_trains_under_schedule(use_pre_kl):
    vlae = small_vlae()
    schedule = ProgressiveSchedule(vlae.sites, steps_per_level=3, fade_in_steps=2, use_pre_kl=use_pre_kl)
    loss = HITLoss(betas=schedule)
    svi = SVI(vlae.model, vlae.guide, Adam({"lr": 1e-2}), loss=loss)
    x = binary_images(64)
    before = _snapshot(vlae)
    history = []
    for step in range(12):
        idx = torch.arange(step % 4 * 16, step % 4 * 16 + 16)
        value = svi.step(x[idx], idx, dataset_size=64, schedule=schedule)
        assert math.isfinite(value)
        history.append((schedule.stage, loss.terms["beta/z1"], loss.terms["beta/z2"]))
        if schedule.iteration == 2:
            # Stage 0: the embeddings of the levels not yet added get no gradient at all;
            # their heads move only through the pre-KL term.
            assert not _changed(before, vlae, "embeddings.z1") and not _changed(before, vlae, "embeddings.z2")
            assert _changed(before, vlae, "heads.z1") == use_pre_kl
            assert _changed(before, vlae, "embeddings.z3") and _changed(before, vlae, "heads.z3")
        schedule.step()
    pre_kl = 0.5 if use_pre_kl else 0.0
    assert history[0] == (0, pre_kl, pre_kl) and history[3] == (1, pre_kl, 1.0) and history[6] == (2, 1.0, 1.0)
    assert _changed(before, vlae, "embeddings.z1")
    assert set(loss.terms) >= {"distortion", "rate", "rate/z1", "rate/z2", "rate/z3"}


def _train(vlae, schedule, optim, x, steps):
    svi = SVI(vlae.model, vlae.guide, optim, loss=HITLoss(betas=schedule))
    losses = []
    for _ in range(steps):
        losses.append(svi.step(x, schedule=schedule))
        schedule.step()
    return losses


def test_resumed_run_continues_identically(tmp_path):
    x = binary_images(16)
    config = dict(steps_per_level=3, fade_in_steps=2)

    pyro.set_rng_seed(1)
    straight = small_vlae()
    straight_losses = _train(straight, ProgressiveSchedule(straight.sites, **config), Adam({"lr": 1e-2}), x, 8)

    pyro.clear_param_store()
    pyro.set_rng_seed(1)
    first = small_vlae()
    schedule, optim = ProgressiveSchedule(first.sites, **config), Adam({"lr": 1e-2})
    head = _train(first, schedule, optim, x, 4)  # checkpoint inside stage 1's fade-in
    # Through a file, read back with weights_only=True: the schedule state is plain values.
    save_checkpoint(
        tmp_path / "run.pt",
        {
            "model": first.state_dict(),
            "optim": optim.get_state(),
            "schedule": schedule.state_dict(),
            "rng": capture_rng_state(),
        },
    )
    checkpoint = load_checkpoint(tmp_path / "run.pt")

    pyro.clear_param_store()
    pyro.set_rng_seed(12345)  # the checkpoint's RNG state must win
    resumed = small_vlae()
    resumed.load_state_dict(checkpoint["model"])
    schedule, optim = ProgressiveSchedule(resumed.sites, **config), Adam({"lr": 1e-2})
    schedule.load_state_dict(checkpoint["schedule"])
    optim.set_state(checkpoint["optim"])
    restore_rng_state(checkpoint["rng"])
    tail = _train(resumed, schedule, optim, x, 4)

    assert head + tail == straight_losses
    for (name, a), (_, b) in zip(straight.named_parameters(), resumed.named_parameters()):
        assert torch.equal(a, b), name


def test_plain_vlae_trains_with_trace_elbo():
    vlae = small_vlae(levels=2)
    svi = SVI(vlae.model, vlae.guide, Adam({"lr": 1e-2}), loss=Trace_ELBO())
    x = binary_images(8)
    losses = [svi.step(x) for _ in range(20)]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(levels=0), "levels"),
        (dict(latent_dim=2.0), "latent_dim"),
        (dict(image_shape=(64, 64)), "image_shape"),
        (dict(levels=5, image_shape=(1, 28, 28)), "more than 32 pixels a side"),
    ],
)
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VLAE(**kwargs)


def test_bad_inputs():
    vlae = small_vlae()
    with pytest.raises(ValueError, match=r"expected images of shape \(batch, 1, 32, 32\)"):
        vlae.encode(torch.zeros(2, 32, 32))
    with pytest.raises(ValueError, match="floating-point"):
        vlae.encode(torch.zeros(2, 1, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="levels"):
        vlae.encode(binary_images(2), ProgressiveSchedule(["z1", "z2", "z3"], 5))
    with pytest.raises(ValueError, match="dataset_size"):
        vlae.guide(binary_images(2), torch.arange(2))
    with pytest.raises(ValueError, match="idx of shape"):
        vlae.guide(binary_images(2), torch.arange(3), dataset_size=10)
    with pytest.raises(ValueError, match="missing"):
        vlae.decode({"z3": torch.zeros(1, 2)})
    with pytest.raises(ValueError, match=r"z2 of shape \(batch, 2\)"):
        vlae.decode({"z3": torch.zeros(1, 2), "z2": torch.zeros(1, 3), "z1": torch.zeros(1, 2)})


@pytest.mark.cuda
def test_cuda():
    vlae = small_vlae().cuda()
    schedule = schedule_at(vlae, 12)
    x = binary_images(8).cuda()
    svi = SVI(vlae.model, vlae.guide, Adam({"lr": 1e-3}), loss=HITLoss(betas=schedule))
    assert math.isfinite(svi.step(x, torch.arange(8, device="cuda"), dataset_size=100, schedule=schedule))
    assert vlae.posterior(x, schedule)["z1"].mean.device.type == "cuda"

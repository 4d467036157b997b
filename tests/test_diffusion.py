"""tenku.diffusion: schedule, loss, samplers and guidance on tiny CPU problems."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import Tensor, nn

from tenku.diffusion import (
    SAMPLERS,
    CFGDenoiser,
    drop_condition,
    flow_loss,
    flow_sigmas,
    guidance_interval,
    resolution_shift,
    sample_dpmpp_2m,
    sample_euler,
    sample_heun,
    sample_train_t,
    shift_time,
)

MU, S = 2.0, 0.5  # the toy data distribution N(MU, S^2), elementwise
SHAPE = (64, 2, 4, 8, 8)  # (B, C, T, H, W): 32768 values


def gaussian_velocity(x: Tensor, t: Tensor) -> Tensor:
    """The exact rectified-flow velocity E[noise - x0 | x_t] for x0 ~ N(MU, S^2), noise ~ N(0, 1).

    x_t ~ N((1 - t) MU, V) with V = (1 - t)^2 S^2 + t^2, Cov(x_t, noise) = t and
    Cov(x_t, x0) = (1 - t) S^2, so v = (t - (1 - t) S^2) / V * (x_t - (1 - t) MU) - MU.
    Its ODE carries the noise z at t = 1 to MU + S * z at t = 0.
    """
    t = t.reshape(-1, *([1] * (x.ndim - 1)))
    var = (1 - t) ** 2 * S**2 + t**2
    return (t - (1 - t) * S**2) / var * (x - (1 - t) * MU) - MU


def seeded_noise(shape=SHAPE, seed: int = 0) -> Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


# --- schedule -----------------------------------------------------------------------------------


def test_shift_time_identities():
    t = torch.linspace(0, 1, 101)
    torch.testing.assert_close(shift_time(t, 1.0), t)
    for shift in (0.5, 2.0, 3.0, 7.0):
        s = shift_time(t, shift)
        assert s[0] == 0 and s[-1] == 1
        assert (s.diff() > 0).all()
        assert ((s > t) if shift > 1 else (s < t))[1:-1].all()
    assert shift_time(0.5, 3.0) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        shift_time(t, 0.0)


def test_resolution_shift_monotone_and_clamped():
    tokens = [1, 64, 256, 512, 1024, 2048, 4096, 8192, 10**6]
    shifts = [resolution_shift(n) for n in tokens]
    assert all(a <= b for a, b in itertools.pairwise(shifts))
    assert shifts[0] == shifts[2] == pytest.approx(1.0)
    assert shifts[6] == shifts[-1] == pytest.approx(3.0)
    assert resolution_shift(1024) == pytest.approx(3.0**0.5)  # halfway in log tokens
    assert resolution_shift(10, base_tokens=1, max_tokens=100, max_shift=4.0) == pytest.approx(2)


def test_sample_train_t_range_and_shift():
    means = []
    for shift in (1.0, 3.0, 6.0):
        t = sample_train_t(20000, shift=shift, generator=torch.Generator().manual_seed(0))
        assert t.shape == (20000,) and ((t > 0) & (t < 1)).all()
        means.append(t.mean().item())
    assert means[0] == pytest.approx(0.5, abs=0.01)  # logit-normal(0, 1) is symmetric
    assert means[0] < means[1] < means[2]
    late = sample_train_t(20000, shift=1.0, loc=1.0, generator=torch.Generator().manual_seed(0))
    assert late.mean() > 0.6


def test_flow_sigmas_endpoints_and_monotone():
    for shift in (1.0, 3.0):
        sig = flow_sigmas(10, shift=shift)
        assert sig.shape == (11,) and sig.dtype == torch.float32
        assert sig[0] == 1 and sig[-1] == 0
        assert (sig.diff() < 0).all()
    torch.testing.assert_close(flow_sigmas(4, shift=1.0), torch.tensor([1, 0.75, 0.5, 0.25, 0]))
    assert (flow_sigmas(10, shift=3.0)[1:-1] > flow_sigmas(10, shift=1.0)[1:-1]).all()


# --- samplers -----------------------------------------------------------------------------------


def sampling_errors(sampler, steps: int, shift: float = 1.0) -> tuple[float, float, float]:
    """(|mean - MU|, |std - S|, max |x - (MU + S z)|) after sampling the Gaussian from noise z."""
    z = seeded_noise()
    x = sampler(gaussian_velocity, z, flow_sigmas(steps, shift=shift))
    exact = MU + S * z
    return abs(x.mean().item() - MU), abs(x.std().item() - S), (x - exact).abs().max().item()


def test_samplers_turn_noise_into_the_gaussian():
    # The mean error includes S * |mean(z)| = 0.006 of this seed's noise: finite-sample, not bias.
    mean_err, std_err, path_err = sampling_errors(sample_euler, 200)
    assert mean_err < 0.02 and std_err < 0.01 and path_err < 0.03
    mean_err, std_err, path_err = sampling_errors(sample_heun, 8)
    assert mean_err < 0.02 and std_err < 0.03 and path_err < 0.1


@pytest.mark.parametrize(("shift", "gain"), [(1.0, 4.0), (3.0, 1.0)])
def test_second_order_beats_euler_at_equal_steps(shift, gain):
    # With shift 3 the last (Euler) step, from t = 0.3 to 0, dominates Heun's error here.
    euler = sampling_errors(sample_euler, 8, shift)[2]
    assert sampling_errors(sample_heun, 8, shift)[2] < euler / gain
    assert sampling_errors(sample_dpmpp_2m, 8, shift)[2] < euler / gain
    # Doubling the steps halves Euler's error (first order) and quarters Heun's (second order).
    ratio = sampling_errors(sample_euler, 16, shift)[2] / euler
    assert ratio == pytest.approx(0.5, abs=0.1)
    ratio = sampling_errors(sample_heun, 16, shift)[2] / sampling_errors(sample_heun, 8, shift)[2]
    assert ratio < 0.35


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_callback_once_per_step(name):
    calls = []
    x = seeded_noise((2, 3, 2, 4, 4))
    out = SAMPLERS[name](gaussian_velocity, x, flow_sigmas(5, shift=2.0), callback=calls.append)
    assert [c["i"] for c in calls] == list(range(5))
    assert all(set(c) == {"i", "x", "t", "t_next", "v", "denoised"} for c in calls)
    assert calls[0]["t"] == 1.0 and calls[-1]["t_next"] == 0.0
    assert all(c["x"].shape == c["v"].shape == x.shape for c in calls)
    torch.testing.assert_close(calls[-1]["x"], out)
    torch.testing.assert_close(calls[0]["denoised"], x - calls[0]["v"])  # x - t v at t = 1


def test_samplers_pass_extra_args_and_start_mid_way():
    seen = []

    def model(x, t, *, text):
        seen.append((t.shape, t.dtype, text))
        return gaussian_velocity(x, t)

    x = seeded_noise((3, 1, 1, 2, 2))
    sample_heun(model, x, flow_sigmas(3), extra_args={"text": "hi"})
    assert len(seen) == 5  # 2 + 2 + 1 (last step is Euler)
    assert all(s == (torch.Size([3]), torch.float32, "hi") for s in seen)
    # SDEdit: x_t of a known x0 on the exact flow stays on it from t = 0.6 down.
    z = seeded_noise((4, 1, 2, 3, 3))
    sigmas = flow_sigmas(100)[40:]  # 0.6 -> 0
    x_t = 0.4 * MU + (0.4**2 * S**2 + 0.6**2) ** 0.5 * z  # (1 - t) MU + sqrt(V(t)) z
    torch.testing.assert_close(
        sample_euler(gaussian_velocity, x_t, sigmas), MU + S * z, atol=0.02, rtol=0
    )


# --- loss ---------------------------------------------------------------------------------------


def oracle(x0: Tensor, noise: Tensor, error: float = 0.0, context_junk: Tensor | None = None):
    """A model that knows x0 and noise: returns the exact velocity (+ error), junk at context."""
    inputs = []

    def model(x, t):
        inputs.append(x)
        v = noise - x0 + error
        return v if context_junk is None else v + context_junk

    return model, inputs


def test_flow_loss_zero_for_exact_velocity():
    x0, noise = seeded_noise((4, 3, 2, 4, 4), 1), seeded_noise((4, 3, 2, 4, 4), 2)
    t = torch.tensor([0.1, 0.4, 0.7, 1.0])
    model, inputs = oracle(x0, noise)
    loss, info = flow_loss(model, x0, t=t, noise=noise)
    assert loss.item() == 0 and info.per_sample.shape == (4,)
    torch.testing.assert_close(info.t, t)
    torch.testing.assert_close(
        inputs[0], (1 - t.view(4, 1, 1, 1, 1)) * x0 + t.view(4, 1, 1, 1, 1) * noise
    )
    loss, info = flow_loss(oracle(x0, noise, error=0.3)[0], x0, t=t, noise=noise)
    assert loss.item() == pytest.approx(0.09)


def test_flow_loss_mask_excludes_context():
    x0, noise = seeded_noise((3, 2, 5, 4, 4), 1), seeded_noise((3, 2, 5, 4, 4), 2)
    mask = torch.ones(3, 1, 5, 1, 1)
    mask[0, :, 0] = 0  # image-to-video: first frame given
    mask[1, :, -2:] = 0  # extension backward: last two frames given
    t = torch.full((3,), 0.5)
    junk = 100.0 * (1 - mask) * seeded_noise((3, 2, 5, 4, 4), 3)
    model, inputs = oracle(x0, noise, error=0.3)
    clean, info = flow_loss(model, x0, t=t, noise=noise, loss_mask=mask)
    junky, _ = flow_loss(oracle(x0, noise, 0.3, junk)[0], x0, t=t, noise=noise, loss_mask=mask)
    assert clean.item() == pytest.approx(0.09) and junky.item() == pytest.approx(0.09)
    torch.testing.assert_close(info.per_sample, torch.full((3,), 0.09))
    # The model sees the given frames clean and the rest noised.
    x_in, keep = inputs[0], mask.expand_as(x0).bool()
    torch.testing.assert_close(x_in[~keep], x0[~keep])
    torch.testing.assert_close(x_in[keep], (0.5 * x0 + 0.5 * noise)[keep])
    # Per-sample averaging: an error on the 4 learnt frames of sample 0 weighs 1/4 each.
    err = torch.zeros_like(x0)
    err[0, :, 1] = 1.0
    _, info = flow_loss(oracle(x0, noise, 0.0, err)[0], x0, t=t, noise=noise, loss_mask=mask)
    torch.testing.assert_close(info.per_sample, torch.tensor([0.25, 0.0, 0.0]))


@pytest.fixture
def one_thread():
    """Tiny ops run fastest on one thread, and a busy CI machine makes extra threads spin."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
def test_flow_loss_trains_a_tiny_mlp():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)

    def toy_data(n: int) -> Tensor:  # two Gaussian blobs in 2-D
        centres = torch.tensor([[-2.0, 0.0], [2.0, 1.0]])
        pick = torch.randint(0, 2, (n,), generator=gen)
        return centres[pick] + 0.3 * torch.randn(n, 2, generator=gen)

    net = nn.Sequential(nn.Linear(3, 32), nn.SiLU(), nn.Linear(32, 32), nn.SiLU(), nn.Linear(32, 2))

    def model(x, t):
        return net(torch.cat([x, t[:, None]], dim=1))

    x_eval = toy_data(2048)
    t_eval = sample_train_t(2048, shift=1.0, generator=gen)
    n_eval = torch.randn(2048, 2, generator=gen)

    def eval_loss() -> float:
        with torch.no_grad():
            return flow_loss(model, x_eval, t=t_eval, noise=n_eval)[0].item()

    before = eval_loss()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(200):
        loss, _ = flow_loss(model, toy_data(128), generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = eval_loss()
    assert after < 0.7 * before, (before, after)  # 3.26 -> 1.65 when written


# --- guidance -----------------------------------------------------------------------------------


class CountingModel:
    """v depends on x, t and a text embedding, per sample; counts calls and batch sizes."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def __call__(self, x: Tensor, t: Tensor, *, text: Tensor, gain: float = 1.0) -> Tensor:
        self.batches.append(x.shape[0])
        return gain * (x * t.view(-1, 1, 1, 1, 1) + text.mean(1).view(-1, 1, 1, 1, 1))


def test_cfg_equals_manual_combination_in_one_call():
    x = seeded_noise((2, 3, 2, 4, 4))
    t = torch.full((2,), 0.7)
    cond = {"text": seeded_noise((2, 5), 1), "gain": 2.0}
    uncond = {"text": torch.zeros(1, 5), "gain": 2.0}  # batch 1 is broadcast
    model = CountingModel()
    guided = CFGDenoiser(model, cond, uncond, scale=4.0)(x, t)
    assert model.batches == [4]
    v_c = model(x, t, **cond)
    v_u = model(x, t, text=torch.zeros(2, 5), gain=2.0)
    torch.testing.assert_close(guided, v_u + 4.0 * (v_c - v_u))


def test_cfg_one_forward_per_step_and_scale_one_skips_uncond():
    x = seeded_noise((2, 3, 2, 4, 4))
    cond, uncond = {"text": seeded_noise((2, 5), 1)}, {"text": torch.zeros(2, 5)}
    model = CountingModel()
    sample_euler(CFGDenoiser(model, cond, uncond, scale=5.0), x, flow_sigmas(6))
    assert model.batches == [4] * 6
    model.batches.clear()
    out = sample_euler(CFGDenoiser(model, cond, uncond, scale=1.0), x, flow_sigmas(6))
    assert model.batches == [2] * 6
    torch.testing.assert_close(out, sample_euler(model, x, flow_sigmas(6), extra_args=cond))
    # A schedule guiding only for t in [0.25, 0.85]: uncond pass only on those steps.
    model.batches.clear()
    schedule = guidance_interval(5.0, t_min=0.25, t_max=0.85)
    sample_euler(CFGDenoiser(model, cond, uncond, schedule=schedule), x, flow_sigmas(10))
    assert model.batches == [2, 2, 4, 4, 4, 4, 4, 4, 2, 2]


def test_cfg_rejects_mismatched_conditions():
    model = CountingModel()
    with pytest.raises(ValueError, match="keys"):
        CFGDenoiser(model, {"text": torch.zeros(2, 5)}, {}, scale=3.0)
    bad = CFGDenoiser(model, {"text": torch.zeros(2, 5)}, {"text": torch.zeros(2, 7)}, scale=3.0)
    with pytest.raises(ValueError, match="one length"):
        bad(torch.zeros(2, 1, 1, 1, 1), torch.ones(2))
    good = CFGDenoiser(model, {"text": torch.zeros(2, 5)}, {"text": torch.ones(2, 5)}, scale=3.0)
    with pytest.raises(ValueError, match="already set"):
        good(torch.zeros(2, 1, 1, 1, 1), torch.ones(2), text=torch.zeros(2, 5))


def test_drop_condition():
    mask = drop_condition(0.1, 10000, torch.Generator().manual_seed(0))
    assert mask.shape == (10000,) and mask.dtype == torch.bool
    assert mask.float().mean().item() == pytest.approx(0.1, abs=0.01)
    assert not drop_condition(0.0, 100).any() and drop_condition(1.0, 100).all()

"""Random numbers on the device that uses them (smoothing, denoiser, purification, training).

The noise of CERTIFY / PREDICT, the denoiser's training and sampler noise, purification and the
training loop's noise tensors are drawn on the device of the tensors they perturb. On the CPU the
streams are the ones drawn before (checked here against copies of the previous code), except
where the previous code drew numbers it threw away (one-shot denoising drew the DDPM posterior
noise of a step whose ``prev_sample`` it never used): there the stream changed and only the
distribution is kept, checked within sampling error. Tests marked ``cuda`` run where a GPU is.
"""

import math

import pytest
import torch
from conftest import LinearClassifier
from scipy import stats

from robustaudio.defenses.denoiser import Denoiser, front_end_signature, unet_config
from robustaudio.defenses.purification import Purified
from robustaudio.defenses.smoothing import (
    ABSTAIN,
    Smooth,
    certified_accuracy,
    certify_clips,
    generator_for,
    lower_confidence_bound,
)
from robustaudio.defenses.training import TrainSettings, augment, batch_logits
from robustaudio.models import LogMelCNN
from robustaudio.models.base import frozen

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
DIM = 64


# -- the previous implementations (CPU draw, then copy), kept here as references ------------------

def old_sample_counts(smooth, x, num, batch_size, generator):
    counts = torch.zeros(smooth.num_classes, dtype=torch.long)
    remaining = num
    with frozen(smooth.model), torch.no_grad():
        while remaining > 0:
            this = min(batch_size, remaining)
            remaining -= this
            batch = x.unsqueeze(0).expand(this, *x.shape)
            noise = torch.randn(batch.shape, generator=generator).to(x.device) * smooth.sigma
            noisy = batch + noise
            if smooth.denoiser is not None:  # the old denoise: scheduler.step, which drew posterior noise
                den = smooth.denoiser
                t = den.timestep(smooth.sigma)
                z = den._to_unet(noisy) * den.scheduler.alphas_cumprod[t].to(noisy.device).sqrt()
                noisy = den._from_unet(den.scheduler.step(den._epsilon(z, t), t, z,
                                                          generator=generator).pred_original_sample)
            logits = smooth.model(noisy) if smooth.domain == "waveform" else smooth.model.forward_features(noisy)
            counts += torch.bincount(logits.argmax(1).cpu(), minlength=smooth.num_classes)
    return counts.numpy()


def old_certify(smooth, audio, n0, n, alpha, batch_size, generator):
    x = smooth.clean_input(audio)
    guess = int(old_sample_counts(smooth, x, n0, batch_size, generator).argmax())
    count = int(old_sample_counts(smooth, x, n, batch_size, generator)[guess])
    p_lower = lower_confidence_bound(count, n, alpha)
    if p_lower < 0.5:
        return ABSTAIN, 0.0, count
    return guess, smooth.sigma * float(stats.norm.ppf(p_lower)), count


def old_augment(audio, generator, sample_rate=16000):
    batch, length = audio.shape
    gain = 10 ** ((torch.rand(batch, 1, generator=generator) * 12 - 6) / 20)
    shifts = ((torch.rand(batch, generator=generator) * 2 - 1) * 0.15 * sample_rate).long().tolist()
    shifted = torch.zeros_like(audio)
    for i, s in enumerate(shifts):
        if s >= 0:
            shifted[i, s:] = audio[i, : length - s]
        else:
            shifted[i, :s] = audio[i, -s:]
    x = shifted * gain
    snr = 20 + 30 * torch.rand(batch, 1, generator=generator)
    rms = x.pow(2).mean(dim=1, keepdim=True).sqrt()
    noise = torch.randn(x.shape, generator=generator) * rms * 10 ** (-snr / 20)
    return (x + noise).clamp(-1, 1)


def old_loss_draws(denoiser, x, generator):
    z = denoiser._to_unet(x)
    t = torch.randint(0, denoiser.timestep(denoiser.sigma_max) + 1, (z.shape[0],), generator=generator)
    return t, torch.randn(z.shape, generator=generator)


def old_purify(denoiser, x, sigma, steps, generator=None):
    from diffusers import DDPMScheduler
    t_star = denoiser.timestep(sigma)
    sampler = DDPMScheduler.from_config(denoiser.scheduler.config)
    sampler.set_timesteps(timesteps=sorted({max(1, round(t_star * (steps - k) / steps)) for k in range(steps)},
                                           reverse=True))
    z = denoiser._to_unet(x)
    noise = torch.randn(z.shape, generator=generator).to(z.device)
    z = sampler.add_noise(z, noise, torch.tensor([t_star], device=z.device))
    for t in sampler.timesteps.tolist():
        z = sampler.step(denoiser._epsilon(z, t), t, z, generator=generator).prev_sample
    return denoiser._from_unet(z)


# -- small models -------------------------------------------------------------------------------

def linear_model():
    w = torch.zeros(2, DIM)
    w[0, 0] = 3.0  # distance to the boundary = x_0
    return LinearClassifier(w, torch.zeros(2))


def linear_clips(sigma):
    clips = []
    for k, margin in enumerate((0.3, 0.8, 1.5, 2.5, -1.0)):
        x = torch.zeros(DIM)
        x[0] = margin * sigma
        clips.append((f"clip{k}", x, 0))
    return clips


class Recorder(LinearClassifier):
    """The linear model, keeping every input it is given (the noisy copies)."""

    def __init__(self):
        w = torch.zeros(2, DIM)
        w[0, 0] = 3.0
        super().__init__(w, torch.zeros(2))
        self.seen = []

    def features(self, audio):
        self.seen.append(audio.detach().clone())
        return audio


def tiny_classifier(seed=0):
    torch.manual_seed(seed)
    return LogMelCNN(("bird", "dog"), n_mels=16, channels=(4,), feature_mean=-6.0, feature_std=5.0).eval()


def tiny_denoiser(model, sigma_max=1.0, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad():
        shape = tuple(model.features(torch.zeros(1, model.clip_samples)).shape[1:])
    return Denoiser("feature", shape, 1.0, front_end_signature(model, "feature"), unet_config("feature", shape, (8, 8)),
                    sigma_max=sigma_max, name="tiny").eval()


def normal_checks(values: torch.Tensor, std: float) -> None:
    """Mean, std and a Kolmogorov–Smirnov test against N(0, std²) on ``values`` (flattened)."""
    v = values.flatten().double().cpu()
    n = v.numel()
    assert abs(float(v.mean())) < 5 * std / math.sqrt(n)
    assert abs(float(v.std()) / std - 1) < 5 / math.sqrt(2 * n)
    assert stats.kstest(v.numpy() / std, "norm").pvalue > 1e-4


# -- (a) same seed, same results on the CPU; the CPU stream is the previous one ----------------------

def test_generator_for_keeps_a_generator_on_its_device_and_seeds_a_new_one_otherwise():
    g = torch.Generator().manual_seed(3)
    assert generator_for("cpu", g) is g
    assert generator_for(torch.device("cpu"), g, seed=9) is g  # already there: the seed is not used
    assert generator_for("cpu", None) is None
    fresh = generator_for("cpu", None, seed=9)
    assert torch.equal(torch.randn(5, generator=fresh), torch.randn(5, generator=torch.Generator().manual_seed(9)))


def test_certify_rows_equal_the_previous_cpu_implementation_and_repeat_exactly():
    sigma, n0, n, alpha, batch = 0.5, 50, 3000, 0.001, 700
    smooth = Smooth(linear_model(), sigma, domain="waveform")
    clips = linear_clips(sigma)
    rows = certify_clips(smooth, clips, n0=n0, n=n, alpha=alpha, batch_size=batch, seed=4)
    again = certify_clips(smooth, clips, n0=n0, n=n, alpha=alpha, batch_size=batch, seed=4)
    other = certify_clips(smooth, clips, n0=n0, n=n, alpha=alpha, batch_size=batch, seed=5)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]  # noqa: E731
    assert strip(rows) == strip(again)
    assert [r["count"] for r in rows] != [r["count"] for r in other]
    for number, (row, (_, x, _)) in enumerate(zip(rows, clips)):
        generator = torch.Generator().manual_seed(4 * 1_000_003 + number)  # certify_clips' seeding
        prediction, radius, count = old_certify(smooth, x, n0, n, alpha, batch, generator)
        assert row["count"] == count and row["radius"] == radius
        assert row["prediction"] == (None if prediction == ABSTAIN else smooth.model.labels[prediction])
    # PREDICT on the same stream
    x = clips[1][1]
    assert smooth.predict(x, n=500, alpha=0.001, generator=torch.Generator().manual_seed(2)) == 0
    assert (smooth.sample_counts(x, 500, 128, torch.Generator().manual_seed(2))
            == old_sample_counts(smooth, x, 500, 128, torch.Generator().manual_seed(2))).all()


def test_training_draws_on_the_cpu_are_the_previous_ones():
    g = torch.Generator().manual_seed(0)
    audio = 0.2 * torch.randn(6, 8000, generator=g)
    assert torch.equal(augment(audio, torch.Generator().manual_seed(1), 8000),
                       old_augment(audio, torch.Generator().manual_seed(1), 8000))
    model = Recorder()
    settings = TrainSettings(method="noise", noise_sigma=0.3, noise_domain="waveform")
    x = torch.rand(4, DIM)
    for seed in (0, 0):
        model.seen.clear()
        batch_logits(model, x, torch.zeros(4, dtype=torch.long), None, settings, torch.Generator().manual_seed(seed),
                     torch.Generator(), None)
        assert torch.equal(model.seen[0], x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)))


def test_denoiser_draws_on_the_cpu_are_the_previous_ones_and_denoise_draws_nothing():
    model = tiny_classifier()
    denoiser = tiny_denoiser(model)
    x = torch.randn(3, *denoiser.shape, generator=torch.Generator().manual_seed(0))
    # training loss: the same t and noise as before
    t_old, noise_old = old_loss_draws(denoiser, x, torch.Generator().manual_seed(5))
    recorded = {}
    epsilon = denoiser._epsilon

    def record(zt, t):
        recorded["t"], recorded["zt"] = t, zt
        return epsilon(zt, t)

    denoiser._epsilon = record
    denoiser.loss(x, torch.Generator().manual_seed(5))
    del denoiser._epsilon
    assert torch.equal(recorded["t"], t_old)
    assert torch.equal(recorded["zt"], denoiser.scheduler.add_noise(denoiser._to_unet(x), noise_old, t_old))
    # one-shot denoising: the scheduler's x̂_0, and the generator untouched
    g = torch.Generator().manual_seed(7)
    state = g.get_state()
    with torch.no_grad():
        ours = denoiser.denoise(x, 0.25, g)
        t = denoiser.timestep(0.25)
        zt = denoiser._to_unet(x) * denoiser.scheduler.alphas_cumprod[t].sqrt()
        theirs = denoiser._from_unet(denoiser.scheduler.step(denoiser._epsilon(zt, t), t, zt).pred_original_sample)
    assert torch.equal(ours, theirs) and torch.equal(g.get_state(), state)
    # purification: the global stream as before, and a generator's stream as before
    with torch.no_grad():
        for make in (lambda: None, lambda: torch.Generator().manual_seed(11)):
            torch.manual_seed(3)
            new = denoiser.purify(x, 0.25, steps=2, generator=make())
            torch.manual_seed(3)
            old = old_purify(denoiser, x, 0.25, steps=2, generator=make())
            assert torch.allclose(new, old, rtol=0, atol=1e-6)


def test_purified_with_a_seed_repeats_and_without_one_follows_the_global_seed():
    model = tiny_classifier()
    denoiser = tiny_denoiser(model)
    audio = 0.1 * torch.randn(2, model.clip_samples, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = Purified(model, denoiser, sigma=0.25, steps=2, seed=3)(audio)
        b = Purified(model, denoiser, sigma=0.25, steps=2, seed=3)(audio)
        c = Purified(model, denoiser, sigma=0.25, steps=2, seed=4)(audio)
        purified = Purified(model, denoiser, sigma=0.25, steps=2)
        torch.manual_seed(1)
        d = purified(audio)
        torch.manual_seed(1)
        e = purified(audio)
    assert torch.equal(a, b) and not torch.equal(a, c) and torch.equal(d, e)


# -- (b) the noise has the right distribution -----------------------------------------------------

def test_certify_noise_is_gaussian_with_std_sigma():
    sigma = 0.3
    model = Recorder()
    smooth = Smooth(model, sigma, domain="waveform")
    x = torch.zeros(DIM)
    x[1] = 0.7
    smooth.sample_counts(x, 2000, 512, torch.Generator().manual_seed(0))
    noise = torch.cat(model.seen) - x
    assert noise.shape == (2000, DIM)
    normal_checks(noise, sigma)
    assert abs(float(torch.corrcoef(torch.stack([noise[:-1, 0], noise[1:, 0]]))[0, 1])) < 5 / math.sqrt(2000)


def test_training_and_denoiser_noise_have_the_right_distribution():
    model = Recorder()
    settings = TrainSettings(method="noise", noise_sigma=0.05, noise_domain="waveform")
    x = torch.zeros(256, DIM)
    batch_logits(model, x, torch.zeros(256, dtype=torch.long), None, settings, torch.Generator().manual_seed(0),
                 torch.Generator(), None)
    normal_checks(model.seen[0], 0.05)
    # augmentation noise: white, at the drawn SNR (20–50 dB) relative to each shifted, scaled clip's rms
    audio = torch.full((64, 4000), 0.1)  # quiet: the clamp to [-1, 1] never binds
    out = augment(audio, torch.Generator().manual_seed(2), 16000)
    g = torch.Generator().manual_seed(2)  # the scalars augment drew, in its order
    gain = 10 ** ((torch.rand(64, 1, generator=g) * 12 - 6) / 20)
    shifts = ((torch.rand(64, generator=g) * 2 - 1) * 0.15 * 16000).long()
    snr = 20 + 30 * torch.rand(64, 1, generator=g)
    column = torch.arange(4000)
    inside = (column - shifts[:, None] >= 0) & (column - shifts[:, None] < 4000)
    x = 0.1 * inside * gain
    level = x.pow(2).mean(dim=1, keepdim=True).sqrt() * 10 ** (-snr / 20)
    normal_checks((out - x) / level, 1.0)
    # the denoiser's training noise: t uniform on [0, t*(σ_max)], noise N(0, 1) in diffusion units
    denoiser = tiny_denoiser(tiny_classifier())
    recorded = {}

    def record(zt, t):
        recorded["t"], recorded["zt"] = t, zt
        return zt

    denoiser._epsilon = record
    clean = torch.zeros(512, *denoiser.shape)
    denoiser.loss(clean, torch.Generator().manual_seed(1))
    alphas = denoiser.scheduler.alphas_cumprod[recorded["t"]]
    eps = recorded["zt"][:, 0, : denoiser.shape[0], : denoiser.shape[1]] / (1 - alphas).sqrt().view(-1, 1, 1)
    normal_checks(eps[:64], 1.0)
    t_max = denoiser.timestep(denoiser.sigma_max)
    t = recorded["t"].double()
    assert int(t.min()) >= 0 and int(t.max()) <= t_max  # uniform on {0, ..., t_max}: mean t_max / 2
    assert abs(float(t.mean()) - t_max / 2) < 5 * t_max / math.sqrt(12 * len(t))


# -- (c) certified accuracy with the denoiser matches the previous implementation -----------------

def test_denoised_certified_accuracy_equals_the_previous_implementation_within_sampling_error():
    """The old one-shot denoising drew (and threw away) posterior noise from the same generator, so
    the CPU stream changed; certified accuracy must not. The UNet is replaced by a zero noise
    estimate (denoise = identity, exactly) so that the linear model's certificates are known."""
    sigma, n0, n, alpha, batch = 0.5, 50, 4000, 0.001, 1000
    model = linear_model()
    denoiser = Denoiser("waveform", (DIM,), 1.0, front_end_signature(model, "waveform"),
                        unet_config("waveform", (DIM,), (8, 8)), sigma_max=1.0, name="identity").eval()
    denoiser._epsilon = lambda z, t: torch.zeros_like(z)
    smooth = Smooth(model, sigma, domain="waveform", denoiser=denoiser)
    clips = linear_clips(sigma)
    rows = certify_clips(smooth, clips, n0=n0, n=n, alpha=alpha, batch_size=batch, seed=0)
    old_rows = []
    for number, (_, x, label) in enumerate(clips):
        prediction, radius, count = old_certify(smooth, x, n0, n, alpha, batch, torch.Generator().manual_seed(number))
        old_rows.append({"correct": prediction == label, "radius": radius, "count": count})
    assert [r["count"] for r in rows] != [r["count"] for r in old_rows]  # another stream ...
    for new, old, (_, x, _) in zip(rows, old_rows, clips):
        p = float(stats.norm.cdf(abs(float(x[0])) / sigma))  # ... of the same distribution
        assert abs(new["count"] - old["count"]) <= 5 * math.sqrt(2 * n * p * (1 - p))
    radii = [0.0, 0.25 * sigma, 1.0 * sigma, 1.8 * sigma, 3.0 * sigma]  # away from every clip's radius
    assert certified_accuracy(rows, radii) == certified_accuracy(old_rows, radii) == [0.8, 0.6, 0.4, 0.2, 0.0]


# -- on a GPU: draws there, reproducible per seed and device, same distribution -----------------------

@cuda
def test_cuda_certify_draws_on_the_gpu_repeats_and_agrees_with_the_cpu_in_distribution(monkeypatch):
    sigma = 0.5
    cpu = Smooth(linear_model(), sigma, domain="waveform")
    gpu = Smooth(linear_model().cuda(), sigma, domain="waveform")
    clips = linear_clips(sigma)
    draws = []
    randn = torch.randn

    def spy(*args, **kwargs):
        out = randn(*args, **kwargs)
        draws.append((out.device.type, out.numel()))
        return out

    monkeypatch.setattr(torch, "randn", spy)
    a = certify_clips(gpu, clips, n0=50, n=20000, alpha=0.001, batch_size=5000, seed=1)
    monkeypatch.undo()
    assert draws and all(device == "cuda" for device, _ in draws)
    b = certify_clips(gpu, clips, n0=50, n=20000, alpha=0.001, batch_size=5000, seed=1)
    c = certify_clips(cpu, clips, n0=50, n=20000, alpha=0.001, batch_size=5000, seed=1)
    assert [r["count"] for r in a] == [r["count"] for r in b]
    for ours, theirs in zip(a, c):
        assert ours["prediction"] == theirs["prediction"]
        p = theirs["count"] / 20000
        assert abs(ours["count"] - theirs["count"]) <= 5 * math.sqrt(2 * 20000 * max(p * (1 - p), 1e-4)) + 1
    model = Recorder().cuda()
    Smooth(model, sigma, domain="waveform").sample_counts(torch.zeros(DIM, device="cuda"), 4000, 1000,
                                                          torch.Generator(device="cuda").manual_seed(0))
    normal_checks(torch.cat(model.seen), sigma)


@cuda
def test_cuda_purification_training_noise_and_denoiser_loss_draw_on_the_gpu():
    model = tiny_classifier().cuda()
    denoiser = tiny_denoiser(model).cuda()
    audio = 0.1 * torch.randn(2, model.clip_samples, device="cuda")
    with torch.no_grad():
        a = Purified(model, denoiser, seed=3)(audio)
        b = Purified(model, denoiser, seed=3)(audio)
        x = torch.randn(2, *denoiser.shape, device="cuda")
        p = denoiser.purify(x, 0.25, 2, torch.Generator().manual_seed(0))  # a CPU generator: seeds one on the GPU
        q = denoiser.purify(x, 0.25, 2, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and torch.equal(p, q)
    loss = denoiser.loss(x, torch.Generator(device="cuda").manual_seed(0))
    assert loss.device.type == "cuda" and torch.isfinite(loss)
    wave = torch.full((64, 4000), 0.5, device="cuda")
    g = torch.Generator(device="cuda").manual_seed(0)
    assert augment(wave, torch.Generator().manual_seed(0), 16000, g).device.type == "cuda"
    recorder = Recorder().cuda()
    settings = TrainSettings(method="noise", noise_sigma=0.1, noise_domain="waveform")
    batch_logits(recorder, torch.zeros(512, DIM, device="cuda"), torch.zeros(512, dtype=torch.long, device="cuda"),
                 None, settings, torch.Generator().manual_seed(0), torch.Generator(), None)
    normal_checks(recorder.seen[0], 0.1)

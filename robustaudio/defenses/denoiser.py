"""A diffusion denoiser for a classifier's input domain, built from diffusers parts.

Spec §6. The network is a diffusers UNet (``UNet2DModel`` on the normalised log-mel ``[1, F, frames]``
of a classifier's front end, or a convolutional ``UNet1DModel`` on the waveform ``[1, T]``) and
the noise process a diffusers ``DDPMScheduler`` (linear β from 1e-4 to 0.02 over 1000 steps,
ε-prediction). Diffusion runs on ``x / scale``, with ``scale`` the std of the training data in
the domain (≈ 1 for normalised log-mels, ≈ 0.1 for the bundled waveforms), so an input-space
noise std σ is ``σ / scale`` in diffusion units.

- ``timestep(σ)``: ``t*``, the first step where ``√(1 − ᾱ_t) / √ᾱ_t ≥ σ / scale`` (Carlini et al.
  2023; the "2σ" of their [0, 1] images is our ``1 / scale``).
- ``denoise(x + δ, σ)``: one-shot: ``x_t = √ᾱ_t*·(x + δ) / scale``, ``x̂_0`` from the scheduler's
  ``pred_original_sample`` at ``t*`` (denoised smoothing).
- ``purify(x, σ, steps)``: DiffPure (Nie et al. 2022): ``scheduler.add_noise`` to ``t*`` and the
  scheduler's stochastic reverse (DDPM posterior) steps back to 0 over ``steps`` evenly spaced
  timesteps. Differentiable end to end (gradients through the UNet and every sampler step).
- Training (``robustaudio train-denoiser``): the DDPM ε-prediction loss with ``t`` uniform in
  ``[0, t*(sigma_max)]``: the denoiser only learns the noise levels it will be used at, and
  refuses larger σ. An exponential moving average of the weights (diffusers ``EMAModel``) is kept.

A feature-domain denoiser belongs to one front end (its class, sample rate, mel bins, hop and
feature normalisation); :meth:`Denoiser.check_compatible` refuses another.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import versions
from ..data import AudioDataset
from ..models.base import Classifier
from ..models.registry import BUNDLED_DIR, ModelError, load_checkpoint
from ..records import make_folder, save_torch_atomic, write_json_atomic
from .smoothing import generator_for

DENOISER_DOMAINS = ("feature", "waveform")
CHECKPOINT_KIND = "robustaudio-denoiser"
BUNDLED_DENOISERS = {"minievents-logmel": "minievents-logmel-denoiser.pt"}
SCHEDULER = {"num_train_timesteps": 1000, "beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02,
             "prediction_type": "epsilon", "clip_sample": False, "variance_type": "fixed_small"}


class DenoiserError(ValueError):
    """A denoiser that does not fit the model, domain or noise level; the message says the fix."""


def _diffusers() -> ModuleType:
    try:
        import diffusers
    except ImportError as error:  # pragma: no cover - the dev extra installs it
        raise DenoiserError("Diffusion denoisers need diffusers: pip install 'robustaudio[diffusion]'.") from error
    return diffusers


def unet_config(domain: str, shape: tuple[int, ...], channels: tuple[int, ...] = (16, 32, 64),
                layers_per_block: int = 1) -> dict:
    """The diffusers UNet settings for ``domain``: convolutional blocks, no attention (cheap on CPUs)."""
    n = len(channels)
    if domain == "feature":
        return {"class": "UNet2DModel", "sample_size": list(shape), "in_channels": 1, "out_channels": 1,
                "block_out_channels": list(channels), "layers_per_block": layers_per_block, "norm_num_groups": 8,
                "down_block_types": ["DownBlock2D"] * n, "up_block_types": ["UpBlock2D"] * n}
    return {"class": "UNet1DModel", "sample_size": int(shape[-1]), "in_channels": 1, "out_channels": 1,
            "block_out_channels": list(channels), "layers_per_block": layers_per_block, "norm_num_groups": 8,
            "down_block_types": ["DownResnetBlock1D"] * n, "up_block_types": ["UpResnetBlock1D"] * (n - 1),
            "mid_block_type": "MidResTemporalBlock1D", "out_block_type": "OutConv1DBlock",
            "time_embedding_type": "positional", "use_timestep_embedding": True, "act_fn": "mish"}


UNET_CLASSES = ("UNet2DModel", "UNet1DModel")  # what unet_config writes: a checkpoint may name no other callable
UNET_KEYS = {key for domain in ("feature", "waveform") for key in unet_config(domain, (8, 8))} - {"class"}


def front_end_signature(model: Classifier, domain: str) -> dict:
    """What a denoiser must match in ``model``: sample rate and input shape, and for the feature domain the
    front end's class, mel bins, hop and normalisation (mean, std)."""
    signature: dict = {"sample_rate": int(model.sample_rate), "clip_samples": int(model.clip_samples)}
    if domain == "feature":
        front_end = getattr(model, "front_end", None)
        signature["front_end"] = type(front_end).__name__ if front_end is not None else type(model).__name__
        for name in ("n_mels", "hop_length", "frame_shift_ms"):
            if front_end is not None and hasattr(front_end, name):
                signature[name] = getattr(front_end, name)
        for name in ("mean", "std"):
            value = getattr(front_end, name, None) if front_end is not None else None
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                signature[f"feature_{name}"] = round(float(value), 5)
    return signature


class Denoiser(nn.Module):
    """A UNet + DDPM scheduler over inputs ``[B, *shape]`` of one domain (see the module docstring).

    Args:
        domain: ``"feature"`` (normalised log-mel ``[F, frames]``) or ``"waveform"`` (``[T]``).
        shape: the input shape without the batch axis.
        scale: diffusion runs on ``x / scale``.
        signature: :func:`front_end_signature` of the model the denoiser was trained for.
        unet: :func:`unet_config`; scheduler: ``DDPMScheduler`` settings.
        sigma_max: the largest input-space σ it was trained for.
        name: shown in reports.
    """

    def __init__(self, domain: str, shape: tuple[int, ...], scale: float, signature: dict, unet: dict,
                 scheduler: dict | None = None, sigma_max: float = 1.0, name: str = "denoiser"):
        super().__init__()
        if domain not in DENOISER_DOMAINS:
            raise DenoiserError(f"Unknown denoiser domain {domain!r}; use one of {', '.join(DENOISER_DOMAINS)}.")
        diffusers = _diffusers()
        self.domain, self.shape, self.scale = domain, tuple(int(s) for s in shape), float(scale)
        self.signature, self.unet_settings = dict(signature), dict(unet)
        self.scheduler_settings = dict(scheduler or SCHEDULER)
        self.sigma_max, self.name = float(sigma_max), name
        if unet.get("class") not in UNET_CLASSES or not set(unet) - {"class"} <= UNET_KEYS:
            # a weights-only checkpoint must not pick any diffusers callable and its arguments (one fetches a hub repo)
            raise DenoiserError(f"The denoiser's UNet settings are not robustaudio's (class {unet.get('class')!r}, "
                                f"keys {sorted(set(unet) - UNET_KEYS - {'class'})}): use a denoiser written by "
                                f"robustaudio train-denoiser.")
        settings = {k: (tuple(v) if isinstance(v, list) else v) for k, v in unet.items() if k != "class"}
        self.unet = getattr(diffusers, unet["class"])(**settings)
        self.scheduler = diffusers.DDPMScheduler(**self.scheduler_settings)
        self.multiple = 2 ** (len(unet["block_out_channels"]) - 1)  # each down block but the last halves
        self._samplers: dict = {}  # (t*, steps) -> purification sampler and its timesteps

    # -- configuration --------------------------------------------------------------------
    @property
    def config(self) -> dict:
        return {"domain": self.domain, "shape": list(self.shape), "scale": self.scale, "signature": self.signature,
                "unet": self.unet_settings, "scheduler": self.scheduler_settings, "sigma_max": self.sigma_max,
                "name": self.name}

    def check_compatible(self, model: Classifier) -> None:
        """Refuse a model whose input in this domain differs from the one the denoiser was trained on."""
        theirs = front_end_signature(model, self.domain)
        different = {k: (v, theirs.get(k)) for k, v in self.signature.items()
                     if not (theirs.get(k) == v or isinstance(v, float) and isinstance(theirs.get(k), float)
                             and math.isclose(v, theirs[k], rel_tol=1e-3, abs_tol=1e-4))}
        if different:
            what = "; ".join(f"{k}: denoiser {mine!r}, model {other!r}" for k, (mine, other) in different.items())
            raise DenoiserError(f"Denoiser {self.name!r} was trained on another {self.domain} input than this model "
                                f"takes ({what}). Train one for this model: robustaudio train-denoiser --model "
                                f"MODEL --domain {self.domain}.")

    # -- noise levels ---------------------------------------------------------------------
    def noise_ratios(self) -> torch.Tensor:
        """``[T]`` noise-to-signal std ``√(1 − ᾱ_t) / √ᾱ_t`` of each diffusion step (diffusion units)."""
        alphas = self.scheduler.alphas_cumprod.double()
        return ((1 - alphas) / alphas).sqrt()

    def timestep(self, sigma: float) -> int:
        """``t*(σ)``: the first step whose noise ratio reaches ``σ / scale`` (σ in input-space units)."""
        if not (math.isfinite(sigma) and sigma > 0):
            raise DenoiserError(f"sigma must be a finite number > 0, got {sigma}.")
        if sigma > self.sigma_max * (1 + 1e-9):
            raise DenoiserError(f"Denoiser {self.name!r} was trained for σ ≤ {self.sigma_max:g} ({self.domain} units), "
                                f"not σ = {sigma:g}: use a smaller σ, or retrain with robustaudio train-denoiser "
                                f"--sigma-max {sigma:g}.")
        reached = torch.nonzero(self.noise_ratios() >= sigma / self.scale).flatten()
        if reached.numel() == 0:
            raise DenoiserError(f"σ = {sigma:g} is beyond the diffusion schedule's largest noise level.")
        return max(int(reached[0]), 1)

    # -- shapes ---------------------------------------------------------------------------
    def _to_unet(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, *shape]`` input units -> ``[B, 1, *padded]`` diffusion units (zero padding at the end)."""
        if tuple(x.shape[1:]) != self.shape:
            raise DenoiserError(f"Denoiser {self.name!r} takes inputs of shape {list(self.shape)}, got "
                                f"{list(x.shape[1:])}: the model's clip length or front end differs.")
        z = (x / self.scale).unsqueeze(1)
        pad = [0, (-self.shape[-1]) % self.multiple]
        if self.domain == "feature":
            pad += [0, (-self.shape[0]) % self.multiple]
        return F.pad(z, pad)

    def _from_unet(self, z: torch.Tensor) -> torch.Tensor:
        """Crop the padding, drop the channel axis, back to input units: ``[B, *shape]``."""
        z = z[:, 0, ..., : self.shape[-1]]
        if self.domain == "feature":
            z = z[:, : self.shape[0]]
        return z * self.scale

    def _epsilon(self, z: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """The UNet's noise estimate at step ``t`` (an int for the whole batch, or ``[B]``)."""
        steps = torch.full((z.shape[0],), t, device=z.device) if isinstance(t, int) else t
        return self.unet(z, steps).sample

    # -- uses -----------------------------------------------------------------------------
    def denoise(self, noisy: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """One-shot ``x̂_0`` from ``noisy = x + δ``, ``δ ~ N(0, σ²)`` in input units; ``[B, *shape]`` both.

        Deterministic: it draws nothing (``generator`` is accepted for callers that pass one)."""
        t = self.timestep(sigma)
        alpha = self.scheduler.alphas_cumprod[t]  # a 0-d CPU tensor: a scalar operand on any device, no copy
        z = self._to_unet(noisy) * alpha.sqrt()
        # The scheduler's x̂_0 for ε-prediction (DDPMScheduler.step, same floats), without the step's
        # posterior noise draw, which one-shot denoising throws away.
        return self._from_unet((z - (1 - alpha) ** 0.5 * self._epsilon(z, t)) / alpha ** 0.5)

    def purify(self, x: torch.Tensor, sigma: float, steps: int = 2,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """DiffPure: diffuse ``x`` ``[B, *shape]`` to ``t*(σ)``, run ``steps`` stochastic reverse steps to 0.

        All noise is drawn on ``x``'s device: with ``generator`` (or one on that device seeded from it,
        :func:`~robustaudio.defenses.smoothing.generator_for`), else with the device's global generator."""
        if steps < 1:
            raise DenoiserError(f"purification needs at least one reverse step, got {steps}.")
        t_star = self.timestep(sigma)
        sampler, timesteps = self._sampler(t_star, steps)
        z = self._to_unet(x)
        generator = generator_for(z.device, generator)  # every draw on z's device
        noise = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
        alpha = sampler.alphas_cumprod[t_star]
        z = alpha ** 0.5 * z + (1 - alpha) ** 0.5 * noise  # scheduler.add_noise at t*, same floats
        for t in timesteps:
            z = sampler.step(self._epsilon(z, t), t, z, generator=generator).prev_sample
        return self._from_unet(z)

    def _sampler(self, t_star: int, steps: int) -> tuple[Any, list[int]]:
        """A DDPM scheduler set to ``steps`` reverse timesteps from ``t*`` (cached), and those timesteps."""
        key = (t_star, steps)
        cache = self._samplers
        if key not in cache:
            sampler = _diffusers().DDPMScheduler.from_config(self.scheduler.config)
            sampler.set_timesteps(timesteps=sorted({max(1, round(t_star * (steps - k) / steps))
                                                    for k in range(steps)}, reverse=True))
            cache[key] = (sampler, sampler.timesteps.tolist())
        return cache[key]

    def loss(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """DDPM ε-prediction MSE on clean inputs ``x`` ``[B, *shape]``, ``t`` uniform in ``[0, t*(sigma_max)]``.

        ``t`` and the noise are drawn on ``x``'s device (``generator`` if it lives there, else one seeded
        from it; on the CPU the stream is unchanged)."""
        z = self._to_unet(x)
        generator = generator_for(z.device, generator)
        t = torch.randint(0, self.timestep(self.sigma_max) + 1, (z.shape[0],), generator=generator, device=z.device)
        noise = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
        return F.mse_loss(self._epsilon(self.scheduler.add_noise(z, noise, t), t), noise)

    # -- files ----------------------------------------------------------------------------
    def save(self, path: str | Path, card: dict | None = None) -> None:
        """A weights-only-loadable checkpoint at ``path`` and, if given, its card at ``path`` with ``.json``."""
        path = make_folder(Path(path).parent) / Path(path).name
        save_torch_atomic(path, {"kind": CHECKPOINT_KIND, "config": self.config, "state_dict": self.unet.state_dict()})
        if card is not None:
            write_json_atomic(path.with_suffix(".json"), {**card, "checkpoint_bytes": path.stat().st_size})


def load_denoiser(name_or_path: str | Path, device: str | torch.device = "cpu", trust_checkpoint: bool = False
                  ) -> Denoiser:
    """A bundled denoiser by name (``minievents-logmel``) or a checkpoint written by :meth:`Denoiser.save`;
    a checkpoint holding pickled objects is refused unless ``trust_checkpoint``."""
    if str(name_or_path) in BUNDLED_DENOISERS:
        path = BUNDLED_DIR / BUNDLED_DENOISERS[str(name_or_path)]
        if not path.is_file():
            raise DenoiserError(f"The bundled denoiser {name_or_path!r} is missing ({path}); rebuild it with "
                                f"`python experiments/defenses.py --denoiser-only`.")
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise DenoiserError(f"Denoiser {str(name_or_path)!r} is neither a file nor a bundled denoiser "
                                f"({', '.join(BUNDLED_DENOISERS)}); train one with robustaudio train-denoiser.")
    try:
        checkpoint = load_checkpoint(path, trust_checkpoint)
    except ModelError as error:
        if "pickled" in str(error):  # the flag is certify's; defend loads only state dicts
            raise DenoiserError(f"Denoiser {str(path)!r} holds pickled Python objects, which can run code when "
                                f"loaded: re-save it as a state dict (Denoiser.save, as robustaudio train-denoiser "
                                f"writes), or, if you trust its source, use it with `robustaudio certify "
                                f"--trust-checkpoint`.") from error
        raise DenoiserError(str(error)) from error
    if not isinstance(checkpoint, dict) or checkpoint.get("kind") != CHECKPOINT_KIND:
        raise DenoiserError(f"{path} is not a robustaudio denoiser checkpoint (written by robustaudio train-denoiser); "
                            f"a classifier checkpoint goes to --model/--weights.")
    try:
        denoiser = Denoiser(**checkpoint["config"])
        denoiser.unet.load_state_dict(checkpoint["state_dict"])
    except DenoiserError:
        raise
    except (TypeError, KeyError, ValueError, AttributeError, RuntimeError) as error:  # a damaged or foreign config
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DenoiserError(f"{path} is not a usable denoiser checkpoint ({reason}): use one written by robustaudio "
                            f"train-denoiser.") from error
    return denoiser.to(device).eval()


@dataclass
class DenoiserSettings:
    """How to train a denoiser; ``sigma_max`` in the domain's units."""

    domain: str = "feature"
    epochs: int = 60
    batch_size: int = 32
    lr: float = 2e-3
    sigma_max: float = 1.0
    channels: tuple[int, ...] = (16, 32, 64)
    ema_decay: float = 0.995
    augment: bool = True
    seed: int = 0


def domain_inputs(model: Classifier, audio: torch.Tensor, domain: str) -> torch.Tensor:
    """``audio`` ``[B, T]`` in ``domain``: itself, or the model's normalised features ``[B, F, frames]`` (no grad)."""
    if domain == "waveform":
        return audio
    with torch.no_grad():
        return model.features(audio)


def denoising_error(denoiser: Denoiser, clean: torch.Tensor, sigma: float, seed: int = 0) -> dict:
    """Mean squared error per value of one-shot denoising at ``sigma`` vs the noisy input's (≈ σ²), on ``clean``."""
    generator = torch.Generator(device=clean.device).manual_seed(seed)
    noisy = clean + sigma * torch.randn(clean.shape, generator=generator, device=clean.device)
    with torch.no_grad():
        denoised = torch.cat([denoiser.denoise(noisy[i:i + 64], sigma, generator) for i in range(0, len(noisy), 64)])
    return {"sigma": sigma, "noisy_mse": float((noisy - clean).pow(2).mean()),
            "denoised_mse": float((denoised - clean).pow(2).mean())}


def train_denoiser(model: Classifier, dataset: AudioDataset, settings: DenoiserSettings, *, model_name: str,
                   train_split: str = "train", test_split: str = "test", name: str | None = None,
                   device: str | torch.device = "cpu", log: Callable[[str], None] | None = None
                   ) -> tuple[Denoiser, dict]:
    """Train a denoiser for ``model``'s input in ``settings.domain`` on ``dataset``; returns it and its card."""
    _diffusers()  # a missing extra: its install line, before any work
    from diffusers.training_utils import EMAModel

    from .training_data import augment, load_split

    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)  # order and augmentation scalars (CPU)
    # Noise tensors and diffusion steps on the device that uses them; on the CPU this is ``generator``
    # itself, so CPU training draws what it drew before.
    noise_generator = generator_for(device, generator, seed=settings.seed + 1)
    model = model.to(device).eval()
    train, test = load_split(dataset, model, train_split), load_split(dataset, model, test_split)
    clean = torch.cat([domain_inputs(model, a.to(device), settings.domain) for a, _, _ in train.chunks()])
    denoiser = Denoiser(settings.domain, tuple(clean.shape[1:]), float(clean.std()),
                        front_end_signature(model, settings.domain),
                        unet_config(settings.domain, tuple(clean.shape[1:]), tuple(settings.channels)),
                        sigma_max=settings.sigma_max, name=name or f"{model_name}-{settings.domain}").to(device)
    ema = EMAModel(denoiser.unet.parameters(), decay=settings.ema_decay)
    optimizer = torch.optim.AdamW(denoiser.unet.parameters(), lr=settings.lr, weight_decay=1e-4)
    steps_per_epoch = -(-len(train) // settings.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=settings.lr,
                                                   total_steps=settings.epochs * steps_per_epoch)
    start = time.perf_counter()
    for epoch in range(settings.epochs):
        denoiser.train()
        order = torch.randperm(len(train), generator=generator)
        total = 0.0
        for i in range(0, len(order), settings.batch_size):
            audio = train.audio[order[i:i + settings.batch_size]].to(device)
            audio = augment(audio, generator, model.sample_rate, noise_generator) if settings.augment else audio
            loss = denoiser.loss(domain_inputs(model, audio, settings.domain), noise_generator)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            ema.step(denoiser.unet.parameters())
            total += float(loss.detach()) * len(audio)
        if log is not None and (epoch % 10 == 9 or epoch == settings.epochs - 1):
            log(f"denoiser epoch {epoch + 1}: ε-MSE {total / len(train):.4f}")
    seconds = time.perf_counter() - start
    ema.copy_to(denoiser.unet.parameters())
    denoiser.eval()
    test_clean = torch.cat([domain_inputs(model, a.to(device), settings.domain) for a, _, _ in test.chunks()])
    card = {
        "denoiser": denoiser.name, "for_model": model_name, "domain": settings.domain, "shape": list(denoiser.shape),
        "scale": denoiser.scale, "signature": denoiser.signature, "sigma_max": settings.sigma_max,
        "t_max": denoiser.timestep(settings.sigma_max), "train_clips": len(train), "test_clips": len(test),
        "settings": {**settings.__dict__, "channels": list(settings.channels)}, "seed": settings.seed,
        "parameters": sum(p.numel() for p in denoiser.unet.parameters()), "training_seconds": round(seconds, 1),
        "test_denoising": [denoising_error(denoiser, test_clean, s * settings.sigma_max, settings.seed)
                           for s in (0.25, 0.5, 1.0)],
        "unet": denoiser.unet_settings, "scheduler": denoiser.scheduler_settings, "versions": versions(),
    }
    return denoiser.cpu(), card

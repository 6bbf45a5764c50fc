"""Randomized smoothing (Cohen, Rosenfeld & Kolter 2019): PREDICT and CERTIFY, optionally denoised.

The smoothed classifier is ``g(x) = argmax_c P(f(x + ε) = c)``, ``ε ~ N(0, σ² I)``, where ``x`` is
the clip in the space the attacker perturbs (spec §5–6, **[ours]** for audio): the waveform
(``[T]`` samples, full scale 1) or the model's normalised log-mel features (``[F, frames]``).
``σ`` and the certified L2 radius are in that space's units; each radius is also stated as an
SNR, ``20·log10(‖x‖₂ / R)`` dB, the quietest L2 perturbation the certificate cannot rule out
being exactly as loud as the clip's norm allows.

With a denoiser (Carlini et al. 2023, "(Certified!!) Adversarial Robustness for Free!"),
``f = classifier ∘ denoise``: one-shot denoising at the diffusion step matched to σ
(:meth:`~robustaudio.defenses.denoiser.Denoiser.denoise`).

CERTIFY draws ``n0`` selection samples to guess the top class ĉ and ``n`` *separate* estimation
samples to count it; ``p_A`` is the one-sided (1 − α) Clopper–Pearson lower bound on
``P(f(x + ε) = ĉ)`` (scipy); it abstains when ``p_A < 1/2`` (as Cohen et al.'s code: ``p_A = 1/2``
exactly gives radius 0), else returns ĉ with radius ``σ·Φ⁻¹(p_A)``. PREDICT abstains unless a two-sided
binomial test (scipy) of the two top counts rejects a tie at level α. Noise is drawn ``batch_size`` copies
at a time and predictions counted on the device (``index_add_``).

Random numbers are drawn on the device that uses them (:func:`generator_for`): the noise of every
batch comes from a generator on the model's device, and the counts stay there until the clip is
done, so a GPU run neither draws on the CPU nor copies noise or waits on the device per batch.
:func:`certify_clips` seeds one generator per clip on the model's device from ``(seed, clip
number)``. On the CPU the stream is the one drawn before this change (same seed, same
certificates); on a GPU the noise is the GPU generator's stream, equal in distribution and
reproducible for a given seed and device.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy import stats

from ..attacks.threat import input_view
from ..data import AudioDataset
from ..models.base import Classifier, frozen
from ..records import append_rows, append_warnings, read_rows

if TYPE_CHECKING:
    from .denoiser import Denoiser

ABSTAIN = -1
DOMAINS = ("waveform", "feature")


class SmoothingError(ValueError):
    """Smoothing settings that cannot give a certificate; the message says the fix."""


def generator_for(device: str | torch.device, generator: torch.Generator | None = None,
                  seed: int | None = None) -> torch.Generator | None:
    """A generator on ``device`` for noise tensors drawn there (no CPU draw and copy in hot loops).

    ``generator`` itself when it already lives on ``device`` (CPU runs keep their stream); otherwise
    a new generator on ``device`` seeded with ``seed`` or, without one, with one 63-bit integer drawn
    from ``generator`` (so it advances, and the result is reproducible for a given seed and device).
    ``generator=None`` and no ``seed``: None, i.e. ``device``'s global generator (``torch.manual_seed``).
    """
    device = torch.device(device)
    if generator is not None and _same_device(generator.device, device):
        return generator
    if seed is None:
        if generator is None:
            return None
        seed = int(torch.randint(0, 2**63 - 1, (1,), generator=generator))
    return torch.Generator(device=device).manual_seed(int(seed))


def _same_device(a: torch.device, b: torch.device) -> bool:
    if a.type != b.type:
        return False
    if a.type != "cuda":
        return True
    current = torch.cuda.current_device() if torch.cuda.is_available() else 0
    return (a.index if a.index is not None else current) == (b.index if b.index is not None else current)


def lower_confidence_bound(count: int, n: int, alpha: float) -> float:
    """One-sided ``(1 − alpha)`` Clopper–Pearson lower bound on a binomial proportion (``count`` of ``n``)."""
    result = stats.binomtest(int(count), int(n), alternative="greater")
    return float(result.proportion_ci(confidence_level=1 - alpha, method="exact").low)


def check_settings(sigma: float, n0: int | None = None, n: int | None = None, alpha: float = 0.001) -> None:
    """Raise :class:`SmoothingError` for σ ≤ 0, sample counts < 1, ``n0 > n`` or α outside (0, 1)."""
    if not (math.isfinite(sigma) and sigma > 0):
        raise SmoothingError(f"sigma must be a finite number > 0, got {sigma}: it is the noise std in the smoothed "
                             f"space (e.g. 0.25 on normalised log-mels, 0.01 on waveforms).")
    if not 0 < alpha < 1:
        raise SmoothingError(f"alpha must be in (0, 1), got {alpha}; Cohen et al. use 0.001.")
    if (n0 is not None and n0 < 1) or (n is not None and n < 1):
        raise SmoothingError(f"n0 and n must be >= 1, got n0={n0}, n={n}.")
    if n0 is not None and n is not None and n0 > n:
        raise SmoothingError(f"n0={n0} selection samples exceed n={n} estimation samples: the bound comes from the "
                             f"n samples, so n must be the larger (Cohen et al.: n0=100, n=100000); raise --n or "
                             f"lower --n0.")


@dataclass
class Certificate:
    """CERTIFY's answer for one clip: ``prediction`` (class index or ``ABSTAIN``), ``radius`` (L2, in the
    smoothed space's units; 0 when abstaining), ``p_lower`` (the bound on p_A), ``count`` of ĉ among ``n``."""

    prediction: int
    radius: float
    p_lower: float
    count: int
    n: int


class Smooth:
    """A smoothed classifier around ``model`` in ``domain``, with noise ``sigma`` and an optional denoiser.

    Args:
        model: a single-label :class:`~robustaudio.models.Classifier` (its weights are not changed).
        sigma: noise std in ``domain`` units (waveform samples, or normalised log-mel units).
        domain: ``"waveform"`` or ``"feature"``; with a denoiser, its domain (the default).
        denoiser: a :class:`~robustaudio.defenses.denoiser.Denoiser` for ``model``'s input in ``domain``.
    """

    def __init__(self, model: Classifier, sigma: float, domain: str | None = None,
                 denoiser: Denoiser | None = None):
        check_settings(sigma)
        if model.multilabel:
            raise SmoothingError("Randomized smoothing certifies one top class; this model is multi-label. Certify a "
                                 "single-label model.")
        domain = domain or (denoiser.domain if denoiser is not None else "waveform")
        if domain not in DOMAINS:
            raise SmoothingError(f"Unknown smoothing domain {domain!r}; use one of {', '.join(DOMAINS)}.")
        if denoiser is not None:
            if denoiser.domain != domain:
                raise SmoothingError(f"The denoiser works on the {denoiser.domain} domain but smoothing was asked in "
                                     f"the {domain} domain: use --domain {denoiser.domain}, or a denoiser trained on "
                                     f"{domain} inputs (robustaudio train-denoiser --domain {domain}).")
            denoiser.check_compatible(model)
            denoiser.timestep(sigma)  # refuses a σ beyond the denoiser's trained range
        self.model, self.sigma, self.domain, self.denoiser = model, float(sigma), domain, denoiser
        self.num_classes = model.num_classes

    def clean_input(self, audio: torch.Tensor) -> torch.Tensor:
        """The clip ``[T]`` in the smoothed space: ``[T]`` (waveform) or ``[F, frames]`` (features)."""
        with torch.no_grad():  # the domain views have one owner: the threat model's input_view
            return input_view(self.model, audio.reshape(1, -1).to(self.device), self.domain)[0][0]

    @property
    def device(self) -> torch.device:
        parameter = next(self.model.parameters(), None)
        return parameter.device if parameter is not None else torch.device("cpu")

    def base_logits(self, noisy: torch.Tensor, video: torch.Tensor | None = None,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """``f``'s logits ``[b, K]`` for noisy inputs ``[b, ...]`` in the smoothed space (denoised first)."""
        if self.denoiser is not None:
            noisy = self.denoiser.denoise(noisy, self.sigma, generator=generator)
        return self.model(noisy, video) if self.domain == "waveform" else self.model.forward_features(noisy, video)

    def sample_counts(self, x: torch.Tensor, num: int, batch_size: int, generator: torch.Generator | None = None,
                      video: torch.Tensor | None = None) -> np.ndarray:
        """Counts ``[K]`` of ``f``'s decisions on ``num`` noisy copies of ``x`` (one clip in the smoothed space).

        The noise is drawn on ``x``'s device (``generator`` there, or one seeded from it: see
        :func:`generator_for`) and the counts are summed there, read back once at the end.
        """
        generator = generator_for(x.device, generator)
        # The noise in float32 at least, also under bf16 autocast (which may hand x over in bf16): the
        # certificate assumes Gaussian noise, not its 8-bit-mantissa rounding; the passes may run in bf16.
        dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
        counts = torch.zeros(self.num_classes, dtype=torch.long, device=x.device)
        remaining = num
        with frozen(self.model), torch.no_grad():
            while remaining > 0:
                this = min(batch_size, remaining)
                remaining -= this
                noisy = torch.randn((this, *x.shape), generator=generator, device=x.device, dtype=dtype)
                noisy.mul_(self.sigma).add_(x)  # x + σ·ε, the same floats as before, without a second buffer
                copies = None if video is None else video.unsqueeze(0).expand(this, *video.shape)
                predictions = self.base_logits(noisy, copies, generator).argmax(dim=1)
                counts.index_add_(0, predictions, torch.ones_like(predictions))  # bincount would wait on a GPU
        return counts.cpu().numpy()

    def predict(self, audio: torch.Tensor, n: int, alpha: float, batch_size: int = 200,
                generator: torch.Generator | None = None, video: torch.Tensor | None = None) -> int:
        """PREDICT: the top class, or ``ABSTAIN`` when a binomial test cannot tell the two top counts apart."""
        check_settings(self.sigma, n=n, alpha=alpha)
        counts = self.sample_counts(self.clean_input(audio), n, batch_size, generator, video)
        top2 = counts.argsort()[::-1][:2]
        count_a, count_b = int(counts[top2[0]]), int(counts[top2[1]])
        if stats.binomtest(count_a, count_a + count_b, p=0.5).pvalue > alpha:
            return ABSTAIN
        return int(top2[0])

    def certify(self, audio: torch.Tensor, n0: int, n: int, alpha: float, batch_size: int = 200,
                generator: torch.Generator | None = None, video: torch.Tensor | None = None) -> Certificate:
        """CERTIFY one clip ``audio`` ``[T]``: with probability ≥ 1 − α over the noise, ``g`` predicts the
        returned class everywhere within the returned L2 radius (or abstains)."""
        check_settings(self.sigma, n0, n, alpha)
        x = self.clean_input(audio)
        selection = self.sample_counts(x, n0, batch_size, generator, video)
        guess = int(selection.argmax())
        estimation = self.sample_counts(x, n, batch_size, generator, video)
        count = int(estimation[guess])
        p_lower = lower_confidence_bound(count, n, alpha)
        if p_lower < 0.5:
            return Certificate(ABSTAIN, 0.0, p_lower, count, n)
        return Certificate(guess, self.sigma * float(stats.norm.ppf(p_lower)), p_lower, count, n)

    def describe(self) -> str:
        denoised = f", denoised ({self.denoiser.name})" if self.denoiser is not None else ""
        return f"σ={self.sigma:g} ({self.domain}){denoised}"


def snr_of_radius(norm: float, radius: float) -> float | None:
    """``20·log10(‖x‖₂ / R)`` dB: a perturbation of L2 norm ``radius`` against a clip of L2 norm ``norm``."""
    return 20 * math.log10(norm / radius) if radius > 0 and norm > 0 else None


def usable_clips(dataset: AudioDataset, model: Classifier, limit: int | None = None, device: str | torch.device = "cpu"
                 ) -> tuple[list[tuple[str, torch.Tensor, int]], list[dict]]:
    """The clips to certify, ``(clip_id, audio [T] on device, label index)``, and the data's warnings
    (``{"clip_id", "kind": "skipped" | "note", "message"}``: unusable clips are skipped and said, never
    dropped silently); a one-line :class:`SmoothingError` if no clip is usable."""
    clips, warnings = [], []
    for batch in dataset.batches(model, 64, limit=limit):
        warnings += batch.warnings
        clips += [(clip_id, audio.to(device), int(label))
                  for clip_id, audio, label in zip(batch.ids, batch.audio, batch.labels.tolist(), strict=True)]
    if not clips:
        skipped = [w for w in warnings if w["kind"] == "skipped"]
        raise SmoothingError(f"No usable clip to certify in {dataset.root} ({len(skipped)} skipped"
                             + (f"; first: {skipped[0]['message']}" if skipped else "") + "): check the data.")
    return clips, warnings


def keep_warnings(out: str | Path, warnings: list[dict]) -> list[dict]:
    """Record the data's warnings (:func:`usable_clips`) in ``out/warnings.jsonl``; returns the skipped clips'."""
    if warnings:
        append_warnings(out, warnings)
    return [w for w in warnings if w["kind"] == "skipped"]


def certify_clips(smooth: Smooth, clips: Iterable[tuple[str, torch.Tensor, int]], *, n0: int, n: int,
                  alpha: float, batch_size: int = 200, seed: int = 0, rows_file: str | Path | None = None,
                  source: Mapping[str, object] | None = None,
                  on_clip: Callable[[dict, bool], None] | None = None) -> list[dict]:
    """CERTIFY every ``(clip_id, audio [T], label index)``; one row per clip.

    Each clip draws its noise from a generator on the model's device seeded with ``(seed, clip
    number)``, so a run resumed
    from ``rows_file`` (JSON lines, appended clip by clip with :func:`~robustaudio.records.append_rows`;
    finished clips are read back, not redone, and a row a crash cut off is redone) gives the rows of an
    uninterrupted one.
    ``source``: what is certified (e.g. the model, its weights, the data and split), recorded in every row
    and, like the settings and ``seed``, checked on resume: rows of another model or dataset are refused,
    never reused. ``on_clip(row, kept)``: called per clip in order, ``kept`` true for a row read back from
    ``rows_file`` (for progress).

    Row fields: clip_id, label, prediction (class name, or None when abstaining), correct, radius,
    p_lower, count, n, n0, alpha, sigma, domain, denoiser, seed, the keys of ``source``, norm (‖x‖₂ in the
    smoothed space), snr_db (the radius as SNR), seconds.
    """
    check_settings(smooth.sigma, n0, n, alpha)
    settings = {"n": n, "n0": n0, "alpha": alpha, "sigma": smooth.sigma, "domain": smooth.domain,
                "denoiser": smooth.denoiser.name if smooth.denoiser is not None else None, "seed": seed,
                **(source or {})}
    done: dict[str, dict] = {}
    for row in read_rows(rows_file) if rows_file is not None else []:
        differ = {k: (row.get(k), v) for k, v in settings.items() if row.get(k) != v}
        if differ:
            raise SmoothingError(f"{rows_file} holds certificates of another run ("
                                 + ", ".join(f"{k} {old!r}, not {new!r}" for k, (old, new) in differ.items())
                                 + "): use another --out, or --restart to discard them.")
        done[row["clip_id"]] = row
    rows = []
    labels = smooth.model.labels
    for number, (clip_id, audio, label) in enumerate(clips):
        if clip_id in done:
            rows.append(done[clip_id])
            if on_clip is not None:
                on_clip(done[clip_id], True)
            continue
        start = time.perf_counter()
        generator = torch.Generator(device=smooth.device).manual_seed(seed * 1_000_003 + number)
        certificate = smooth.certify(audio, n0, n, alpha, batch_size, generator)
        norm = float(smooth.clean_input(audio).norm())
        row = {"clip_id": clip_id, "label": labels[label],
               "prediction": None if certificate.prediction == ABSTAIN else labels[certificate.prediction],
               "correct": certificate.prediction == label, "radius": certificate.radius,
               "p_lower": certificate.p_lower, "count": certificate.count, **settings, "norm": norm,
               "snr_db": snr_of_radius(norm, certificate.radius), "seconds": time.perf_counter() - start}
        rows.append(row)
        if rows_file is not None:
            append_rows(rows_file, [row])
        if on_clip is not None:
            on_clip(row, False)
    return rows


def certified_accuracy(rows: list[dict], radii: Iterable[float]) -> list[float]:
    """Fraction of clips certified correct with radius ≥ r, for each r (r = 0: correct, not abstaining)."""
    radii = list(radii)
    if not rows:
        return [float("nan")] * len(radii)
    correct = np.array([bool(r["correct"]) for r in rows])
    radius = np.array([float(r["radius"]) for r in rows])
    return [float((correct & (radius >= r)).mean()) for r in radii]

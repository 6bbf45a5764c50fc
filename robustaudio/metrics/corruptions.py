"""Natural corruptions (noise, occlusion, room echo): plain functions and a registry.

Every corruption is a function ``fn(x, severity, generator, *, sample_rate=16000, **options)``
that returns a new tensor of ``x``'s shape and never changes ``x``:

- waveform corruptions take ``audio`` ``[B, T]`` in [-1, 1] at ``sample_rate`` Hz and return
  samples clamped to [-1, 1];
- feature corruptions take the model's normalised features ``[B, F, frames]``
  (``Classifier.features``; feed the result to ``Classifier.forward_features``) and are unbounded.

``generator`` (a CPU ``torch.Generator``) drives every random draw, so a seeded generator gives
the same output every time; ``None`` uses torch's global RNG. Deterministic corruptions
(occlusion) ignore it. A severity of "no corruption" is never in a registry entry's grid: clean
accuracy is measured once, separately.

SNRs follow :func:`robustaudio.attacks.threat.snr_db`: ``20 log10(||clean||_2 / ||added||_2)``
per clip, i.e. the ratio of RMS levels over the whole clip. The added noise is scaled to hit it
exactly; only clamping to [-1, 1] can lower the realised noise (raise the SNR), and only where
the mixture clips. A silent clip (norm 0) gets no noise (its SNR is undefined).

``CORRUPTIONS`` maps a name to a :class:`Corruption` (function, domain, severity grid with its
unit, tag ``[paper]`` for the thesis's protocol (§4 of the methods spec) or ``[ours]``);
``CORRUPTIONS["typo"]`` raises :class:`UnknownCorruption` listing the valid names.
"""

from __future__ import annotations

import csv
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import soundfile
import torch
import torchaudio

from ..data.datasets import BUNDLED_ROOT

NOISE_DIR = BUNDLED_ROOT / "noises"
NOISE_RATE = 16000                      # the bundled noises' sample rate
POSITIONS = ("start", "middle", "end")
FILLS = ("min", "zero")
DOMAINS = ("waveform", "feature")
# Shoebox rooms (metres), living-room sized. The severity is the design RT60: Sabine's formula
# sets the walls' absorption, as is usual with pyroomacoustics. Sabine is only an approximation
# for a shoebox: the realised T20 is shorter than asked at high absorption and longer at low
# absorption; over 10-20 rooms per RT60 it was 0.70-1.02x at 0.2 s, 0.92-1.15x at 0.4 s and
# 1.01-1.34x at 0.8-1 s. The largest room needs absorption 0.9 for RT60 0.15 s, the shortest
# allowed. The image-source order grows as RT60 / (smallest dimension) and the cost as its
# cube: about 0.02 s per response at RT60 0.2 s, 0.5 s at 0.6 s, 2.7 s at 1 s.
ROOM_MIN = (4.0, 3.5, 2.7)
ROOM_MAX = (7.0, 6.0, 3.5)
WALL_MARGIN = 0.5                       # source and microphone keep this far from every wall
MIN_DISTANCE = 1.0                      # source-microphone distance, so the room is heard
RT60_RANGE = (0.15, 1.5)


class CorruptionError(ValueError):
    """A corruption asked for with an impossible severity, option or input shape."""


class UnknownCorruption(CorruptionError, KeyError):
    """A corruption name that is not in the registry; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _check_waveform(audio: torch.Tensor, name: str) -> None:
    if audio.dim() != 2 or not audio.is_floating_point():
        raise CorruptionError(f"{name} takes float audio [B, T]; got {tuple(audio.shape)} "
                              f"{audio.dtype}. Add a batch axis with audio.unsqueeze(0).")


def _check_severity(value: float, name: str, low: float, high: float, unit: str) -> float:
    value = float(value)
    if not (math.isfinite(value) and low <= value <= high):
        raise CorruptionError(f"{name}: severity {value} {unit} is outside [{low:g}, {high:g}].")
    return value


def _per_clip(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``[B]`` -> ``[B, 1, ..., 1]`` broadcastable against ``like``."""
    return values.reshape(-1, *([1] * (like.dim() - 1)))


def mix_at_snr(audio: torch.Tensor, noise: torch.Tensor, snr_db: float) -> torch.Tensor:
    """``audio + g * noise`` with ``g`` per clip such that the SNR is exactly ``snr_db``, clamped to [-1, 1].

    ``audio``, ``noise``: ``[B, T]``. ``g = ||audio|| / ||noise|| * 10^(-snr_db / 20)`` (0 for a
    silent clip or an all-zero noise).
    """
    signal_norm = audio.double().norm(dim=-1)
    noise_norm = noise.double().norm(dim=-1)
    gain = torch.where(noise_norm > 0, signal_norm / noise_norm.clamp_min(1e-300), torch.zeros_like(noise_norm))
    gain = gain * 10 ** (-float(snr_db) / 20)
    return (audio + _per_clip(gain, noise).to(audio.dtype) * noise).clamp(-1.0, 1.0)


# ---------------------------------------------------------------------------------------------
# Gaussian noise
# ---------------------------------------------------------------------------------------------


def gaussian_snr(audio: torch.Tensor, snr_db: float, generator: torch.Generator | None = None, *,
                 sample_rate: int = 16000) -> torch.Tensor:
    """White Gaussian noise at ``snr_db`` dB below each clip's own level.

    Args:
        audio: ``[B, T]`` in [-1, 1].
        snr_db: signal-to-noise ratio in dB, per clip (see the module docstring).
        generator: draws the noise.
        sample_rate: unused (white noise has no time scale); kept for the common signature.
    Returns: ``[B, T]`` in [-1, 1].
    """
    _check_waveform(audio, "gaussian_snr")
    snr_db = _check_severity(snr_db, "gaussian_snr", -30.0, 120.0, "dB")
    noise = torch.randn(audio.shape, generator=generator, dtype=torch.float32).to(audio.device)
    return mix_at_snr(audio, noise, snr_db)


def gaussian_feature(features: torch.Tensor, sigma: float, generator: torch.Generator | None = None, *,
                     sample_rate: int | None = None) -> torch.Tensor:
    """``features + sigma * N(0, 1)`` on the model's normalised features (e.g. log-mel).

    Args:
        features: ``[B, F, frames]`` from ``Classifier.features`` (normalised, so ``sigma`` is in
            units of the training set's feature standard deviation; the thesis used 0.1).
        sigma: noise standard deviation, >= 0.
        generator: draws the noise.
        sample_rate: unused; kept for the common signature.
    Returns: ``[B, F, frames]``, unbounded.
    """
    if features.dim() < 2 or not features.is_floating_point():
        raise CorruptionError(f"gaussian_feature takes float features [B, F, frames]; got "
                              f"{tuple(features.shape)} {features.dtype}.")
    sigma = _check_severity(sigma, "gaussian_feature", 0.0, 100.0, "(feature units)")
    noise = torch.randn(features.shape, generator=generator, dtype=features.dtype).to(features.device)
    return features + sigma * noise


# ---------------------------------------------------------------------------------------------
# Real background noise
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _noise_bank(sample_rate: int) -> dict[str, torch.Tensor]:
    metadata = NOISE_DIR / "metadata.csv"
    if not metadata.is_file():
        raise CorruptionError(f"The bundled noises are missing at {NOISE_DIR}; rebuild them with "
                              f"`python experiments/build_noises.py`.")
    bank = {}
    with open(metadata, newline="") as handle:
        for row in csv.DictReader(handle):
            data, rate = soundfile.read(str(NOISE_DIR / row["path"]), dtype="float32")
            noise = torch.from_numpy(data)
            if rate != sample_rate:
                noise = torchaudio.functional.resample(noise, rate, sample_rate)
            bank[row["name"]] = noise
    return bank


def noise_names() -> tuple[str, ...]:
    """Names of the bundled background noises (``noises/ATTRIBUTION.md`` describes each)."""
    return tuple(_noise_bank(NOISE_RATE))


def background_noise(audio: torch.Tensor, snr_db: float, generator: torch.Generator | None = None, *,
                     sample_rate: int = 16000, noise: str | None = None) -> torch.Tensor:
    """A real recorded noise (rain, wind, babble, ...) mixed in at ``snr_db`` dB per clip.

    Each clip gets a segment of one bundled recording (``noise_names()``): the recording drawn
    uniformly unless ``noise`` names one, the segment start drawn uniformly; a recording shorter
    than the clip is repeated. The mixing is written here rather than taken from audiomentations /
    torch-audiomentations ``AddBackgroundNoise``: both read noise files from disk on every call
    and draw from Python's global ``random``, not from a ``torch.Generator``; the SNR convention
    (RMS over the whole clip, relative to the clip) is theirs.

    Args:
        audio: ``[B, T]`` in [-1, 1].
        snr_db: signal-to-noise ratio in dB, per clip.
        generator: draws the recording and the segment start.
        sample_rate: Hz of ``audio``; the 16 kHz noises are resampled to it.
        noise: one recording's name, or ``None`` for a random one per clip.
    Returns: ``[B, T]`` in [-1, 1].
    """
    _check_waveform(audio, "background_noise")
    snr_db = _check_severity(snr_db, "background_noise", -30.0, 120.0, "dB")
    segments = noise_segments(*audio.shape, generator, sample_rate=sample_rate, noise=noise)
    return mix_at_snr(audio, segments.to(audio.device, audio.dtype), snr_db)


def noise_segments(batch: int, length: int, generator: torch.Generator | None = None, *,
                   sample_rate: int = 16000, noise: str | None = None) -> torch.Tensor:
    """``[batch, length]`` segments of the bundled recordings, at their recorded level (not scaled).

    Per row: the recording drawn uniformly unless ``noise`` names one, then the segment start
    drawn uniformly; a recording shorter than ``length`` is repeated. :func:`background_noise`
    mixes these at an SNR.
    """
    bank = _noise_bank(int(sample_rate))
    if noise is not None and noise not in bank:
        raise CorruptionError(f"Unknown background noise {noise!r}; use one of {', '.join(bank)} "
                              f"or None for a random one per clip.")
    names = list(bank) if noise is None else [noise]
    choice = torch.randint(len(names), (batch,), generator=generator)
    start = torch.rand(batch, generator=generator, dtype=torch.float64)
    segments = []
    for index, u in zip(choice.tolist(), start.tolist()):
        recording = bank[names[index]]
        if len(recording) < length:
            recording = recording.repeat(math.ceil(length / len(recording)))
        offset = int(u * (len(recording) - length + 1))
        segments.append(recording[offset:offset + length])
    return torch.stack(segments) if segments else torch.zeros(0, length)


# ---------------------------------------------------------------------------------------------
# Occlusion (silence), along the last axis
# ---------------------------------------------------------------------------------------------


def _fill_value(x: torch.Tensor, fill: str) -> torch.Tensor:
    """Per-clip fill ``[B, 1, ..., 1]``: the clip's minimum over all its values, or 0."""
    if fill not in FILLS:
        raise CorruptionError(f"Unknown fill {fill!r}; use one of {', '.join(FILLS)}.")
    per_clip = x.reshape(x.shape[0], -1).amin(dim=1)
    return _per_clip(torch.zeros_like(per_clip) if fill == "zero" else per_clip, x)


def _check_time_axis(x: torch.Tensor, name: str) -> None:
    if x.dim() < 2 or x.shape[-1] < 2:
        raise CorruptionError(f"{name} takes [B, T] audio or [B, F, frames] features with at least "
                              f"2 steps on the last axis; got {tuple(x.shape)}.")


def contiguous_mask(length: int, fraction: float, position: str) -> torch.Tensor:
    """Bool ``[length]``, True on the ``round(fraction * length)`` occluded steps at ``position``."""
    if position not in POSITIONS:
        raise CorruptionError(f"Unknown position {position!r}; use one of {', '.join(POSITIONS)}.")
    n = round(fraction * length)
    start = {"start": 0, "middle": (length - n) // 2, "end": length - n}[position]
    mask = torch.zeros(length, dtype=torch.bool)
    mask[start:start + n] = True
    return mask


def periodic_mask(length: int, chunk_seconds: float, sample_rate: float) -> torch.Tensor:
    """Bool ``[length]``: alternating kept / occluded chunks (50% duty cycle), kept first.

    The chunk is ``round(chunk_seconds * sample_rate)`` steps, clipped to half the clip (one
    kept and one occluded chunk): a longer chunk could not occlude 50% of this clip. So on the
    bundled 1 s clips chunks of 2, 1 and 0.5 s all occlude the second half.
    """
    chunk = max(1, min(round(chunk_seconds * sample_rate), length // 2))
    return (torch.arange(length) // chunk) % 2 == 1


def occlusion_contiguous(x: torch.Tensor, fraction: float, generator: torch.Generator | None = None, *,
                         sample_rate: int = 16000, position: str = "middle", fill: str = "min"
                         ) -> torch.Tensor:
    """Silence one contiguous stretch of each clip: ``fraction`` of its length at ``position``.

    The thesis silenced 5 s of 10 s clips at the start, middle or end: ``fraction=0.5``, which
    scales to any clip length (0.5 s of the bundled 1 s clips).

    Args:
        x: ``[B, T]`` audio, or ``[B, F, frames]`` features (the last axis is time).
        fraction: occluded fraction of the clip, in (0, 1]; ``round(fraction * T)`` steps.
        generator: unused (deterministic).
        sample_rate: unused (the stretch is a fraction); kept for the common signature.
        position: ``"start"``, ``"middle"`` (centred, the extra step after) or ``"end"``.
        fill: ``"min"``: each clip's minimum value, as in the thesis (silence on a log-mel; on a
            waveform a constant at the most negative sample, i.e. a DC step); ``"zero"``: 0.
    Returns: same shape as ``x``, within ``x``'s range.
    """
    _check_time_axis(x, "occlusion_contiguous")
    fraction = _check_severity(fraction, "occlusion_contiguous", 1e-9, 1.0, "(fraction of the clip)")
    mask = contiguous_mask(x.shape[-1], fraction, position).to(x.device)
    return torch.where(mask, _fill_value(x, fill), x)


def occlusion_periodic(x: torch.Tensor, chunk_seconds: float, generator: torch.Generator | None = None, *,
                       sample_rate: float = 16000, fill: str = "min") -> torch.Tensor:
    """Silence every other chunk of ``chunk_seconds`` (50% duty cycle, starting with kept audio).

    Args:
        x: ``[B, T]`` audio, or ``[B, F, frames]`` features (the last axis is time).
        chunk_seconds: chunk length in s, > 0, clipped to half the clip (:func:`periodic_mask`).
        generator: unused (deterministic).
        sample_rate: steps per second on the last axis: Hz for audio, frames/s for features
            (e.g. 100 for a 10 ms hop).
        fill: ``"min"`` (the clip minimum, as in the thesis) or ``"zero"``; see
            :func:`occlusion_contiguous`.
    Returns: same shape as ``x``, within ``x``'s range.
    """
    _check_time_axis(x, "occlusion_periodic")
    chunk_seconds = _check_severity(chunk_seconds, "occlusion_periodic", 1e-9, math.inf, "s")
    mask = periodic_mask(x.shape[-1], chunk_seconds, sample_rate).to(x.device)
    return torch.where(mask, _fill_value(x, fill), x)


def occlusion_concat(x: torch.Tensor, chunk_seconds: float, generator: torch.Generator | None = None, *,
                     sample_rate: float = 16000, fill: str = "min") -> torch.Tensor:
    """The periodic occlusion with the gaps removed: the kept chunks, in order, then fill.

    Same chunks as :func:`occlusion_periodic`; the kept steps play back to back from the start
    and the tail (as long as the removed gaps) is filled: half the audio is still lost, but what
    is left is no longer interrupted by silence (only spliced at the chunk edges).

    Args and returns: as :func:`occlusion_periodic`.
    """
    _check_time_axis(x, "occlusion_concat")
    chunk_seconds = _check_severity(chunk_seconds, "occlusion_concat", 1e-9, math.inf, "s")
    mask = periodic_mask(x.shape[-1], chunk_seconds, sample_rate).to(x.device)
    kept = x[..., ~mask]
    tail = _fill_value(x, fill).expand(*x.shape[:-1], int(mask.sum()))
    return torch.cat([kept, tail], dim=-1)


# ---------------------------------------------------------------------------------------------
# Room reverberation
# ---------------------------------------------------------------------------------------------


def _pyroomacoustics():
    try:
        import pyroomacoustics
    except ImportError as error:
        raise ImportError("The reverb corruption simulates rooms with pyroomacoustics, which is not "
                          "installed: pip install robustaudio[rooms]") from error
    return pyroomacoustics


@dataclass(frozen=True)
class SimulatedRoom:
    """One simulated shoebox room: geometry (metres), wall absorption and one impulse response per source.

    ``rirs`` ``[S, L]``: the response from source ``s`` to the microphone, zero-padded to a common length.
    """

    size: tuple[float, float, float]
    rt60: float                          # the design RT60 (s) that set the absorption
    absorption: float                    # uniform energy absorption of the walls (Sabine)
    sources: tuple[tuple[float, float, float], ...]
    mic: tuple[float, float, float]
    rirs: torch.Tensor = field(compare=False, repr=False)


def simulate_room(rt60: float, generator: torch.Generator | None = None, *, sources: int = 1,
                  sample_rate: int = 16000) -> SimulatedRoom:
    """A random shoebox room of reverberation time ``rt60`` s with ``sources`` sources and one microphone.

    Room size, source and microphone positions are drawn from ``generator`` (sizes between
    ``ROOM_MIN`` and ``ROOM_MAX`` m, every point ``WALL_MARGIN`` from the walls, each source at
    least ``MIN_DISTANCE`` from the microphone); the uniform wall absorption and the image-source
    order come from Sabine's formula (``pyroomacoustics.inverse_sabine``). The image-source method
    is deterministic, so the room is a function of the generator's draws (with one source, the
    same draws as :func:`room_impulse_response`).
    """
    rt60 = _check_severity(rt60, "reverb", *RT60_RANGE, "s (RT60)")
    if sources < 1:
        raise CorruptionError(f"A room needs at least one source; got sources={sources}.")
    pra = _pyroomacoustics()
    low, high = torch.tensor(ROOM_MIN, dtype=torch.float64), torch.tensor(ROOM_MAX, dtype=torch.float64)
    dims = low + torch.rand(3, generator=generator, dtype=torch.float64) * (high - low)
    inner = dims - 2 * WALL_MARGIN
    while True:  # rejection keeps the points uniform; in rooms >= 3.5 x 2.7 m it accepts quickly
        points = WALL_MARGIN + torch.rand(sources + 1, 3, generator=generator, dtype=torch.float64) * inner
        emitters, mic = points[:sources], points[sources]
        if float((emitters - mic).norm(dim=1).min()) >= MIN_DISTANCE:
            break
    absorption, max_order = pra.inverse_sabine(rt60, dims.numpy())
    room = pra.ShoeBox(dims.numpy(), fs=int(sample_rate), materials=pra.Material(absorption),
                       max_order=max_order, air_absorption=False)
    for emitter in emitters:
        room.add_source(emitter.numpy())
    room.add_microphone(mic.numpy())
    room.compute_rir()
    rirs = torch.nn.utils.rnn.pad_sequence([torch.as_tensor(h, dtype=torch.float32) for h in room.rir[0]],
                                           batch_first=True)
    return SimulatedRoom(size=tuple(dims.tolist()), rt60=rt60, absorption=float(absorption),
                         sources=tuple(tuple(e.tolist()) for e in emitters), mic=tuple(mic.tolist()), rirs=rirs)


def room_impulse_response(rt60: float, generator: torch.Generator | None = None, *,
                          sample_rate: int = 16000) -> torch.Tensor:
    """The impulse response ``[L]`` of a random shoebox room with reverberation time ``rt60`` s.

    The room of :func:`simulate_room` with one source. Sabine is only an approximation for a
    shoebox: the realised decay (:func:`decay_time`, T20) is about 0.7-1.35x ``rt60`` for 0.2-1 s,
    shorter for short RT60s and longer for long ones (see ``ROOM_MIN``); in a given room it grows
    monotonically with ``rt60``.
    """
    return simulate_room(rt60, generator, sample_rate=sample_rate).rirs[0]  # one source: no padding


def decay_time(rir: torch.Tensor, sample_rate: int, decay_db: float = 20.0) -> float:
    """Reverberation time in s measured on an impulse response ``[L]`` (ISO 3382 style).

    Schroeder backward integration gives the energy decay curve; a line is fitted to it from
    -5 dB to ``-(5 + decay_db)`` dB and extrapolated to a 60 dB decay (T20 for 20, T30 for 30).
    """
    energy = rir.double().flip(0).pow(2).cumsum(0).flip(0)
    curve = 10 * torch.log10(energy / energy[0]).clamp_min(-300)
    inside = torch.nonzero((curve <= -5) & (curve >= -5 - decay_db)).flatten()
    if len(inside) < 2:
        raise CorruptionError(f"The impulse response decays by less than {5 + decay_db:g} dB.")
    t = inside.double() / sample_rate
    y = curve[inside]
    slope = ((t - t.mean()) * (y - y.mean())).sum() / (t - t.mean()).pow(2).sum()  # dB per s
    return float(-60.0 / slope)


ROOM_BANK = 16  # rooms simulated per RT60, then shared by every clip (the simulation is the cost)


@functools.lru_cache(maxsize=64)
def room_bank(rt60: float, sample_rate: int, rooms: int = ROOM_BANK, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """``rooms`` impulse responses of reverberation time ``rt60`` s, drawn once per process.

    Simulating a room costs up to ~2.7 s (RT60 1 s); a bank drawn from a fixed seed lets every
    clip, batch and model of a run share the same rooms, so comparisons see the same acoustics.
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + int(round(rt60 * 1000)))
    return tuple(room_impulse_response(rt60, generator, sample_rate=sample_rate) for _ in range(rooms))


def reverb(audio: torch.Tensor, rt60: float, generator: torch.Generator | None = None, *,
           sample_rate: int = 16000, rooms: int | None = ROOM_BANK) -> torch.Tensor:
    """Each clip played in a random shoebox room of reverberation time ``rt60`` s.

    The clip is convolved (``torchaudio.functional.fftconvolve``) with the room's impulse
    response (:func:`room_impulse_response`), aligned so that the direct sound (the response's
    largest tap) lines up with the input, cut to the input length (the reverberant tail past the
    end is dropped) and rescaled to the input's RMS, so the corruption changes the sound, not the
    level. Needs pyroomacoustics (``pip install robustaudio[rooms]``). The image-source simulation
    costs about 0.02 s (RT60 0.2 s) to 2.7 s (1 s) per room, so by default each clip gets one of
    ``rooms`` rooms simulated once per process (:func:`room_bank`); ``rooms=None`` simulates a
    fresh room per clip.

    Args:
        audio: ``[B, T]`` in [-1, 1] at ``sample_rate`` Hz.
        rt60: reverberation time in s, within ``RT60_RANGE``.
        generator: draws each clip's room (from the bank, or a fresh one).
        sample_rate: Hz of ``audio`` and of the simulated response.
        rooms: size of the shared bank, or None.
    Returns: ``[B, T]`` in [-1, 1].
    """
    _check_waveform(audio, "reverb")
    if rooms:  # each clip in one of the bank's rooms, chosen by the generator
        bank = room_bank(float(rt60), int(sample_rate), rooms)
        picks = torch.randint(len(bank), (audio.shape[0],), generator=generator).tolist()
        rirs = [bank[i] for i in picks]
    else:  # a fresh room per clip
        rirs = [room_impulse_response(rt60, generator, sample_rate=sample_rate) for _ in range(audio.shape[0])]
    peaks = [int(h.abs().argmax()) for h in rirs]
    bank = torch.nn.utils.rnn.pad_sequence(rirs, batch_first=True).to(audio.device, audio.dtype)
    wet = torchaudio.functional.fftconvolve(audio, bank)            # [B, T + L - 1]
    length = audio.shape[-1]
    wet = torch.stack([row[peak:peak + length] for row, peak in zip(wet, peaks)])
    gain = audio.double().pow(2).mean(-1).sqrt() / wet.double().pow(2).mean(-1).sqrt().clamp_min(1e-300)
    return (wet * _per_clip(gain, wet).to(wet.dtype)).clamp(-1.0, 1.0)


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Corruption:
    """One registry entry: a corruption function with fixed options and its severity grid.

    ``corruption(x, severity, generator, sample_rate=...)`` calls
    ``function(x, severity, generator, sample_rate=..., **options)``.
    """

    name: str
    domain: str                      # "waveform" ([B, T] in [-1, 1]) or "feature" ([B, F, frames])
    severities: tuple[float, ...]    # mildest first
    unit: str                        # of the severity, e.g. "SNR dB"
    function: Callable[..., torch.Tensor]
    description: str
    tag: str                         # "[paper]" (the thesis's protocol) or "[ours]"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.domain not in DOMAINS:
            raise CorruptionError(f"{self.name}: unknown domain {self.domain!r}; use one of {', '.join(DOMAINS)}.")

    def __call__(self, x: torch.Tensor, severity: float, generator: torch.Generator | None = None, *,
                 sample_rate: int = 16000) -> torch.Tensor:
        return self.function(x, severity, generator, sample_rate=sample_rate, **self.options)


class _Registry(dict):
    """A dict whose missing keys raise :class:`UnknownCorruption` with the valid names."""

    def __missing__(self, name: str) -> Corruption:
        raise UnknownCorruption(f"Unknown corruption {name!r}; use one of {', '.join(self)}.")


def get_corruption(name: str) -> Corruption:
    """``CORRUPTIONS[name]``, raising :class:`UnknownCorruption` (listing the valid names) if absent."""
    return CORRUPTIONS[name]


_CHUNKS = (2.0, 1.0, 0.5, 0.25, 0.125)
_OCCLUSION_NOTE = "filled with the clip minimum"

CORRUPTIONS: dict[str, Corruption] = _Registry({c.name: c for c in [
    Corruption("gaussian_snr", "waveform", (40.0, 30.0, 20.0, 10.0, 5.0, 0.0), "SNR dB", gaussian_snr,
               "white Gaussian noise at a per-clip SNR", "[ours]"),
    Corruption("gaussian_feature", "feature", (0.05, 0.1, 0.2, 0.5, 1.0), "sigma (normalised feature units)",
               gaussian_feature, "Gaussian noise on the normalised features (thesis: sigma 0.1)", "[paper]"),
    *[Corruption(f"occlusion_{position}", "waveform", (0.25, 0.5, 0.75), "fraction of the clip",
                 occlusion_contiguous, f"one contiguous stretch at the {position} {_OCCLUSION_NOTE} "
                 f"(thesis: 0.5, i.e. 5 s of 10 s)", "[paper]", {"position": position})
      for position in POSITIONS],
    Corruption("occlusion_periodic", "waveform", _CHUNKS, "chunk s (50% duty, clipped to half the clip)",
               occlusion_periodic, f"every other chunk {_OCCLUSION_NOTE}", "[paper]"),
    Corruption("occlusion_concat", "waveform", _CHUNKS, "chunk s (50% duty, clipped to half the clip)",
               occlusion_concat, f"the periodic occlusion with the gaps removed, tail {_OCCLUSION_NOTE}",
               "[paper]"),
    Corruption("background_noise", "waveform", (30.0, 20.0, 10.0, 5.0, 0.0), "SNR dB", background_noise,
               "a real recorded noise (rain, wind, babble, cheering, traffic, engine, hum) at a per-clip SNR",
               "[ours]"),
    Corruption("reverb", "waveform", (0.2, 0.4, 0.6, 0.8, 1.0), "RT60 s", reverb,
               "a random shoebox room of the given reverberation time (pyroomacoustics)", "[ours]"),
]})

__all__ = ["CORRUPTIONS", "Corruption", "CorruptionError", "UnknownCorruption", "get_corruption",
           "gaussian_snr", "gaussian_feature", "background_noise", "noise_names", "mix_at_snr",
           "occlusion_contiguous", "occlusion_periodic", "occlusion_concat", "contiguous_mask",
           "periodic_mask", "reverb", "room_impulse_response", "decay_time", "noise_segments", "simulate_room",
           "SimulatedRoom"]

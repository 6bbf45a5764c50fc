"""A differentiable Karplus–Strong synthesiser: plucked strings on a fixed scale and rhythm.

One string per note of the scale: the Karplus–Strong recursion (our spec, ``robustness_methods.md`` §2)

    y[n] = e[n] + ρ · ½ (y[n − P] + y[n − P − 1])

is a delay line of ``P`` samples closed through a two-tap averaging low-pass with loss ``ρ < 1``;
its pitch is ``f0 = sample_rate / (P + ½)`` and it rings down in about ``P / (sample_rate (1 − ρ))``
seconds. A string is plucked by adding its excitation (a burst of ``P`` samples, classically white
noise) at a note onset, scaled by the note's gain. Onsets follow a fixed rhythm (one every
``1 / notes_per_second`` s); which strings sound at an onset, and how loud, is the gain matrix.

**Music as a loop.** The synthesiser renders a loop of ``T`` samples meant to be played over and over
(the jammer's music plays continuously). The recursion is linear and time-invariant, so the
periodic steady state, the loop as heard once every ringing tail from earlier repetitions has been
added, is exact in the frequency domain: with ``E_k`` the DFT of string ``k``'s plucks over one loop,

    Y(ω) = Σ_k E_k(ω) / (1 − ρ_k ½ e^{−iωP_k} (1 + e^{−iω})),   ω = 2πm / T,

and ``y = irfft(Y)``. This costs three FFTs of ``[K, T]`` instead of ``T`` recursion steps, and
it is differentiable in the excitations, the losses ``ρ`` and the gains (``tests/test_jam.py``
checks it against the time-domain recursion and with ``gradcheck``).

**Loudness.** :class:`KarplusStrong` returns the loop at an RMS of ``level_db`` dB re full scale
(1.0), unless that would put a peak above ``PEAK`` (0.99), in which case the peak sets the gain and
the RMS is lower: the level is an upper bound that is met exactly whenever the peak allows it.
Where the loop is played relative to speech is set by the transforms (:mod:`.eot`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

SCALES: dict[str, tuple[int, ...]] = {  # semitones above the root, within one octave
    "minor_pentatonic": (0, 3, 5, 7, 10),
    "major_pentatonic": (0, 2, 4, 7, 9),
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
}
PEAK = 0.99
DAMPING_RANGE = (0.9, 0.9995)   # ρ: the string loses 10% .. 0.05% of its energy per round trip
LEVEL_DB_RANGE = (-60.0, 0.0)   # RMS re full scale; 0 dBFS is already a full-scale square wave


class MusicError(ValueError):
    """Synthesiser settings that cannot make music (the message says which and the fix)."""


def string_periods(root_hz: float, scale: str, octaves: int, sample_rate: int) -> torch.Tensor:
    """Delay ``P_k`` (samples) of each string, lowest first: ``round(sample_rate / f_k − ½)``.

    Args:
        root_hz: the lowest note's frequency (Hz).
        scale: a key of :data:`SCALES`.
        octaves: how many octaves of the scale (plus the top root).
        sample_rate: Hz.
    Returns: ``[K]`` long, ``K = octaves * len(SCALES[scale]) + 1``.
    """
    if scale not in SCALES:
        raise MusicError(f"Unknown scale {scale!r}; use one of {', '.join(SCALES)}.")
    steps = [12 * octave + step for octave in range(octaves) for step in SCALES[scale]] + [12 * octaves]
    hz = torch.tensor([root_hz * 2 ** (s / 12) for s in steps], dtype=torch.float64)
    if float(hz.max()) >= sample_rate / 8:
        raise MusicError(f"The top string ({float(hz.max()):.0f} Hz) is too close to Nyquist at "
                         f"{sample_rate} Hz for a delay line of a few samples: lower root_hz or octaves.")
    periods = torch.round(sample_rate / hz - 0.5).long()
    if len(set(periods.tolist())) < len(periods):
        raise MusicError("Two strings round to the same delay: raise root_hz or the sample rate.")
    return periods


def pluck(excitations: torch.Tensor, damping: torch.Tensor, gains: torch.Tensor, periods: torch.Tensor,
          onsets: torch.Tensor, length: int) -> torch.Tensor:
    """The looped Karplus–Strong steady state (see the module docstring), differentiable in its inputs.

    Args:
        excitations: ``[K, L]`` one burst per string; samples past ``periods[k]`` are ignored.
        damping: ``[K]`` loss ``ρ_k`` in (0, 1).
        gains: ``[M, K]`` gain of string ``k`` at onset ``m``.
        periods: ``[K]`` long delays ``P_k`` (samples), each <= L.
        onsets: ``[M]`` long onset positions in the loop (samples, in [0, length)).
        length: loop length ``T`` (samples).
    Returns: ``[T]`` one period of the looped music (unnormalised).
    """
    strings, burst = excitations.shape
    if int(periods.max()) > burst or int(periods.max()) + 1 >= length:
        raise MusicError(f"A string's period ({int(periods.max())} samples) does not fit its excitation "
                         f"({burst}) or the loop ({length}).")
    taps = torch.arange(burst, device=excitations.device)
    shaped = excitations * (taps < periods.unsqueeze(1).to(taps.device))          # [K, L]
    plucks = torch.zeros(strings, length, dtype=excitations.dtype, device=excitations.device)
    plucks = plucks.index_add(1, onsets.to(excitations.device), gains.transpose(0, 1))  # [K, T] impulses
    spectrum = torch.fft.rfft(plucks, n=length) * torch.fft.rfft(shaped, n=length)
    omega = 2 * math.pi * torch.arange(length // 2 + 1, device=excitations.device, dtype=excitations.dtype) / length
    delay = torch.polar(torch.ones_like(omega), -omega)                          # e^{-iω}
    phase = -omega.unsqueeze(0) * periods.unsqueeze(1).to(omega)
    loop = torch.polar(torch.ones_like(phase), phase)                            # e^{-iωP}, [K, F]
    response = 1 / (1 - damping.unsqueeze(1) * 0.5 * loop * (1 + delay))
    return torch.fft.irfft((spectrum * response).sum(0), n=length)


def loudness_gain(music: torch.Tensor, level_db: float) -> torch.Tensor:
    """The scalar gain that brings ``music`` ``[T]`` to RMS ``level_db`` dBFS, capped so the peak stays <= PEAK."""
    rms = music.pow(2).mean().sqrt().clamp_min(1e-12)
    peak = music.abs().max().clamp_min(1e-12)
    return torch.minimum(10 ** (level_db / 20) / rms, PEAK / peak)


class KarplusStrong(nn.Module):
    """Plucked-string music with learnable timbre and notes, on a fixed scale and rhythm.

    Args:
        seconds: loop length (s).
        sample_rate: Hz.
        root_hz: lowest string (Hz); 110 (A2) by default.
        scale: a key of :data:`SCALES`.
        octaves: octaves of strings above the root (``K = octaves * len(scale) + 1`` strings).
        notes_per_second: onset rate of the fixed rhythm (onsets at ``m / notes_per_second`` s).
        level_db: output RMS in dB re full scale (an upper bound if the peak would exceed ``PEAK``).
        seed: the random start: white-noise excitations, losses ``ρ`` uniform in 0.97–0.995, and a
            random melody (one string per onset at a gain in 0.5–1, a second one on 30% of onsets).

    Parameters: ``excitation`` ``[K, P_max]`` (string ``k`` uses its first ``P_k`` samples),
    ``damping_logit`` ``[K]`` (``ρ = DAMPING_RANGE`` mapped through a sigmoid, so the loop is
    always stable), ``gains`` ``[M, K]``.

    ``forward()`` -> ``[T]`` float32 loop, ``T = round(seconds * sample_rate)``.
    """

    periods: torch.Tensor  # buffers (registered in __init__)
    onsets: torch.Tensor

    def __init__(self, seconds: float = 4.0, sample_rate: int = 16000, *, root_hz: float = 110.0,
                 scale: str = "minor_pentatonic", octaves: int = 2, notes_per_second: float = 4.0,
                 level_db: float = -20.0, seed: int = 0):
        super().__init__()
        if not (math.isfinite(seconds) and 0 < seconds <= 60):
            raise MusicError(f"The loop must last between 0 and 60 s; got {seconds} s.")
        if not (math.isfinite(level_db) and LEVEL_DB_RANGE[0] <= level_db <= LEVEL_DB_RANGE[1]):
            raise MusicError(f"level_db={level_db} dBFS is outside [{LEVEL_DB_RANGE[0]:g}, "
                             f"{LEVEL_DB_RANGE[1]:g}]: a loop's RMS cannot exceed full scale.")
        self.sample_rate = int(sample_rate)
        self.length = int(round(seconds * sample_rate))
        self.level_db = float(level_db)
        self.scale, self.root_hz = scale, float(root_hz)
        periods = string_periods(root_hz, scale, octaves, self.sample_rate)
        onsets = torch.arange(0, self.length, sample_rate / notes_per_second).round().long()
        onsets = onsets[onsets < self.length]
        if len(onsets) == 0 or int(periods.max()) + 1 >= self.length:
            raise MusicError(f"A {seconds} s loop is too short for a {notes_per_second}/s rhythm and "
                             f"strings down to {root_hz} Hz: lengthen it.")
        self.register_buffer("periods", periods)
        self.register_buffer("onsets", onsets)
        g = torch.Generator().manual_seed(seed)
        strings, notes = len(periods), len(onsets)
        self.excitation = nn.Parameter(2 * torch.rand(strings, int(periods.max()), generator=g) - 1)
        rho = 0.97 + 0.025 * torch.rand(strings, generator=g)
        unit = (rho - DAMPING_RANGE[0]) / (DAMPING_RANGE[1] - DAMPING_RANGE[0])
        self.damping_logit = nn.Parameter(torch.log(unit / (1 - unit)))
        gains = torch.zeros(notes, strings)
        first = torch.randint(strings, (notes,), generator=g)
        gains[torch.arange(notes), first] = 0.5 + 0.5 * torch.rand(notes, generator=g)
        second = torch.randint(strings, (notes,), generator=g)
        dyad = torch.rand(notes, generator=g) < 0.3
        gains[torch.arange(notes)[dyad], second[dyad]] += 0.5 + 0.5 * torch.rand(int(dyad.sum()), generator=g)
        self.gains = nn.Parameter(gains)

    @property
    def damping(self) -> torch.Tensor:
        """``ρ`` ``[K]`` in ``DAMPING_RANGE``."""
        low, high = DAMPING_RANGE
        return low + (high - low) * torch.sigmoid(self.damping_logit)

    @property
    def frequencies(self) -> torch.Tensor:
        """Pitch of each string (Hz) ``[K]``: ``sample_rate / (P + ½)``."""
        return self.sample_rate / (self.periods.double() + 0.5)

    @property
    def seconds(self) -> float:
        return self.length / self.sample_rate

    def raw(self) -> torch.Tensor:
        """The loop ``[T]`` before loudness normalisation."""
        return pluck(self.excitation, self.damping, self.gains, self.periods, self.onsets, self.length)

    def forward(self) -> torch.Tensor:
        music = self.raw()
        return music * loudness_gain(music, self.level_db)

    def describe(self) -> dict:
        """Settings for reports: scale, strings (Hz), rhythm, loop length, level."""
        return {"scale": self.scale, "root_hz": self.root_hz,
                "strings_hz": [round(f, 1) for f in self.frequencies.tolist()],
                "notes": int(len(self.onsets)), "notes_per_second": len(self.onsets) / self.seconds,
                "loop_seconds": self.seconds, "level_dbfs": self.level_db}


__all__ = ["KarplusStrong", "MusicError", "SCALES", "pluck", "string_periods", "loudness_gain"]

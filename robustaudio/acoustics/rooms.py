"""Simulated shoebox rooms: impulse responses (cached, seeded) and batched FFT reverberation.

Rooms are simulated with pyroomacoustics' image-source method (the optional extra
``pip install 'robustaudio[rooms]'``). Shoeboxes are living-room sized (``ROOM_MIN`` to ``ROOM_MAX``
metres). The RT60 is the *design* reverberation time: Sabine's formula sets the walls' absorption
(``pyroomacoustics.inverse_sabine``), as is usual with pyroomacoustics. Sabine is only an
approximation for a shoebox: the realised T20 is shorter than asked at high absorption and longer
at low absorption; over 10-20 rooms per RT60 it was 0.70-1.02x at 0.2 s, 0.92-1.15x at 0.4 s and
1.01-1.34x at 0.8-1 s. The largest room needs absorption 0.9 for RT60 0.15 s, the shortest allowed.

**Cost and caching.** The image-source order grows as RT60 / (smallest dimension) and the cost as
its cube: about 0.02 s per response at RT60 0.2 s, 0.25 s at 0.6 s, 2 s at 1 s. A room is drawn in
two steps: its :class:`RoomLayout` (size, positions: a few draws from the generator, no simulation)
and its responses (the simulation). :func:`room_bank` and :func:`bank_responses` give a fixed bank
of ``rooms`` rooms per (RT60, seed): the layouts are drawn in order from one generator seeded from
(seed, RT60), and each room's response is simulated the first time a clip is put in it, then kept
for the process (:func:`layout_response`, keyed by the layout). So the same (RT60, seed, index)
always gives the same response, and a batch only pays for the rooms it uses.
:func:`clear_room_cache` empties the caches.

**Reverberation** (:func:`reverberate`): every clip of a batch is convolved with its room's
response in one batched FFT convolution (:func:`fft_convolve`, ``torch.fft.rfft`` at a fast length,
on the audio's device), aligned so that the direct sound (the response's largest tap) lines up with
the input, cut to the input length and rescaled to the input's RMS. Only the first
``peak + T`` taps of a response can reach the kept output, so the rest is never transformed.

**Numbers.** The bank (16 rooms per RT60, seed 0), its generator seeds, the order of the draws and
the per-clip pick (one ``torch.randint`` for the batch from the caller's CPU generator) are those
the reverb corruption used when it lived in ``robustaudio.metrics.corruptions``, and the
response model and RMS normalisation are unchanged: reverb outputs match the earlier
implementation to float32 rounding (max abs difference 2.4e-7 on the bundled clips at every RT60).
What remains slow is the first use of a room (the simulation above, a one-off per process).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import ModuleType

import scipy.fft
import torch

from ..extras import require
from .mixing import AcousticsError

ROOM_MIN = (4.0, 3.5, 2.7)
ROOM_MAX = (7.0, 6.0, 3.5)
WALL_MARGIN = 0.5                       # source and microphone keep this far from every wall
MIN_DISTANCE = 1.0                      # source-microphone distance, so the room is heard
RT60_RANGE = (0.15, 1.5)
ROOM_BANK = 16                          # rooms per RT60 in the default bank


def _pyroomacoustics() -> ModuleType:
    return require("pyroomacoustics", "rooms", "Simulating rooms (the reverb corruption, jamming scenes)")


def require_pyroomacoustics() -> None:
    """Raise :class:`~robustaudio.extras.MissingExtraError` (names the ``rooms`` extra) if pyroomacoustics is
    missing."""
    _pyroomacoustics()


def _check_rt60(rt60: float) -> float:
    rt60 = float(rt60)
    low, high = RT60_RANGE
    if not (math.isfinite(rt60) and low <= rt60 <= high):
        raise AcousticsError(f"RT60 {rt60} s is outside [{low:g}, {high:g}] s.")
    return rt60


# ---------------------------------------------------------------------------------------------
# Rooms
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoomLayout:
    """A shoebox room before simulation: size (metres), design RT60 (s), source and microphone positions."""

    size: tuple[float, float, float]
    rt60: float
    sources: tuple[tuple[float, float, float], ...]
    mic: tuple[float, float, float]


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


def draw_layout(rt60: float, generator: torch.Generator | None = None, *, sources: int = 1) -> RoomLayout:
    """A random room of design reverberation time ``rt60`` s, drawn from ``generator``, not simulated.

    Size uniform between ``ROOM_MIN`` and ``ROOM_MAX`` m (3 draws), then the sources and the
    microphone uniform at least ``WALL_MARGIN`` from the walls, redrawn together until every source
    is at least ``MIN_DISTANCE`` from the microphone.
    """
    rt60 = _check_rt60(rt60)
    if sources < 1:
        raise AcousticsError(f"A room needs at least one source; got sources={sources}.")
    low, high = torch.tensor(ROOM_MIN, dtype=torch.float64), torch.tensor(ROOM_MAX, dtype=torch.float64)
    dims = low + torch.rand(3, generator=generator, dtype=torch.float64) * (high - low)
    inner = dims - 2 * WALL_MARGIN
    while True:  # rejection keeps the points uniform; in rooms >= 3.5 x 2.7 m it accepts quickly
        points = WALL_MARGIN + torch.rand(sources + 1, 3, generator=generator, dtype=torch.float64) * inner
        emitters, mic = points[:sources], points[sources]
        if float((emitters - mic).norm(dim=1).min()) >= MIN_DISTANCE:
            break
    return RoomLayout(size=tuple(dims.tolist()), rt60=rt60, sources=tuple(tuple(e.tolist()) for e in emitters),
                      mic=tuple(mic.tolist()))


def simulate_layout(layout: RoomLayout, sample_rate: int = 16000) -> SimulatedRoom:
    """The image-source simulation of ``layout`` (deterministic): absorption and order from Sabine's formula."""
    pra = _pyroomacoustics()
    dims = [float(v) for v in layout.size]
    absorption, max_order = pra.inverse_sabine(layout.rt60, dims)
    room = pra.ShoeBox(dims, fs=int(sample_rate), materials=pra.Material(absorption),
                       max_order=max_order, air_absorption=False)
    for emitter in layout.sources:
        room.add_source(list(emitter))
    room.add_microphone(list(layout.mic))
    room.compute_rir()
    rirs = torch.nn.utils.rnn.pad_sequence([torch.as_tensor(h, dtype=torch.float32) for h in room.rir[0]],
                                           batch_first=True)
    return SimulatedRoom(size=layout.size, rt60=layout.rt60, absorption=float(absorption), sources=layout.sources,
                         mic=layout.mic, rirs=rirs)


def simulate_room(rt60: float, generator: torch.Generator | None = None, *, sources: int = 1,
                  sample_rate: int = 16000) -> SimulatedRoom:
    """A random shoebox room of reverberation time ``rt60`` s with ``sources`` sources and one microphone.

    :func:`draw_layout` then :func:`simulate_layout`: the room is a function of the generator's
    draws (with one source, the same draws as :func:`room_impulse_response`). Not cached.
    """
    rt60 = _check_rt60(rt60)
    _pyroomacoustics()  # fail on a missing extra before drawing
    return simulate_layout(draw_layout(rt60, generator, sources=sources), sample_rate)


def room_impulse_response(rt60: float, generator: torch.Generator | None = None, *,
                          sample_rate: int = 16000) -> torch.Tensor:
    """The impulse response ``[L]`` of a random shoebox room with reverberation time ``rt60`` s.

    The room of :func:`simulate_room` with one source. The realised decay (:func:`decay_time`,
    T20) is about 0.7-1.35x ``rt60`` for 0.2-1 s (see the module docstring); in a given room it
    grows monotonically with ``rt60``.
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
        raise AcousticsError(f"The impulse response decays by less than {5 + decay_db:g} dB.")
    t = inside.double() / sample_rate
    y = curve[inside]
    slope = ((t - t.mean()) * (y - y.mean())).sum() / (t - t.mean()).pow(2).sum()  # dB per s
    return float(-60.0 / slope)


# ---------------------------------------------------------------------------------------------
# The cached bank
# ---------------------------------------------------------------------------------------------


def bank_seed(rt60: float, seed: int = 0) -> int:
    """The generator seed of the bank of RT60 ``rt60`` s: distinct per (seed, RT60 in ms)."""
    return int(seed) * 1_000_003 + int(round(float(rt60) * 1000))


@functools.lru_cache(maxsize=64)
def bank_layouts(rt60: float, rooms: int = ROOM_BANK, seed: int = 0) -> tuple[RoomLayout, ...]:
    """The ``rooms`` layouts of a bank, drawn in order from one generator (so a bank of ``n`` rooms
    is the first ``n`` of any larger one). Cheap: nothing is simulated."""
    if rooms < 1:
        raise AcousticsError(f"A room bank needs at least one room; got rooms={rooms}.")
    generator = torch.Generator().manual_seed(bank_seed(rt60, seed))
    return tuple(draw_layout(rt60, generator) for _ in range(int(rooms)))


@functools.lru_cache(maxsize=256)
def layout_response(layout: RoomLayout, sample_rate: int = 16000) -> torch.Tensor:
    """The impulse response ``[L]`` of a one-source ``layout`` (CPU, float32), simulated once per process."""
    return simulate_layout(layout, sample_rate).rirs[0]


def bank_responses(rt60: float, indices: Sequence[int], *, sample_rate: int = 16000, rooms: int = ROOM_BANK,
                   seed: int = 0) -> list[torch.Tensor]:
    """The responses of rooms ``indices`` of the bank of (``rt60``, ``rooms``, ``seed``), simulating
    only those not simulated yet in this process."""
    rt60 = _check_rt60(rt60)
    layouts = bank_layouts(rt60, int(rooms), int(seed))
    return [layout_response(layouts[i], int(sample_rate)) for i in indices]


@functools.lru_cache(maxsize=64)
def room_bank(rt60: float, sample_rate: int, rooms: int = ROOM_BANK, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """All ``rooms`` impulse responses of the bank of reverberation time ``rt60`` s (each simulated
    once per process): every clip, batch and model of a run shares these rooms, so comparisons
    see the same acoustics."""
    return tuple(bank_responses(rt60, range(rooms), sample_rate=sample_rate, rooms=rooms, seed=seed))


def clear_room_cache() -> None:
    """Forget every cached layout and response (the next use simulates again)."""
    for cached in (bank_layouts, layout_response, room_bank):
        cached.cache_clear()


# ---------------------------------------------------------------------------------------------
# Convolution
# ---------------------------------------------------------------------------------------------


def fft_convolve(x: torch.Tensor, h: torch.Tensor, length: int | None = None) -> torch.Tensor:
    """The linear convolution of ``x`` ``[..., T]`` with ``h`` ``[..., L]`` along the last axis, batched.

    The leading axes broadcast. Computed with ``torch.fft.rfft`` on ``x``'s device at the next
    5-smooth length, in ``x``'s precision. Returns the first ``length`` samples (default all
    ``T + L - 1``); inputs past ``length`` cannot reach them, so they are not transformed.
    """
    full = x.shape[-1] + h.shape[-1] - 1
    length = full if length is None else int(length)
    if not 0 < length <= full:
        raise AcousticsError(f"length must be in [1, {full}] for inputs of {x.shape[-1]} and {h.shape[-1]} "
                             f"samples; got {length}.")
    x, h = x[..., :length], h[..., :length].to(x.device, x.dtype)
    n = scipy.fft.next_fast_len(x.shape[-1] + h.shape[-1] - 1, real=True)
    spectrum = torch.fft.rfft(x, n) * torch.fft.rfft(h, n)
    return torch.fft.irfft(spectrum, n)[..., :length]


def reverberate(audio: torch.Tensor, rirs: Sequence[torch.Tensor], which: torch.Tensor | None = None
                ) -> torch.Tensor:
    """Each clip of ``audio`` ``[B, T]`` played through the response ``rirs[which[b]]``, at its own RMS.

    The clip is convolved with the response (one batched :func:`fft_convolve`), aligned so that the
    direct sound (the response's largest tap) lines up with the input, cut to the input length (the
    reverberant tail past the end is dropped) and rescaled to the input's RMS, so the room changes
    the sound, not the level. Not clamped.

    Args:
        audio: ``[B, T]`` float.
        rirs: ``U`` impulse responses ``[L_u]``.
        which: ``[B]`` long, each clip's response; default ``rirs[b]`` for clip ``b`` (``U == B``).
    Returns: ``[B, T]``, same dtype and device as ``audio``.
    """
    batch, length = audio.shape
    which = torch.arange(batch) if which is None else torch.as_tensor(which, dtype=torch.long).cpu()
    if batch == 0:
        return audio.clone()
    if len(which) != batch or not rirs or int(which.max()) >= len(rirs) or int(which.min()) < 0:
        raise AcousticsError(f"Give one response index per clip ({batch} clips) within the {len(rirs)} responses.")
    peaks = torch.tensor([int(h.abs().argmax()) for h in rirs])
    kept = int(peaks.max()) + length  # no tap past peak + T reaches the kept output
    bank = torch.nn.utils.rnn.pad_sequence([h[:kept] for h in rirs], batch_first=True)
    bank = bank.to(audio.device, audio.dtype)[which.to(audio.device)]                 # [B, L]
    wet = fft_convolve(audio, bank, kept)                                               # [B, peak_max + T]
    index = peaks[which].to(audio.device).unsqueeze(1) + torch.arange(length, device=audio.device)
    wet = torch.gather(wet, 1, index)
    gain = audio.double().pow(2).mean(-1).sqrt() / wet.double().pow(2).mean(-1).sqrt().clamp_min(1e-300)
    return wet * gain.unsqueeze(1).to(wet.dtype)


__all__ = ["RT60_RANGE", "ROOM_BANK", "ROOM_MAX", "ROOM_MIN", "MIN_DISTANCE", "WALL_MARGIN", "RoomLayout",
           "SimulatedRoom", "bank_layouts", "bank_responses", "bank_seed", "clear_room_cache", "decay_time",
           "draw_layout", "fft_convolve", "layout_response", "require_pyroomacoustics", "reverberate", "room_bank",
           "room_impulse_response", "simulate_layout", "simulate_room"]

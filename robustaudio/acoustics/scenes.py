"""Expectation over transforms for played-back audio: an utterance and a music loop in a simulated room.

A **scene** is ``scene_seconds`` of what one microphone hears (``[B, T]`` at ``sample_rate`` Hz):

- the utterance (dry speech, trimmed of silence) ends at a random point of the scene
  (``speech_end``, a fraction of the scene) and reaches the microphone through the room's
  impulse response from the talker's position; it is rescaled to its dry RMS over its span, so the
  room changes the sound, not the speech level;
- the music loop plays throughout, from a random offset in the loop, through the response from
  the loudspeaker's position (the loop is convolved with ``L`` samples of history, so the scene
  starts with the reverberant tail of the music already there); its level is set relative to the
  speech at the microphone: ``20 log10(RMS music / RMS speech) = music_db`` over the utterance's
  span (:func:`robustaudio.acoustics.mixing.snr_db` on the two, masked to the span);
- a real recorded background (``robustaudio/data/bundled/noises``) at a random SNR relative to the
  speech, over the same span;
- the sum is clamped to [-1, 1] (only where it would clip).

Rooms are shoeboxes simulated with pyroomacoustics (:func:`robustaudio.acoustics.rooms.simulate_room`:
random size, RT60 and so wall absorption, talker, loudspeaker and microphone positions). Each room
set is drawn from its own seeded stream, named by its split: the ``optimisation`` rooms that
:func:`robustaudio.attacks.jamming.jam` samples from and the ``held-out`` rooms that only evaluation
sees (:func:`room_split` checks that no room is in both).

Every random draw comes from a ``torch.Generator``: the same seed gives the same rooms, transforms
and scenes.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import torch

from .mixing import noise_segments, snr_db
from .rooms import SimulatedRoom, simulate_room

SPLITS = ("optimisation", "held-out", "pick")  # pick: rooms that choose among loops, never scored in
MUSIC_DB_RANGE = (-40.0, 10.0)   # music relative to speech; beyond +10 dB the speech is drowned
NOISE_SNR_RANGE = (-10.0, 60.0)
RT60_LIMITS = (0.15, 1.5)        # what the room simulation accepts
TRIM_DB = -40.0                  # silence = below this many dB re the clip's peak
TRIM_MARGIN = 0.05               # seconds kept on each side of the speech when trimming
RIR_FLOOR_DB = -60.0             # room responses are cut where their remaining energy is this far down


class JamError(ValueError):
    """Settings or inputs the jamming attack cannot use; the message names the problem and the fix."""


@dataclass(frozen=True)
class EOTConfig:
    """The transform distribution.

    Args:
        music_db: music level relative to speech at the microphone (dB), the loudness constraint.
        jitter_db: optimisation draws the music level uniformly in ``music_db ± jitter_db``;
            evaluation plays it at exactly ``music_db`` (:meth:`fixed_level`).
        noise_snr_db: background SNR (dB) relative to the speech, drawn uniformly in this range.
        scene_seconds: length of a scene (s).
        speech_end: where the utterance ends, as a fraction of the scene, drawn uniformly.
        rt60: design reverberation time of the rooms (s), drawn uniformly per room.
        sample_rate: Hz.

    The defaults are the measured protocol of ``experiments/jam_wakeword.py``. They are milder than
    the spec's suggestion (±10 dB, noise 10-30 dB, living-room reverberation) because the clean
    detectors are not robust to more, music or not: on the bundled clips, background noise at
    10-30 dB SNR lowers openWakeWord alexa's clean TPR from 0.96 to 0.83, and rooms of RT60
    0.6-0.8 s lower hey_jarvis's to about 0.3; with RT60 0.15-0.3 s and 20-40 dB SNR both keep a
    clean F1 >= 0.9, so what the music does is not hidden by what the room does.
    """

    music_db: float = -10.0
    jitter_db: float = 3.0
    noise_snr_db: tuple[float, float] = (20.0, 40.0)
    scene_seconds: float = 3.0
    speech_end: tuple[float, float] = (0.75, 0.9)
    rt60: tuple[float, float] = (0.15, 0.3)
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        low, high = MUSIC_DB_RANGE
        if not (math.isfinite(self.music_db) and low <= self.music_db <= high):
            raise JamError(f"Music level {self.music_db} dB relative to speech is outside [{low:g}, {high:g}] dB: "
                           f"below that it is inaudible under the speech, above it the speech is drowned. "
                           f"Typical: --music-db -10.")
        if not (math.isfinite(self.jitter_db) and 0 <= self.jitter_db <= 20):
            raise JamError(f"jitter_db must be in [0, 20] dB; got {self.jitter_db}.")
        if not (NOISE_SNR_RANGE[0] <= self.noise_snr_db[0] <= self.noise_snr_db[1] <= NOISE_SNR_RANGE[1]):
            raise JamError(f"noise_snr_db {self.noise_snr_db} must be (low, high) within "
                           f"[{NOISE_SNR_RANGE[0]:g}, {NOISE_SNR_RANGE[1]:g}] dB.")
        if not (0 < self.speech_end[0] <= self.speech_end[1] <= 1):
            raise JamError(f"speech_end {self.speech_end} must be fractions of the scene, 0 < low <= high <= 1.")
        if not (RT60_LIMITS[0] <= self.rt60[0] <= self.rt60[1] <= RT60_LIMITS[1]):
            raise JamError(f"rt60 {self.rt60} s must be (low, high) within [{RT60_LIMITS[0]:g}, {RT60_LIMITS[1]:g}] s.")
        if not (math.isfinite(self.scene_seconds) and self.scene_seconds > 0):
            raise JamError(f"scene_seconds must be > 0; got {self.scene_seconds}.")

    @property
    def scene_samples(self) -> int:
        return int(round(self.scene_seconds * self.sample_rate))

    def fixed_level(self) -> EOTConfig:
        """The same distribution with the music at exactly ``music_db`` (evaluation)."""
        return replace(self, jitter_db=0.0)

    def as_dict(self) -> dict:
        return {"music_db": self.music_db, "jitter_db": self.jitter_db, "noise_snr_db": list(self.noise_snr_db),
                "scene_seconds": self.scene_seconds, "speech_end": list(self.speech_end), "rt60": list(self.rt60),
                "sample_rate": self.sample_rate}


# ---------------------------------------------------------------------------------------------
# Utterances
# ---------------------------------------------------------------------------------------------


def trim_silence(audio: torch.Tensor, sample_rate: int, name: str = "clip") -> torch.Tensor:
    """``[T]`` -> the stretch from the first to the last sample above ``TRIM_DB`` re peak, ± ``TRIM_MARGIN`` s."""
    peak = float(audio.abs().max()) if audio.numel() else 0.0
    if not math.isfinite(peak) or peak <= 1e-5:
        raise JamError(f"{name} is silent (peak {peak:.2e}): it has no speech to play. Remove it from the data.")
    loud = torch.nonzero(audio.abs() >= peak * 10 ** (TRIM_DB / 20)).flatten()
    margin = int(TRIM_MARGIN * sample_rate)
    return audio[max(0, int(loud[0]) - margin):int(loud[-1]) + 1 + margin]


@dataclass(frozen=True)
class Utterances:
    """Dry speech clips, trimmed: ``audio`` ``[N, S]`` zero-padded, ``lengths`` ``[N]`` (samples),
    ``labels`` ``[N]`` (1: the target word, 0: anything else), ``ids`` one name per clip."""

    ids: tuple[str, ...]
    audio: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def from_waveforms(cls, ids: Iterable[str], waveforms: Sequence[torch.Tensor], labels: Iterable[int],
                       sample_rate: int, trim: bool = True) -> Utterances:
        """From 1-D waveforms ``[T_i]`` in [-1, 1] at ``sample_rate`` (trimmed unless ``trim=False``)."""
        ids, labels = tuple(ids), [int(label) for label in labels]
        if not ids or len(ids) != len(waveforms) or len(ids) != len(labels):
            raise JamError(f"Give one id and one label per waveform (got {len(ids)} ids, {len(waveforms)} "
                           f"waveforms, {len(labels)} labels), and at least one.")
        clips = [trim_silence(w, sample_rate, i) if trim else w for i, w in zip(ids, waveforms, strict=True)]
        for name, clip in zip(ids, clips, strict=True):
            if not trim and float(clip.abs().max()) <= 1e-5:
                raise JamError(f"{name} is silent: it has no speech to play. Remove it from the data.")
        audio = torch.nn.utils.rnn.pad_sequence([c.float() for c in clips], batch_first=True)
        return cls(ids, audio, torch.tensor([len(c) for c in clips]), torch.tensor(labels))

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, keep: torch.Tensor) -> Utterances:
        """The clips where the bool mask ``keep`` ``[N]`` is True (or at the given indices)."""
        index = torch.nonzero(keep).flatten() if keep.dtype == torch.bool else keep
        lengths = self.lengths[index]
        width = int(lengths.max()) if len(index) else 0
        return Utterances(tuple(self.ids[i] for i in index.tolist()), self.audio[index, :width], lengths,
                          self.labels[index])

    def positives(self) -> Utterances:
        return self.subset(self.labels == 1)


# ---------------------------------------------------------------------------------------------
# Rooms
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoomSet:
    """Rooms of one split, each with a talker (source 0) and a loudspeaker (source 1).

    ``speech_rirs``, ``music_rirs``: ``[N, L]`` the responses from each source to the microphone,
    zero-padded to the longest.
    """

    split: str
    seed: int
    rooms: tuple[SimulatedRoom, ...]
    speech_rirs: torch.Tensor
    music_rirs: torch.Tensor
    _spectra: dict = field(default_factory=dict, compare=False, repr=False)  # (source, FFT size) -> [N, n//2+1]

    def __len__(self) -> int:
        return len(self.rooms)

    def spectra(self, source: str, n: int) -> torch.Tensor:
        """``rfft`` of every room's ``source`` (``"speech"`` or ``"music"``) response at FFT size ``n``
        ``[N, n // 2 + 1]``, computed once per size: every scene of the room reuses it."""
        key = (source, int(n))
        if key not in self._spectra:
            rirs = self.speech_rirs if source == "speech" else self.music_rirs
            self._spectra[key] = torch.fft.rfft(rirs, n=int(n))
        return self._spectra[key]

    def describe(self) -> list[dict]:
        return [{"split": self.split, "index": i, "size_m": [round(v, 3) for v in r.size], "rt60": round(r.rt60, 3),
                 "absorption": round(r.absorption, 4), "talker": [round(v, 3) for v in r.sources[0]],
                 "loudspeaker": [round(v, 3) for v in r.sources[1]], "mic": [round(v, 3) for v in r.mic]}
                for i, r in enumerate(self.rooms)]


def split_seed(split: str, seed: int) -> int:
    """The generator seed of a split's room stream: distinct per split and seed, stable across processes."""
    if split not in SPLITS:
        raise JamError(f"Unknown room split {split!r}; use one of {', '.join(SPLITS)}.")
    return zlib.crc32(f"rooms:{split}:{seed}".encode())


def decay_length(rir: torch.Tensor, floor_db: float = RIR_FLOOR_DB) -> int:
    """Samples of ``rir`` ``[L]`` until what is left of its energy falls ``floor_db`` below the total."""
    remaining = rir.double().flip(0).pow(2).cumsum(0).flip(0)
    return int((remaining >= remaining[0] * 10 ** (floor_db / 10)).sum())


@functools.lru_cache(maxsize=16)
def make_rooms(split: str, count: int, seed: int = 0, rt60: tuple[float, float] = (0.2, 0.6),
               sample_rate: int = 16000) -> RoomSet:
    """``count`` rooms of ``split``, drawn from that split's own stream (cached per process).

    Each room: RT60 uniform in ``rt60`` s, then :func:`simulate_room` with two sources. The
    responses are cut to the longest decay to ``RIR_FLOOR_DB`` (pyroomacoustics pads them far past
    it, and every scene convolves with them). Simulation costs about 0.05-0.5 s per room at RT60
    0.2-0.6 s.
    """
    if count < 1:
        raise JamError(f"A room set needs at least one room; got {count}.")
    generator = torch.Generator().manual_seed(split_seed(split, seed))
    rooms = []
    for _ in range(count):
        value = rt60[0] + (rt60[1] - rt60[0]) * float(torch.rand(1, generator=generator, dtype=torch.float64))
        rooms.append(simulate_room(value, generator, sources=2, sample_rate=sample_rate))
    width = max(decay_length(h) for r in rooms for h in r.rirs)
    rirs = torch.stack([torch.nn.functional.pad(r.rirs, (0, max(0, width - r.rirs.shape[1])))[:, :width]
                        for r in rooms])
    return RoomSet(split, seed, tuple(rooms), rirs[:, 0].contiguous(), rirs[:, 1].contiguous())


def ensure_disjoint(rooms: RoomSet, *others: RoomSet, fix: str) -> None:
    """Raise :class:`JamError` if a room of ``rooms`` is also a room of one of ``others``: a scene scored, or a
    loop chosen, in a room the music was learned in is not held out. ``fix`` ends the one-line message."""
    for other in others:
        shared = set(rooms.rooms) & set(other.rooms)
        if shared:
            raise JamError(f"{len(shared)} {rooms.split} room(s) of seed {rooms.seed} are also {other.split} rooms "
                           f"of seed {other.seed}: {fix}")


def room_split(config: EOTConfig, optimisation: int = 16, held_out: int = 16, seed: int = 0
               ) -> tuple[RoomSet, RoomSet]:
    """The optimisation rooms and the held-out rooms; raises if any room were in both."""
    train = make_rooms("optimisation", optimisation, seed, tuple(config.rt60), config.sample_rate)
    test = make_rooms("held-out", held_out, seed, tuple(config.rt60), config.sample_rate)
    ensure_disjoint(test, train, fix="change the seed.")
    return train, test


# ---------------------------------------------------------------------------------------------
# Transforms and scenes
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transforms:
    """One draw per scene, ``B`` scenes.

    ``room`` ``[B]`` index into the room set; ``music_db`` ``[B]`` music level re speech (dB);
    ``music_offset`` ``[B]`` where in the loop the scene starts (samples); ``speech_end`` ``[B]`` the
    sample at which the utterance ends; ``noise_snr_db`` ``[B]``; ``noise`` ``[B, T]`` background
    segments at their recorded level (scaled when rendered).
    """

    room: torch.Tensor
    music_db: torch.Tensor
    music_offset: torch.Tensor
    speech_end: torch.Tensor
    noise_snr_db: torch.Tensor
    noise: torch.Tensor

    def __len__(self) -> int:
        return len(self.room)

    def take(self, index: torch.Tensor) -> Transforms:
        """The transforms of the scenes at ``index`` ``[b]``."""
        return Transforms(self.room[index], self.music_db[index], self.music_offset[index], self.speech_end[index],
                          self.noise_snr_db[index], self.noise[index])

    def rows(self) -> list[dict]:
        """Per scene, the scalar draws (for records)."""
        return [{"room": int(r), "music_db": float(m), "music_offset": int(o), "speech_end": int(e),
                 "noise_snr_db": float(n)}
                for r, m, o, e, n in zip(self.room, self.music_db, self.music_offset, self.speech_end,
                                         self.noise_snr_db, strict=True)]


def sample_transforms(count: int, rooms: RoomSet, config: EOTConfig, generator: torch.Generator, *,
                      loop_samples: int) -> Transforms:
    """Draw ``count`` transforms (rooms from ``rooms`` only) for a music loop of ``loop_samples``."""
    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(count, generator=generator, dtype=torch.float64)

    room = torch.randint(len(rooms), (count,), generator=generator)
    music_db = uniform(config.music_db - config.jitter_db, config.music_db + config.jitter_db)
    offset = torch.randint(loop_samples, (count,), generator=generator)
    end = (uniform(*config.speech_end) * config.scene_samples).round().long().clamp(1, config.scene_samples)
    snr = uniform(*config.noise_snr_db)
    noise = noise_segments(count, config.scene_samples, generator, sample_rate=config.sample_rate)
    return Transforms(room, music_db.float(), offset, end, snr.float(), noise)


def _gain_to_level(reference: torch.Tensor, signal: torch.Tensor, level_db: torch.Tensor) -> torch.Tensor:
    """Per-row gain ``[B, 1]`` that sets ``20 log10(||g signal|| / ||reference||)`` to ``level_db`` ``[B]``."""
    return (10 ** ((level_db + snr_db(reference, signal)) / 20)).unsqueeze(1)


def speech_parts(speech: Utterances, transforms: Transforms, rooms: RoomSet, config: EOTConfig
                 ) -> dict[str, torch.Tensor]:
    """The speech and the background noise of each scene at the microphone, at their final levels.

    Returns ``{"speech", "noise", "span"}``, ``[B, T]`` each; ``span`` is the 0/1 mask of the
    utterance's samples. What the music does not change: :func:`evaluate` renders it once per batch
    for all its music conditions.
    """
    if len(speech) != len(transforms):
        raise JamError(f"{len(speech)} utterances for {len(transforms)} transforms: give one per scene.")
    batch, length = len(transforms), config.scene_samples
    dry = torch.zeros(batch, length)
    span = torch.zeros(batch, length)
    for b in range(batch):
        end, size = int(transforms.speech_end[b]), int(speech.lengths[b])
        start = max(0, end - size)
        dry[b, start:end] = speech.audio[b, size - (end - start):size]
        span[b, start:end] = 1.0
    n = length + rooms.speech_rirs.shape[1] - 1  # linear convolution: no wrap-around
    wet = torch.fft.irfft(torch.fft.rfft(dry, n=n) * rooms.spectra("speech", n)[transforms.room], n=n)[:, :length]
    wet = wet * _gain_to_level(dry * span, wet * span, torch.zeros(batch))  # the dry speech level
    noise = transforms.noise * _gain_to_level(wet * span, transforms.noise * span, -transforms.noise_snr_db)
    return {"speech": wet, "noise": noise, "span": span}


def music_part(music: torch.Tensor, transforms: Transforms, rooms: RoomSet, parts: dict[str, torch.Tensor]
               ) -> torch.Tensor:
    """The music of each scene at the microphone ``[B, T]``, at its level relative to ``parts``' speech.

    The loop plays over and over, so what reaches the microphone is its periodic steady state: the
    loop circularly convolved with the room's loudspeaker response (exact while the response is no
    longer than the loop), read from the scene's offset. One FFT of the loop per call and one
    product per room used, instead of a linear convolution of every scene's stretch of the loop.

    Args:
        music: the loop ``[Tm]`` (every scene) or ``[B, Tm]`` (one per scene). Gradients flow to it.
        transforms, rooms: as drawn by :func:`sample_transforms` from ``rooms``.
        parts: :func:`speech_parts` of the same scenes.
    """
    speech, span = parts["speech"], parts["span"]
    batch, length = speech.shape
    loop = music.shape[-1]
    # Gradients reach the loop through gather and index_select, never advanced indexing (music[index]): its
    # backward adds up repeated indices in a thread-dependent order on CPU, so one seed could learn two loops.
    if rooms.music_rirs.shape[1] > loop:  # a loop shorter than the room's decay: play it out linearly
        history = rooms.music_rirs.shape[1]
        index = (transforms.music_offset.unsqueeze(1) - history + torch.arange(length + history)) % loop
        played = torch.gather(music.expand(batch, loop) if music.dim() == 1 else music, 1, index)
        n = length + 2 * history - 1
        heard = torch.fft.irfft(torch.fft.rfft(played, n=n) * rooms.spectra("music", n)[transforms.room],
                                n=n)[:, history:history + length]
    else:
        responses = rooms.spectra("music", loop)
        if music.dim() == 1:  # one loop: one steady state per room used, shared by its scenes
            used, which = torch.unique(transforms.room, return_inverse=True)
            steady = torch.fft.irfft(torch.fft.rfft(music).unsqueeze(0) * responses[used], n=loop)
            steady = steady.index_select(0, which)
        else:
            steady = torch.fft.irfft(torch.fft.rfft(music) * responses[transforms.room], n=loop)
        index = (transforms.music_offset.unsqueeze(1) + torch.arange(length)) % loop
        heard = torch.gather(steady, 1, index)
    gain = _gain_to_level(speech * span, heard * span, transforms.music_db)
    # a silent loop (or one silent while the utterance plays) has no level to set: it stays silent, not NaN
    return heard * torch.where(torch.isfinite(gain), gain, torch.zeros_like(gain))


def render_parts(speech: Utterances, music: torch.Tensor | None, transforms: Transforms, rooms: RoomSet,
                 config: EOTConfig) -> dict[str, torch.Tensor]:
    """The three components of each scene at the microphone, at their final levels, ``[B, T]`` each.

    Args:
        speech: ``B`` utterances (row ``b`` goes with transform ``b``).
        music: the loop ``[Tm]`` (every scene) or ``[B, Tm]`` (one per scene), or ``None`` (no music:
            the ``music`` part is zeros). Gradients flow to it.
        transforms, rooms, config: as drawn by :func:`sample_transforms` from ``rooms``.
    Returns: ``{"speech", "music", "noise", "span"}``; ``span`` is the 0/1 mask of the utterance's samples.
    """
    parts = speech_parts(speech, transforms, rooms, config)
    parts["music"] = torch.zeros_like(parts["speech"]) if music is None else music_part(music, transforms, rooms,
                                                                                        parts)
    return parts


def render(speech: Utterances, music: torch.Tensor | None, transforms: Transforms, rooms: RoomSet,
           config: EOTConfig) -> torch.Tensor:
    """Scenes ``[B, T]`` in [-1, 1]: speech + music + background (see :func:`render_parts`)."""
    parts = render_parts(speech, music, transforms, rooms, config)
    return (parts["speech"] + parts["music"] + parts["noise"]).clamp(-1.0, 1.0)


__all__ = ["EOTConfig", "JamError", "MUSIC_DB_RANGE", "NOISE_SNR_RANGE", "RoomSet", "SPLITS", "Transforms",
           "Utterances", "decay_length", "make_rooms", "music_part", "render", "render_parts", "room_split",
           "sample_transforms", "speech_parts", "split_seed", "trim_silence"]

"""Room acoustics and noise mixing shared by the attacks (played-back jamming) and the metrics (natural noise).

- :mod:`.rooms`: simulated shoebox rooms (pyroomacoustics, optional extra ``rooms``), their impulse
  responses cached per (RT60, seed, room), and batched FFT reverberation;
- :mod:`.mixing`: mixing at an SNR (:func:`~.mixing.snr_db`) and segments of the bundled background recordings;
- :mod:`.voice`: talker and device transforms (speed, pitch, formants, EQ, loudspeaker and microphone bands);
- :mod:`.scenes`: the played-back scene of wake-word jamming (an utterance and a music loop in a simulated room,
  with background noise): its settings (:class:`~.scenes.EOTConfig`), room sets, transform draws and rendering,
  the distribution that :func:`robustaudio.attacks.jamming.jam` takes the expectation over;
- :mod:`.augmentation`: talker and device augmentation of those scenes while learning.

A lower layer than ``attacks`` and ``metrics``: it imports only torch, torchaudio, numpy, scipy,
pyroomacoustics and :mod:`robustaudio.data`.
"""

from .mixing import NOISE_DIR, NOISE_RATE, AcousticsError, mix_at_snr, noise_names, noise_segments, snr_db
from .rooms import (
                    MIN_DISTANCE,
                    ROOM_BANK,
                    ROOM_MAX,
                    ROOM_MIN,
                    RT60_RANGE,
                    WALL_MARGIN,
                    RoomLayout,
                    SimulatedRoom,
                    bank_layouts,
                    bank_responses,
                    bank_seed,
                    clear_room_cache,
                    decay_time,
                    draw_layout,
                    fft_convolve,
                    layout_response,
                    require_pyroomacoustics,
                    reverberate,
                    room_bank,
                    room_impulse_response,
                    simulate_layout,
                    simulate_room,
)

__all__ = ["AcousticsError", "MIN_DISTANCE", "NOISE_DIR", "NOISE_RATE", "ROOM_BANK", "ROOM_MAX", "ROOM_MIN",
           "RT60_RANGE", "RoomLayout", "SimulatedRoom", "WALL_MARGIN", "bank_layouts", "bank_responses", "bank_seed",
           "clear_room_cache", "decay_time", "draw_layout", "fft_convolve", "layout_response", "mix_at_snr",
           "noise_names", "noise_segments", "require_pyroomacoustics", "reverberate", "room_bank",
           "room_impulse_response", "simulate_layout", "simulate_room", "snr_db"]

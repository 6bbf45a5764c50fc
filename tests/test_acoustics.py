"""robustaudio.acoustics: the cached seeded room bank, batched FFT convolution, reverb, and its layer."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import robustaudio.acoustics as acoustics
from robustaudio.acoustics import (
    AcousticsError,
    bank_layouts,
    bank_responses,
    bank_seed,
    clear_room_cache,
    fft_convolve,
    layout_response,
    reverberate,
    room_bank,
    room_impulse_response,
)
from robustaudio.metrics.corruptions import reverb

RATE = 16000
CHEAP_RT60 = 0.2  # about 0.02 s per simulated room


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def clips(batch=4, samples=4000, seed=0):
    return 0.1 * torch.randn(batch, samples, generator=seeded(seed))


def decaying_rir(length=300, peak=7, seed=0):
    """A synthetic response: a little pre-delay noise, the direct sound at ``peak``, then a decaying tail."""
    h = 0.05 * torch.randn(length, generator=seeded(seed), dtype=torch.float64) * torch.exp(-torch.arange(length) / 60)
    h[peak] = 1.0
    return h.float()


# -- batched FFT convolution ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_fft_convolve_equals_direct_convolution(dtype, tol):
    x = torch.randn(3, 257, generator=seeded(1), dtype=dtype)
    h = torch.randn(3, 61, generator=seeded(2), dtype=dtype)
    direct = np.stack([np.convolve(a, b) for a, b in zip(x.double().numpy(), h.double().numpy(), strict=True)])
    full = fft_convolve(x, h)
    assert full.shape == (3, 257 + 61 - 1) and full.dtype == dtype
    np.testing.assert_allclose(full.double().numpy(), direct, atol=tol)
    # conv1d (a cross-correlation) with the flipped kernel, on one row
    conv = torch.nn.functional.conv1d(x[:1, None].double(), h[:1, None].double().flip(-1), padding=60)[0, 0]
    np.testing.assert_allclose(full[0].double().numpy(), conv.numpy(), atol=tol)
    # the first `length` samples only, and one kernel broadcast over the batch
    np.testing.assert_allclose(fft_convolve(x, h, 100).double().numpy(), direct[:, :100], atol=tol)
    shared = fft_convolve(x, h[0])
    expected = [np.convolve(a, h[0].double().numpy()) for a in x.double().numpy()]
    np.testing.assert_allclose(shared.double().numpy(), expected, atol=tol)
    with pytest.raises(AcousticsError, match="length"):
        fft_convolve(x, h, 10_000)


def test_reverberate_aligns_the_direct_sound_and_keeps_the_rms():
    """Against the per-clip definition: numpy's convolution from the response's peak, T samples, at the input RMS."""
    x = clips(batch=5, samples=1000)
    rirs = [decaying_rir(300, peak=7, seed=3), decaying_rir(120, peak=40, seed=4)]
    which = torch.tensor([1, 0, 0, 1, 1])
    y = reverberate(x, rirs, which)
    for b in range(5):
        h = rirs[int(which[b])].double().numpy()
        peak = int(np.abs(h).argmax())
        wet = np.convolve(x[b].double().numpy(), h)[peak:peak + 1000]
        wet *= np.sqrt(np.mean(x[b].double().numpy() ** 2) / np.mean(wet ** 2))
        np.testing.assert_allclose(y[b].double().numpy(), wet, atol=1e-5)
    assert torch.allclose(y.pow(2).mean(-1).sqrt(), x.pow(2).mean(-1).sqrt(), rtol=1e-5)
    with pytest.raises(AcousticsError, match="one response index per clip"):
        reverberate(x, rirs, torch.tensor([0, 1, 2, 0, 0]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_reverberate_on_the_gpu_matches_the_cpu():
    x = clips(batch=8, samples=RATE)
    rirs = [decaying_rir(4000, peak=30, seed=s) for s in range(3)]
    which = torch.randint(3, (8,), generator=seeded(5))
    cpu = reverberate(x, rirs, which)
    gpu = reverberate(x.cuda(), rirs, which.cuda())
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=1e-4)


# -- the cached, seeded bank ---------------------------------------------------------------------


def test_bank_layouts_are_seeded_and_a_small_bank_is_the_start_of_a_large_one():
    four, eight = bank_layouts(CHEAP_RT60, 4, 0), bank_layouts(CHEAP_RT60, 8, 0)
    assert eight[:4] == four and len(set(eight)) == 8
    assert bank_layouts(CHEAP_RT60, 4, 1) != four                   # another seed, other rooms
    assert bank_layouts(0.4, 4, 0)[0].size != four[0].size            # each RT60 its own stream


def test_rir_cache_gives_the_same_response_for_the_same_key_and_another_for_another_seed():
    pytest.importorskip("pyroomacoustics")
    first = bank_responses(CHEAP_RT60, [0, 1], rooms=4, seed=0)
    again = bank_responses(CHEAP_RT60, [0, 1], rooms=4, seed=0)
    assert all(a is b for a, b in zip(first, again, strict=True))                  # cached, not simulated again
    other = bank_responses(CHEAP_RT60, [0], rooms=4, seed=1)[0]
    assert not torch.equal(other[:len(first[0])], first[0][:len(other)])
    clear_room_cache()
    fresh = bank_responses(CHEAP_RT60, [0, 1], rooms=4, seed=0)
    assert fresh[0] is not first[0] and all(torch.equal(a, b) for a, b in zip(first, fresh, strict=True))  # seeded
    # the bank's room i is the i-th room drawn from the bank's own generator, as room_bank has always drawn
    generator = seeded(bank_seed(CHEAP_RT60, 0))
    assert torch.equal(room_impulse_response(CHEAP_RT60, generator), fresh[0])
    assert torch.equal(room_impulse_response(CHEAP_RT60, generator), fresh[1])
    assert all(torch.equal(a, b) for a, b in zip(room_bank(CHEAP_RT60, RATE, 2), fresh, strict=True))


def test_reverb_simulates_only_the_rooms_its_clips_use():
    pytest.importorskip("pyroomacoustics")
    clear_room_cache()
    reverb(clips(batch=2), CHEAP_RT60, seeded(3))
    assert layout_response.cache_info().currsize <= 2


def test_reverb_is_reproducible_and_matches_the_per_clip_definition():
    pytest.importorskip("pyroomacoustics")
    x = clips(batch=6)
    y = reverb(x, CHEAP_RT60, seeded(7))
    clear_room_cache()                                                # simulated again: the same rooms
    assert torch.equal(reverb(x, CHEAP_RT60, seeded(7)), y)
    assert not torch.equal(reverb(x, CHEAP_RT60, seeded(8)), y)
    bank = room_bank(CHEAP_RT60, RATE, 16)
    picks = torch.randint(16, (6,), generator=seeded(7))              # the draw reverb makes
    for b, pick in enumerate(picks.tolist()):
        h = bank[pick].double().numpy()
        peak = int(np.abs(h).argmax())
        wet = np.convolve(x[b].double().numpy(), h)[peak:peak + x.shape[1]]
        wet *= np.sqrt(np.mean(x[b].double().numpy() ** 2) / np.mean(wet ** 2))
        np.testing.assert_allclose(y[b].double().numpy(), np.clip(wet, -1, 1), atol=1e-5)


# -- layering ------------------------------------------------------------------------------------

ALLOWED = {"torch", "torchaudio", "numpy", "scipy", "pyroomacoustics", "soundfile"}
FORBIDDEN = ("robustaudio.attacks", "robustaudio.metrics", "robustaudio.models")


def imported_modules(path: Path, package: str) -> set[str]:
    """Every module ``path`` imports (anywhere in the file), relative imports resolved against ``package``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)  # `from .. import metrics`
    return names


def test_acoustics_imports_nothing_from_attacks_metrics_or_models():
    root = Path(acoustics.__file__).parent
    files = sorted(root.glob("*.py"))
    assert {f.name for f in files} >= {"__init__.py", "rooms.py", "mixing.py"}
    for path in files:
        for module in imported_modules(path, "robustaudio.acoustics"):
            assert not module.startswith(FORBIDDEN), f"{path.name} imports {module}"
            top = module.split(".")[0]
            if top == "robustaudio":
                assert module.startswith(("robustaudio.acoustics", "robustaudio.data", "robustaudio.extras")), \
                    f"{path.name} imports {module}"
            else:
                assert top in ALLOWED or top in sys.stdlib_module_names, f"{path.name} imports {module}"


def test_the_layering_check_sees_relative_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from ..metrics.corruptions import reverb\nfrom .. import models\n")
    found = imported_modules(sample, "robustaudio.acoustics")
    assert "robustaudio.metrics.corruptions" in found and "robustaudio.models" in found

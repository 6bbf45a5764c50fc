"""Rendering the listening section: HTML (audio players and spectrograms as data URIs), Markdown (links
to the files under ``listen/``), and the figure files (:func:`write_figures`, :func:`clear`)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from .document import markdown_text
from .listen_audio import AUDIO_CAP_BYTES, LISTEN_DIR, Example, Listen

TITLE = "Listen and look: examples"


def _players(example: Example) -> dict[str, str]:
    return example.captions or {"clean": "clean", "adversarial": "adversarial",
                                "delta": f"δ amplified ×{example.amplify}"}


def _caption(example: Example) -> str:
    if example.captions is not None:  # not an attack: the why says it all
        return example.why
    snr = f"; recomputed δ at SNR {example.snr_db:.0f} dB" if example.snr_db is not None else ""
    why = example.why[:1].upper() + example.why[1:]
    return f"{why}. Record: {example.recorded}. Recomputed: {example.recomputed}{snr}."


def listen_html(listen: Listen | None) -> list[str]:
    if listen is None:
        return []
    e = html.escape
    parts = [f"<h2>{e(TITLE)}</h2>", f"<p>{e(listen.intro)}</p>"]
    for n, example in enumerate(listen.examples, 1):
        players = "".join(
            f"<figure><figcaption>{e(name)}</figcaption><audio controls preload='auto' "
            f"src='data:audio/wav;base64,{base64.b64encode(example.wavs[key]).decode('ascii')}'></audio></figure>"
            for key, name in _players(example).items())
        image = base64.b64encode(example.figure).decode("ascii")
        parts.append(f"<div class='example'><h3>{n}. {e(example.label)}: {e(example.clip_id)}</h3>"
                     f"<p>{e(_caption(example))}</p><div class='players'>{players}</div>"
                     f"<img alt='spectrograms of example {n}' src='data:image/jpeg;base64,{image}'></div>")
    if listen.left_out:
        parts.append(f"<p>{listen.left_out} more example(s) left out: the embedded audio would pass "
                     f"{AUDIO_CAP_BYTES / 1e6:g} MB.</p>")
    return parts


def listen_markdown(listen: Listen | None) -> list[str]:
    if listen is None:
        return []
    t = markdown_text
    out = [f"## {TITLE}", "", t(listen.intro), ""]
    for n, example in enumerate(listen.examples, 1):
        files = ", ".join(f"[{name}]({LISTEN_DIR}/{n:02d}-{key}.wav)" for key, name in _players(example).items())
        out += [f"### {n}. {t(example.label)}: {t(example.clip_id)}", "", t(_caption(example)), "",
                f"Listen: {files}", "", f"![spectrograms of example {n}](figures/listen_{n:02d}.jpg)", ""]
    if listen.left_out:
        out += [f"{listen.left_out} more example(s) left out: the embedded audio would pass "
                f"{AUDIO_CAP_BYTES / 1e6:g} MB.", ""]
    return out


def clear(run_dir: Path, figures_dir: Path) -> None:
    """Remove the examples of an earlier rendering (their number or choice may change)."""
    for path in [*(run_dir / LISTEN_DIR).glob("*.wav"), *figures_dir.glob("listen_*.jpg")]:
        path.unlink()


def write_figures(listen: Listen | None, figures_dir: Path) -> None:
    for n, example in enumerate(listen.examples if listen else [], 1):
        (figures_dir / f"listen_{n:02d}.jpg").write_bytes(example.figure)

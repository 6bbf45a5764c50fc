"""The jamming report: ``card.json``, ``scenes.jsonl``, the music as WAV, figures, ``report.md`` and ``report.html``.

Built from a :class:`robustaudio.runner.jam.JamRun` only. Files written under ``out``:

- ``card.json``: settings, rooms, clips used, the detection table (F1 / TPR / FPR with 95% intervals
  per detector × room set × condition), the headline (F1 per room set and condition), the
  optimisation history, wall time and versions;
- ``scenes.jsonl``: one row per detector × room set × condition × scene (score, decision, draws);
- ``music_adversarial.wav`` (the optimised loop) and ``music_random.wav`` (the first random loop,
  where the optimisation started), 16-bit PCM at the detector's rate, at the synthesiser's level;
- ``figures/``: the two loops' waveforms, their spectrograms, the optimisation curve, F1 by
  condition; ``report.md`` links them and ``report.html`` holds them inline.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from .. import versions
from ..data.audio import write_audio
from ..metrics.jamming import CONDITIONS
from ..records import check_own_folders, write_json_atomic, write_text_atomic
from ..runner.jam import JamRun
from . import style
from .card import json_safe
from .document import FIGURES_DIR, document_html, document_markdown, estimate_text, fmt, save_figure
from .headline import Flag, Headline

CARD_FILE = "card.json"
SCENES_FILE = "scenes.jsonl"
MUSIC_FILES = {"adversarial": "music_adversarial.wav", "random": "music_random.wav"}
ZOOM_SECONDS = 0.05


def figure_waveforms(music: dict[str, torch.Tensor], sample_rate: int) -> plt.Figure:
    """Each loop ``[Tm]``: the whole loop and its first ``ZOOM_SECONDS``."""
    fig, axes = style.figure(len(music), 2, width=11, height=2.2 * len(music), gridspec_kw={"width_ratios": [3, 1]})
    for row, (name, loop) in zip(axes, music.items()):
        t = np.arange(loop.shape[-1]) / sample_rate
        zoom = t < ZOOM_SECONDS
        for ax, keep, title in ((row[0], slice(None), f"{name} music (whole loop)"),
                                (row[1], zoom, f"first {ZOOM_SECONDS * 1000:g} ms")):
            ax.plot(t[keep], loop.numpy()[keep], linewidth=0.4)
            ax.set_title(title)
            ax.set_xlabel("time (s)")
            ax.set_ylim(-1, 1)
        row[0].set_ylabel("sample")
    style.finish(fig)
    return fig


def figure_spectrograms(music: dict[str, torch.Tensor], sample_rate: int) -> plt.Figure:
    """Log-power spectrograms of each loop ``[Tm]`` (dB re full scale, :func:`~.style.power_db`) on the
    reports' one colour scale."""
    power = {f"{name} music": style.power_db(loop.numpy(), sample_rate) for name, loop in music.items()}
    return style.spectrogram_figure(power, sample_rate, top=max(float(p.max()) for p in power.values()))


def figure_history(history: list[dict]) -> plt.Figure:
    """The jamming loss and the fraction of the batch's scenes still firing, against the step (or, for a
    query-based jam, the queries spent)."""
    by_queries = bool(history) and "queries" in history[0]
    steps = [h["queries" if by_queries else "step"] for h in history]
    fig, axes = style.figure(1, 1, width=style.WIDTH, height=3.2)
    ax = axes[0][0]
    if history and "fit_loss" in history[0]:  # a substitute's rounds: how well it fits, how far its jam got
        ax.plot(steps, [h["fit_loss"] for h in history], marker=".", label="substitute's fit to the answers (BCE)")
        ax.plot(steps, [h["jam_loss"] for h in history], marker=".", label="jam loss on the substitute")
        ax.set_xlabel("queries answered before the round")
        ax.set_ylabel("loss")
        style.legend_outside(ax)
        style.finish(fig)
        return fig
    if history and "visibility" in history[0]:  # a masking jam reads no detector: nothing fires while it learns
        ax.plot(steps, [h["visibility"] for h in history], marker=".", label="speech visibility (batch mean)")
        ax.fill_between(steps, [h["visibility_range"][0] for h in history],
                        [h["visibility_range"][1] for h in history], alpha=0.2, label="batch range")
        ax.set_xlabel("step")
        ax.set_ylabel("visibility (1 unmasked, 0 hidden)")
        style.legend_outside(ax)
        style.finish(fig)
        return fig
    ax.plot(steps, [h["loss"] for h in history], marker=".", color=style.SERIES[0],
            label="loss (softplus of the window log-sum-exp)")
    ax.set_xlabel("queries" if by_queries else "step")
    ax.set_ylabel("loss")
    twin = ax.twinx()
    twin.plot(steps, [h["firing"] for h in history], color=style.SERIES[1], marker=".",
              label="batch scenes firing")
    twin.set_ylim(-0.02, 1.02)
    twin.set_ylabel("fraction firing")
    twin.spines["right"].set_visible(True)
    fig.legend(fontsize=7, loc="upper center", ncol=2)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    return fig


def figure_queries(curve: list[dict], headline_f1: dict) -> plt.Figure | None:
    """F1 of the loop against the queries spent, with random music and no music as lines (None without a curve)."""
    if not curve:
        return None
    fig, axes = style.figure(1, 1, width=style.WIDTH, height=3.2)
    ax = axes[0][0]
    ax.plot([c["queries"] for c in curve], [c["f1"] for c in curve], marker="o", color=style.SERIES[2],
            label="adversarial music")
    held_out = headline_f1.get("held-out", {})
    for condition, colour, line in (("random", style.SERIES[1], "--"), ("clean", style.SERIES[0], ":")):
        if condition in held_out:
            ax.axhline(held_out[condition], color=colour, linestyle=line,
                       label="random music" if condition == "random" else "no music")
    ax.set_xlabel("queries (scenes scored by the detector)")
    ax.set_ylabel("F1, held-out rooms")
    ax.set_ylim(0, 1.05)
    style.legend_outside(ax)
    style.finish(fig)
    return fig


def figure_f1(summary: list[dict]) -> plt.Figure:
    """F1 with its 95% interval per room set (groups) and condition (bars), one panel per detector."""
    detectors = sorted({s["detector"] for s in summary})
    fig, axes = style.figure(1, len(detectors), width=min(5.5 * len(detectors) + 1.5, 11), height=3.4)
    for ax, name in zip(axes[0], detectors):
        rows = [s for s in summary if s["detector"] == name]
        room_sets = list(dict.fromkeys(s["rooms"] for s in rows))
        conditions = [c for c in CONDITIONS if any(s["condition"] == c for s in rows)]
        width = 0.8 / len(conditions)
        for k, condition in enumerate(conditions):
            picked = [next((s for s in rows if s["rooms"] == r and s["condition"] == condition), None)
                      for r in room_sets]
            values = [s["f1"]["value"] if s else np.nan for s in picked]
            low = [s["f1"]["value"] - s["f1"]["ci95"][0] if s else 0 for s in picked]
            high = [s["f1"]["ci95"][1] - s["f1"]["value"] if s else 0 for s in picked]
            ax.bar(np.arange(len(room_sets)) + k * width, values, width, yerr=[low, high], capsize=3, label=condition,
                   color=style.SERIES[k % len(style.SERIES)])
        ax.set_xticks(np.arange(len(room_sets)) + 0.4 - width / 2)
        ax.set_xticklabels([f"{r} rooms" for r in room_sets])
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("F1")
        ax.set_title(name)
    style.legend_outside(axes[0][-1])
    style.finish(fig)
    return fig


def figure_voices(table: list[dict], detector: str = "target") -> plt.Figure | None:
    """TPR per held-out voice (rows, grouped by engine) for random vs adversarial music: one dot each,
    a line between the two, so a voice the music does not jam stands out."""
    rows = [r for r in table if r["detector"] == detector and r["condition"] in ("random", "adversarial")]
    voices = sorted({(r["engine"] or "", r["voice"]) for r in rows})
    if not voices:
        return None
    fig, axes = style.figure(1, 1, width=6.5, height=max(2.2, 0.24 * len(voices) + 1.0))
    ax = axes[0][0]
    tpr = {(r["voice"], r["condition"]): r["tpr"] for r in rows}
    for y, (_, voice) in enumerate(voices):
        a, b = tpr.get((voice, "random"), np.nan), tpr.get((voice, "adversarial"), np.nan)
        ax.plot([a, b], [y, y], color=style.CHANCE, linewidth=1, zorder=1)
    for k, condition in enumerate(("random", "adversarial")):
        ax.scatter([tpr.get((v, condition), np.nan) for _, v in voices], range(len(voices)), s=22, zorder=2,
                   color=style.SERIES[k + 1], label=f"{condition} music")
    ax.set_yticks(range(len(voices)))
    ax.set_yticklabels([v for _, v in voices], fontsize=7.5)
    ax.set_xlim(-0.03, 1.03)
    ax.set_xlabel("detection rate (TPR) over the voice's scenes, all scene seeds")
    ax.set_title("Per held-out voice")
    style.legend_outside(ax)
    style.finish(fig)
    return fig


def _seed_rows(summary: list[dict], key: str) -> list[list[str]]:
    return [[s["detector"], *([s["group"]] if key == "group" else []), s["condition"], str(s["voices"]),
             str(s["scenes"]), estimate_text(s["f1"]), f"{fmt(s['seed_mean'])} ({fmt(s['seed_range'][0])}-"
             f"{fmt(s['seed_range'][1])})", estimate_text(s["tpr"]), estimate_text(s["fpr"])] for s in summary]


def _query_sections(card: dict) -> list[tuple[str, list[str], list[list[str]], str]]:
    """A query-based jam's F1 against the queries spent (empty for a gradient jam)."""
    curve = card.get("query_curve") or []
    if not curve:
        return []
    rows = [[f"{c['queries']:,}", fmt(c["f1"]), fmt(c["tpr"]), fmt(c["fpr"]), str(c["scenes"])] for c in curve]
    note = (f"The loop as it stood after each number of queries (scenes scored by the detector while searching), "
            f"played to the test clips in the held-out rooms of scene seed {curve[0]['scene_seed']} (one scene per "
            f"clip; the rows above pool every seed). Scoring these loops is measurement, not counted as queries.")
    return [("F1 against queries", ["queries", "F1", "TPR", "FPR", "scenes"], rows, note)]


def _selection(query: dict) -> str:
    """The queries outside a query-based jam's budget: one dry query per learning clip, choosing those it detects
    (``selection_queries``; absent from cards written before it was recorded)."""
    count = query.get("selection_queries")
    return f" (+{count:,} dry queries choosing the clips to learn from)" if count else ""


def _optimisation_line(card: dict) -> str:
    """How the loop was found: gradient steps, or counted queries to a black box."""
    s = card["settings"]
    query = s.get("query")
    if query:
        scores = "per-step" if query["feedback"] == "steps" else "clip"
        if query.get("method") == "substitute":
            kept = ("the loop the detector's answers found firing least" if query.get("keep_best") else
                    "the last round's loop")
            return (f"query-based (black box): {query.get('substitutes', 1)} substitute(s) fitted to the detector's "
                    f"{scores} scores and jammed with gradients, {kept}, {query['used']:,} queries of "
                    f"{query['queries']:,}{_selection(query)} ({s['steps']} rounds: "
                    f"{query['first_queries']:,} queries before the first fit, then {query['round_queries']:,} per "
                    f"round; {query['fit_steps']} fitting and {query['jam_steps']} jam steps per round), "
                    f"{card['optimisation_seconds']:.0f} s")
        return (f"query-based (black box): NES on the detector's {scores} scores, {query['used']:,} "
                f"queries of {query['queries']:,}{_selection(query)} ({s['steps']} steps of {query['population']} "
                f"candidates × {query['batch_size']} scenes, σ {query['sigma']:g}, Adam lr {query['lr']:g}), "
                f"{card['optimisation_seconds']:.0f} s")
    if s.get("objective") == "masking":
        restarts, kept = s.get("restarts"), ""
        if restarts:
            readings = ", ".join(f"seed {k} {v:.3f}" for k, v in zip(restarts["seeds"], restarts["visibility"],
                                                                      strict=True))
            kept = (f"; best of {len(restarts['seeds'])} loops by the word's visibility in {restarts['rooms']} rooms "
                    f"of their own ({readings}): kept seed {restarts['seeds'][restarts['kept']]}")
        return (f"masking objective (no detector read: the word's visibility in microWakeWord's public front end): "
                f"{s['steps']} steps × {s['batch_size']} scenes, Adam lr {s['lr']:g}{kept}, "
                f"{card['optimisation_seconds']:.0f} s")
    return (f"optimisation: {s['steps']} steps × {s['batch_size']} scenes, Adam lr {s['lr']:g}, "
            f"{card['optimisation_seconds']:.0f} s")


def _seed_sections(card: dict) -> list[tuple[str, list[str], list[list[str]], str]]:
    """Held-out rooms over several scene seeds, with voice-clustered intervals; per engine; per voice."""
    if not card.get("seed_summary"):
        return []
    seeds = ", ".join(map(str, card["settings"].get("scene_seeds", [])))
    header = ["detector", "condition", "voices", "scenes", "F1 [95% CI]", "F1 per seed: mean (min-max)",
              "TPR [95% CI]", "FPR [95% CI]"]
    note = (f"Scene seeds {seeds}: each its own held-out rooms, scenes and random loops. F1, TPR and FPR pool "
            f"all seeds; the 95% intervals resample voices (all scenes of a voice together), not scenes, so a "
            f"few voices the music happens to suit cannot narrow them, and are widened for few voices (Student's t "
            f"over the normal: ×1.58 for 5 voices, ×1.10 for 20), without which they covered 83-87% rather than "
            f"95% in simulation.")
    sections = [(f"Held-out rooms over {len(card['settings'].get('scene_seeds', []))} scene seeds", header,
                 _seed_rows(card["seed_summary"], "condition"), note)]
    if card.get("engine_summary"):
        sections.append(("Per engine", ["detector", "engine", *header[1:]], _seed_rows(card["engine_summary"],
                                                                                      "group"),
                         "The same, one row per speech engine (or recording set); intervals resample voices "
                         "within the engine."))
    by_voice: dict[tuple, dict] = {}
    for r in card.get("voice_table", []):
        if r["detector"] == "target":
            entry = by_voice.setdefault((r["engine"] or "", r["voice"]), {"clips": r["clips"], "scenes": r["scenes"]})
            entry[r["condition"]] = r["tpr"]
    rows = [[engine, voice, str(v["clips"]), str(v["scenes"]),
             *(fmt(v.get(c)) for c in ("clean", "random", "adversarial"))]
            for (engine, voice), v in sorted(by_voice.items())]
    if rows:
        sections.append(("Per voice", ["engine", "voice", "positive clips", "scenes per condition", "TPR clean",
                                       "TPR random", "TPR adversarial"], rows,
                         "Detection rate of the target word per held-out voice, over all scene seeds and draws."))
    return sections


def headline(summary: list[dict], detector: str = "target") -> dict:
    """``{rooms: {condition: F1}}`` for one detector."""
    out: dict[str, dict[str, float]] = {}
    for s in summary:
        if s["detector"] == detector:
            out.setdefault(s["rooms"], {})[s["condition"]] = s["f1"]["value"]
    return out


def build_jam_card(run: JamRun, model: str, notes: list[str] | tuple[str, ...] = ()) -> dict:
    """The card as a JSON-ready dict (non-finite floats left in; :func:`json_safe` makes them None)."""
    return {
        "model": model, "target": run.settings["target"], "music_db": run.settings["eot"]["music_db"],
        "settings": run.settings, "synthesiser": run.synth, "clips": run.selected,
        "rooms": {name: rooms.describe() for name, rooms in run.rooms.items()},
        "headline_f1": headline(run.summary), "detection": run.summary,
        "seed_summary": run.seed_summary, "engine_summary": run.engine_summary, "voice_table": run.voice_table,
        "history": run.result.history, "optimisation_seconds": run.result.seconds, "query_curve": run.query_curve,
        "wall_seconds": run.settings["seconds"], "files": {**MUSIC_FILES, "scenes": SCENES_FILE},
        "notes": list(notes), "versions": versions(),
    }


def _sections(card: dict) -> list[tuple[str, list[str], list[list[str]], str]]:
    header = ["detector", "rooms", "condition", "scenes", "F1 [95% CI]", "TPR [95% CI]", "FPR [95% CI]",
              "precision", "mean positive score"]
    rows = [[s["detector"], s["rooms"], s["condition"], str(s["scenes"]),
             *(estimate_text(s[rate]) for rate in ("f1", "tpr", "fpr")), fmt(s["precision"]),
             fmt(s["mean_positive_score"])] for s in card["detection"]]
    eot = card["settings"]["eot"]
    note = (f"Music at {card['music_db']:g} dB relative to the speech at the microphone (RMS over the utterance). "
            f"random: {card['settings']['random_pieces']} loops of the same synthesiser from random starts at the "
            f"same level; adversarial: the optimised loop. Scenes are paired across conditions (same rooms, "
            f"offsets, noise). Background noise at {eot['noise_snr_db'][0]:g}-{eot['noise_snr_db'][1]:g} dB SNR; "
            f"rooms of design RT60 {eot['rt60'][0]:g}-{eot['rt60'][1]:g} s. Intervals: 95%, over scenes (Wilson "
            f"for TPR and FPR, percentile bootstrap for F1).")
    room_header = ["split", "room", "size (m)", "RT60 (s)", "absorption", "talker", "loudspeaker", "mic"]
    room_rows = [[name, str(r["index"]), " × ".join(f"{v:.2f}" for v in r["size_m"]), f"{r['rt60']:.2f}",
                  f"{r['absorption']:.3f}", *(", ".join(f"{v:.2f}" for v in r[key])
                                              for key in ("talker", "loudspeaker", "mic"))]
                 for name, rooms in card["rooms"].items() for r in rooms]
    return [*_seed_sections(card), *_query_sections(card), ("Detection", header, rows, note),
            ("Rooms", room_header, room_rows, "Optimisation and held-out rooms come from separate seeded streams; "
                                              "the optimisation never draws a held-out room.")]


def _summary_lines(card: dict) -> list[str]:
    s, clips, synth = card["settings"], card["clips"], card["synthesiser"]
    learned_from = ("all: the masking objective asks the detector nothing" if s.get("objective") == "masking"
                    else "those found clean")
    lines = [f"model: {card['model']} (target class {card['target']!r})",
             f"music level: {card['music_db']:g} dB relative to speech (optimised with ±{s['eot']['jitter_db']:g} dB)",
             f"synthesiser: Karplus-Strong, {len(synth['strings_hz'])} strings on the {synth['scale']} scale from "
             f"{synth['root_hz']:g} Hz, {synth['notes']} notes in a {synth['loop_seconds']:g} s loop "
             f"({synth['notes_per_second']:g} per second; the random music on the same grid)",
             f"clips: optimised on {clips['learn_positives']} of {clips['learn_positives_given']} positives "
             f"({learned_from}); evaluated on {clips['test_positives']} of {clips['test_positives_given']} "
             f"positives and {clips['test_negatives']} of {clips['test_negatives_given']} negatives "
             f"(those handled correctly clean)",
             f"rooms: {s['optimisation_rooms']} for optimisation, {s['held_out_rooms']} held out; "
             f"{s['draws']} scenes per clip and room set",
             f"{_optimisation_line(card)}; whole run {card['wall_seconds']:.0f} s",
             f"music: {card['files']['adversarial']} (adversarial), {card['files']['random']} (random start)",
             f"seed: {s['seed']}; versions: {', '.join(f'{k} {v}' for k, v in card['versions'].items())}"]
    choice = s.get("level_choice")
    if choice:
        engines = (f"; engines {', '.join(choice['engines'])}" if choice.get("engines") else "")
        own = (f"; other voices of the evaluated engine(s) {', '.join(choice['evaluated_engines'])}, which heard "
               f"random music only, never the adversarial music" if choice.get("evaluated_engines") else "")
        lines.append(f"music level chosen on split {choice['split']!r} ({choice['positives']} positives, "
                     f"{choice['negatives']} negatives, never evaluated on{engines}{own}): the loudest level "
                     f"keeping a mean random-music F1 ≥ {choice['floor']:g} over scene seeds "
                     f"{', '.join(map(str, choice['scene_seeds']))}: "
                     + ", ".join(f"{level} dB {fmt(entry['mean'])}" for level, entry in choice["random_f1"].items())
                     + f": {choice['chosen_db']:g} dB")
        if choice.get("groups"):
            at = f"{choice['chosen_db']:g}"
            weakest = min(choice["groups"].items(), key=lambda kv: kv[1].get(at, float("inf")))
            lines.append(f"the floor held for every {choice['by']} of those clips at once ({len(choice['groups'])}; "
                         f"the weakest at {at} dB: {weakest[0]}, {fmt(weakest[1][at])}): "
                         + "; ".join(f"{group} " + ", ".join(f"{lvl} dB {fmt(m)}" for lvl, m in means.items())
                                     for group, means in choice["groups"].items()))
    for rooms, values in card["headline_f1"].items():
        lines.append(f"F1 in {rooms} rooms: " + ", ".join(f"{c} {fmt(v)}" for c, v in values.items()))
    return lines


def write_jam_report(out: str | Path, run: JamRun, model: str, notes: list[str] | tuple[str, ...] = ()) -> dict:
    """Write every file listed in the module docstring under ``out``; returns the card."""
    out = Path(out)
    check_own_folders(out)
    (out / FIGURES_DIR).mkdir(parents=True, exist_ok=True)
    sample_rate = run.settings["eot"]["sample_rate"]
    card = build_jam_card(run, model, notes)
    write_json_atomic(out / CARD_FILE, json_safe(card), allow_nan=False)
    write_text_atomic(out / SCENES_FILE, "".join(json.dumps(json_safe(row)) + "\n" for row in run.rows))
    music = {"adversarial": run.result.music, "random": run.random_music[0]}
    for name, loop in music.items():
        write_audio(out / MUSIC_FILES[name], loop, sample_rate)
    figures = [(title, name, save_figure(fig, out / FIGURES_DIR / name)) for title, name, fig in [
        ("F1 by condition", "f1.png", figure_f1(run.summary)),
        ("The music: waveforms", "waveforms.png", figure_waveforms(music, sample_rate)),
        ("The music: spectrograms", "spectrograms.png", figure_spectrograms(music, sample_rate)),
        ("Optimisation", "optimisation.png", figure_history(run.result.history)),
        ("F1 against queries", "queries.png", figure_queries(run.query_curve, card["headline_f1"])),
        ("Per voice", "voices.png", figure_voices(run.voice_table)),
    ] if fig is not None]
    warnings = [{"kind": "note", "message": n} for n in notes]
    title = f"Adversarial music against {model}"
    headline = jam_headline(card)
    players_md, players_html = _players(music, sample_rate, card)
    lines, sections = _summary_lines(card), _sections(card)
    write_text_atomic(out / "report.md", document_markdown(title, lines, sections, figures, warnings, headline,
                                                           players_md))
    write_text_atomic(out / "report.html", document_html(title, lines, sections, figures, warnings, headline,
                                                         players_html))
    return card


def _players(music: dict[str, torch.Tensor], sample_rate: int, card: dict) -> tuple[list[str], list[str]]:
    """The two loops to listen to: links in Markdown, embedded 16-bit WAV players in HTML."""
    import base64
    import html

    from .listen import wav_bytes
    intro = (f"One loop each, as written to {card['files']['adversarial']} and {card['files']['random']} (16-bit WAV "
             f"at {sample_rate} Hz, at the synthesiser's level; in the scenes it plays {card['music_db']:g} dB "
             f"relative to the speech).")
    markdown = ["## Listen: the music", "", intro, "",
                *[f"- [{name} music]({MUSIC_FILES[name]})" for name in music], ""]
    players = "".join(f"<figure><figcaption>{html.escape(name)} music</figcaption><audio controls preload='auto' "
                      f"src='data:audio/wav;base64,{base64.b64encode(wav_bytes(loop.numpy(), sample_rate)).decode()}'>"
                      f"</audio></figure>" for name, loop in music.items())
    return markdown, ["<h2>Listen: the music</h2>", f"<p>{html.escape(intro)}</p>",
                      f"<div class='players'>{players}</div>"]


def _how_found(s: dict) -> str:
    """The headline's short account of how the loop was found: counted queries, the masking objective, or
    gradient steps (:func:`_optimisation_line` is the long one)."""
    if s.get("query"):
        query = s["query"]
        return (f"query-based ({'substitute' if query.get('method') == 'substitute' else 'NES'}): "
                f"{query['used']:,} queries{_selection(query)}, "
                f"{'per-step' if query['feedback'] == 'steps' else 'clip'} scores")
    if s.get("objective") == "masking":
        best = f", best of {len(s['restarts']['seeds'])} loops" if s.get("restarts") else ""
        return f"masking objective, no detector read: {s['steps']} steps × {s['batch_size']} scenes{best}"
    return f"optimisation: {s['steps']} steps × {s['batch_size']} scenes"


LEVELS_DIFFER = ("the level at which random music leaves a detector working differed by more than 20 dB between "
                 "speech engines")


def _level_fit(choice: dict | None) -> str:
    """Whether the music level of a jam evaluated on held-out engines was fitted to them (``choice``: the
    ``level_choice`` record, None where ``--music-db`` gave the level)."""
    if choice is None:
        return (f"music level given, not chosen: {LEVELS_DIFFER} (--level-split with other voices of the evaluated "
                f"engine fits it)")
    if choice.get("evaluated_engines"):
        return (f"music level chosen on other voices of the evaluated engine(s) "
                f"{', '.join(choice['evaluated_engines'])} (random music only)")
    return f"music level chosen on other engines only: it may not fit the evaluated one ({LEVELS_DIFFER})"


def _loud_control_fix(choice: dict | None) -> str:
    """What to do when random music alone drowns the evaluated voices (``choice``: the ``level_choice`` record, None
    where ``--music-db`` gave the level). A level chosen on a few voices need not hold for others: chosen on two
    RHVoice speakers (random music 0.76 at -6 dB), it left three others at 0.35; the per-voice rule on the same two
    (-10 dB) still left them at 0.51 (``experiments/jam_rhvoice.md``): more level voices first."""
    quieter = "a quieter --music-db: at this level any music masks the word, so the attack's share is small"
    if not choice:
        return quieter
    at = f"{choice['chosen_db']:g}"  # choose_music_level records every level it tried, the chosen one among them
    where = (f"the level was chosen on {choice['positives']} other positives, where random music kept "
             f"{fmt(choice['random_f1'][at]['mean'])} at {at} dB; it does not hold for these voices")
    if choice.get("by") == "voice":
        return f"{where} although every level voice kept the floor: choose it on more voices, or {quieter}"
    return (f"{where}: choose it on more voices, or with --level-by voice (every voice must keep the floor), or "
            f"{quieter}")


STILL_FIRING = 0.2  # share of its own learning scenes a finished jam still fires on: jams that worked ended at
# 0.00-0.06 (-7 and -13 dB, experiments/jam_dectalk.md), jams learned at -31 dB at 0.25-0.50 and did little
# (experiments/jam_pico.md)


def learning_firing(history: list[dict]) -> tuple[float, int] | None:
    """The mean share of the learning batches' scenes the detector still fired on over the last tenth of the
    logged steps (at least five), and the steps that covers; None where the history logs no firing (a masking jam
    reads no detector; a substitute search logs rounds)."""
    logged = [h for h in history if "firing" in h and "step" in h]
    if not logged:
        return None
    tail = logged[-max(5, len(logged) // 10):]
    before = logged[-len(tail) - 1]["step"] if len(tail) < len(logged) else 0  # the steps since the entry before
    return float(np.mean([h["firing"] for h in tail])), logged[-1]["step"] - before


def jam_headline(card: dict) -> Headline:
    """The target detector's F1 in the held-out rooms: clean, with random music, with the optimised music;
    over the scene seeds with voice-clustered intervals when they were run. Flags when the random music
    alone already drowns the word (pooled, or for one evaluated engine while the pooled control holds), when
    the optimised music is not clearly worse than it, or when the optimisation ended with the detector still
    firing on its own learning scenes (:func:`learning_firing`)."""
    s = card["settings"]
    pooled = {r["condition"]: r for r in card.get("seed_summary") or [] if r["detector"] == "target"}
    flags = []
    if pooled:
        chain = " → ".join(f"{estimate_text(pooled[c]['f1'])} ({c if c != 'random' else 'random music'})"
                           for c in ("clean", "random", "adversarial") if c in pooled)
        voices = pooled[next(iter(pooled))]["voices"]
        engines = sorted({r["group"] for r in card.get("engine_summary") or []})
        unseen = f" of {', '.join(engines)}" if engines and s.get("evaluate_engines") else ""
        sentence = (f"The detector's F1 for {card['target']!r} in held-out rooms over {len(s['scene_seeds'])} scene "
                    f"seeds, {voices} voices{unseen}: {chain}, with music at {card['music_db']:g} dB relative to "
                    f"the speech (95% intervals resample voices).")
        random, adversarial = pooled.get("random"), pooled.get("adversarial")
        if random is not None and random["f1"]["value"] < 0.7:
            flags.append(Flag("loud control", "random music", f"F1 {fmt(random['f1']['value'])} with random music "
                              f"alone", _loud_control_fix(s.get("level_choice"))))
        fragile = [r for r in card.get("engine_summary") or [] if r["detector"] == "target"
                   and r["condition"] == "random" and r["f1"]["value"] < 0.7]
        if fragile and (random is None or random["f1"]["value"] >= 0.7):  # the pooled control hides an engine
            flags.append(Flag("loud control for an engine", "random music by engine",
                              ", ".join(f"{r['group']} F1 {fmt(r['f1']['value'])}" for r in fragile)
                              + " with random music alone", "a quieter --music-db, or --level-split with clips of "
                              "that engine (or --level-by engine): the level at which random music keeps 0.70 "
                              "differs between engines"))
        if random is not None and adversarial is not None and \
                adversarial["f1"]["ci95"][1] >= random["f1"]["ci95"][0]:
            flags.append(Flag("no clear effect", "adversarial vs random music", "their voice-clustered intervals "
                              "overlap", "more --queries, or more voices to learn from" if s.get("query") else
                              "more --steps, --augment, or more voices to learn from"))
    else:
        f1 = card["headline_f1"]
        rooms = "held-out" if "held-out" in f1 else next(iter(f1), None)
        values = f1.get(rooms, {})
        chain = " → ".join(f"{fmt(values[c], 2)} ({c if c != 'random' else 'random music'})"
                           for c in ("clean", "random", "adversarial") if c in values)
        sentence = (f"The detector's F1 for {card['target']!r} in {rooms} rooms: {chain}, with music at "
                    f"{card['music_db']:g} dB relative to the speech.")
        flags.append(Flag("one draw of scenes", "evaluation", "no scene seeds were run, so the interval is over "
                          "scenes of one draw", "--scene-seeds 1 2 3 4 5 (the default)"))
    unfinished = learning_firing(card.get("history") or [])
    if unfinished is not None and unfinished[0] >= STILL_FIRING:
        flags.append(Flag("unfinished optimisation", "learning scenes", f"the detector still fired on "
                          f"{unfinished[0]:.0%} of the scenes the music learned on over its last {unfinished[1]} "
                          f"steps", "a louder --music-db where random music still keeps the control, or "
                          + ("more --queries" if s.get("query") else "more --steps (where this was seen, at -31 dB, "
                             "the firing had levelled off near 40% by step 1000)")
                          + "; if neither is possible, the music could not jam at this level: read its score as the "
                          "attack's limit, not as the detector's robustness"))
    passed = ("The random-music condition is the control: the same synthesiser at the same level from random starts; "
              "only the gap between it and the optimised music is the attack's doing.")
    settings = [_how_found(s), f"rooms: {s['optimisation_rooms']} "
                f"for optimisation, {s['held_out_rooms']} held out", f"{s['draws']} scenes per clip and room set",
                f"seed: {s['seed']}"]
    if s.get("evaluate_engines"):
        settings.append(f"evaluated on engine(s) never learned from: {', '.join(s['evaluate_engines'])}")
        settings.append(_level_fit(s.get("level_choice")))
    if s.get("augmentation"):
        settings.append("talker and device augmentation while learning")
    return Headline(sentence, flags, "" if flags else passed, settings)


__all__ = ["build_jam_card", "headline", "learning_firing", "write_jam_report", "CARD_FILE", "SCENES_FILE",
           "MUSIC_FILES"]

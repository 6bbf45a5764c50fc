"""Transfer of adversarial music to microWakeWord ``alexa`` from an ensemble of white-box surrogates.

Usage::

    python experiments/make_wakeword_clips.py runs/voices --voices      # once (see jam_heldout.py)
    python experiments/jam_surrogates.py --voices runs/voices --out runs/jam_surrogates
    python experiments/jam_surrogates.py --train-steps 30 --steps 5 --seeds 1 --quick   # a smoke test
    python experiments/jam_surrogates.py --surrogates --sets masking --steps 2000 --levels -12 -13 -14 \
        --out runs/jam_masking2000_s0                                                   # the masking loop

Protocol (issue: "optimise against an ensemble of white-box surrogates at once"):

- **Our own detectors.** Three small "alexa" detectors trained here on eSpeak NG speech only (the
  learning engine of ``jam_heldout.py``): a DS-CNN on log-mels, a DS-CNN on MFCCs (the front end of
  microcontroller keyword spotters) and a CRNN (conv + GRU, max pooling over frames) on log-mels. They
  learn from 3 s scenes rendered in the optimisation rooms (speech at a random place, background noise,
  random synthesiser music in half the scenes): positives are the eSpeak NG "alexa" clips of the
  learning voices, negatives eSpeak NG everyday phrases and "hey jarvis" (synthesised here) and scenes
  without speech.
- **The jam.** One loop optimised against openWakeWord alexa alone, and one against the ensemble
  (openWakeWord + the three detectors: the loss pushes down the largest margin over all their windows),
  both with talker and device augmentation, 300 steps, at -10 dB re speech (the level
  ``jam_heldout.py`` chose on validation voices with openWakeWord; microWakeWord never chooses anything).
- **A loop learned against no network** (``--sets masking``, :mod:`robustaudio.attacks.masking_jam`): it
  minimises the word's visibility in the public TFLite-Micro front end (no detector's weights), 2000 steps with
  talker and device augmentation in ``jam_surrogates.md``; ``--load-musics`` scores saved loops again, ``--fresh``
  on ``make_wakeword_clips.py --accented`` voices instead; ``--add-learn`` adds the positives of other sets (e.g.
  recorded people's calibration sessions) to what the masking loop learns from.
- **Scored on microWakeWord only.** Held-out flite and Festival voices in held-out rooms over five scene
  seeds, voice-clustered intervals, clean / random music / each loop; also at -12 dB, the level at which
  random music keeps microWakeWord's F1 near 0.70.

Writes ``OUT/jam_surrogates.json`` and ``OUT/jam_surrogates.md`` (``--md`` copies the markdown).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from robustaudio.acoustics.augmentation import Augmentation
from robustaudio.acoustics.scenes import EOTConfig, Utterances, render, room_split, sample_transforms
from robustaudio.attacks.jamming import Detector, jam, load_speech
from robustaudio.attacks.masking_jam import masking_jam, mean_visibility
from robustaudio.attacks.music import KarplusStrong
from robustaudio.data.speech import read_speech_set
from robustaudio.metrics.jamming import clean_correct, evaluate_seeds, random_loops, seed_summary, voice_table
from robustaudio.models import load_model
from robustaudio.models.zoo.crnn import CRNN
from robustaudio.models.zoo.dscnn import DSCNN
from robustaudio.report.card import json_safe

sys.path.insert(0, str(Path(__file__).parent))
from make_wakeword_clips import VOICE_NEGATIVES, espeak_cli, espeak_variants, to_clip  # noqa: E402
from wakeword_protocol import CLUSTER_CHOICES, cluster_of, fmt, joined, log, speech_split  # noqa: E402

LABELS = ("other", "alexa")


def espeak_negatives(count: int, seed: int) -> Utterances:
    """``count`` eSpeak NG clips of everyday phrases and "hey jarvis" by random variants, accents and rates."""
    rng = np.random.default_rng(seed)
    variants = espeak_variants()
    texts = (*VOICE_NEGATIVES, "hey jarvis", "alex", "a lexicon", "relax now")
    waves = []
    for _ in range(count):
        voice = f"{rng.choice(['en', 'en-us', 'en-gb-x-rp', 'en-029'])}+{rng.choice(variants)}"
        samples, rate = espeak_cli(str(rng.choice(texts)), voice, int(rng.integers(130, 190)),
                                   int(rng.integers(30, 70)))
        waves.append(torch.from_numpy(to_clip(samples, rate)))
    return Utterances.from_waveforms([f"neg{k}" for k in range(count)], waves, [0] * count, 16000)


SURROGATES = ("dscnn-logmel", "dscnn-mfcc", "crnn-logmel", "dscnn-pcan", "dscnn-pcan-small")


def surrogates(names=SURROGATES[:3]) -> dict[str, torch.nn.Module]:
    """Our detectors by name; ``-pcan``: on the TFLite-Micro front end (noise reduction, PCAN, log: the features
    microWakeWord computes, :class:`robustaudio.models.frontends.MicroFrontend`), with other architectures, widths
    and training data than microWakeWord's."""
    makers = {
        "dscnn-logmel": lambda: DSCNN(LABELS, feature_kind="logmel", clip_seconds=3.0),
        "dscnn-mfcc": lambda: DSCNN(LABELS, feature_kind="mfcc", clip_seconds=3.0),
        "crnn-logmel": lambda: CRNN(LABELS, pooling="max", n_mels=40, embedding_size=64, conv_layers=4, pool_layers=2,
                                    clip_seconds=3.0, multilabel=False),
        "dscnn-pcan": lambda: DSCNN(LABELS, feature_kind="pcan", clip_seconds=3.0, feature_mean=8.0, feature_std=8.0),
        "dscnn-pcan-small": lambda: DSCNN(LABELS, feature_kind="pcan", clip_seconds=3.0, channels=32, blocks=3,
                                          first_kernel=(6, 4), feature_mean=8.0, feature_std=8.0),
    }
    return {name: makers[name]() for name in names}


def train(model, positives: Utterances, negatives: Utterances, rooms, config: EOTConfig, steps: int, seed: int,
          adversarial_every: int = 0, adversarial_steps: int = 20) -> None:
    """Scenes in ``rooms``: a third positives, a third negative speech, a third no speech; music in half.

    ``adversarial_every`` > 0 trains the surrogate against the music that jams it (a *robust* surrogate: "a little
    robustness goes a long way" for transfer, Springer et al. 2021): from a quarter of the way in, every
    ``adversarial_every`` steps one persistent synthesiser is jammed ``adversarial_steps`` more steps against the
    surrogate as it is (talker and device augmentation) and its loop joins a pool; half the music is then drawn from
    the pool, the labels unchanged (the word is still said)."""
    generator = torch.Generator().manual_seed(seed)
    loops = random_loops(4.0, 16000, 8, base=50_000)(seed)
    adversary, hard_loops = KarplusStrong(4.0, 16000, seed=seed + 77), torch.empty(0, loops.shape[1])
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, 2e-3, total_steps=steps)
    silent = Utterances.from_waveforms(["none"], [torch.full((1600,), 1e-4)], [0], 16000)
    model.train()
    batch = 24
    for step in range(steps):
        if adversarial_every and step >= steps // 4 and step % adversarial_every == 0:
            found = jam(adversary, Detector(model, "alexa"), positives, rooms, config, steps=adversarial_steps,
                        batch_size=8, lr=0.05, seed=seed + step, log_every=adversarial_steps,
                        augmentation=Augmentation())
            hard_loops = torch.cat([hard_loops, found.music[None]])  # stacked once per refresh, not per step
            log(f"  step {step}: adversarial loop {len(hard_loops)}, firing {found.history[-1]['firing']:.2f}")
        kinds = torch.arange(batch) % 3
        speech = []
        for kind in kinds.tolist():
            pool = positives if kind == 0 else negatives if kind == 1 else silent
            speech.append(int(torch.randint(len(pool), (1,), generator=generator)))
        utterances = Utterances.from_waveforms(
            [str(i) for i in range(batch)],
            [(positives if k == 0 else negatives if k == 1 else silent).audio[i][
                :int((positives if k == 0 else negatives if k == 1 else silent).lengths[i])]
             for k, i in zip(kinds.tolist(), speech)], [int(k == 0) for k in kinds.tolist()], 16000)
        transforms = sample_transforms(batch, rooms, config, generator, loop_samples=loops.shape[1])
        with torch.no_grad():
            music = loops[torch.randint(len(loops), (batch,), generator=generator)]
            if len(hard_loops):
                hard = hard_loops[torch.randint(len(hard_loops), (batch,), generator=generator)]
                music = torch.where(torch.rand(batch, 1, generator=generator) < 0.5, hard, music)
            music = music * (torch.rand(batch, 1, generator=generator) < 0.5)
            scenes = render(utterances, music, transforms, rooms, config)
        loss = F.cross_entropy(model(scenes), (kinds == 0).long())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if (step + 1) % 100 == 0:
            log(f"  step {step + 1}: loss {float(loss):.3f}")
    model.eval()


class Ensemble:
    """Detectors as one: margins side by side (the jam loss pushes down the largest of all)."""

    threshold = 0.5

    def __init__(self, detectors: dict[str, Detector]):
        self.detectors = detectors
        self.model = next(iter(detectors.values())).model
        self.sample_rate = 16000
        self.target = "alexa"

    def margins(self, audio: torch.Tensor) -> torch.Tensor:
        return torch.cat([d.margins(audio) for d in self.detectors.values()], dim=1)

    def scores(self, audio: torch.Tensor) -> torch.Tensor:
        return torch.stack([d.scores(audio) for d in self.detectors.values()]).amax(dim=0)


def noise_loops(speech: Utterances, seconds: float = 4.0, rate: int = 16000, seed: int = 0) -> dict[str, torch.Tensor]:
    """Plain maskers of the loops' length, for a baseline the music must beat: white noise, pink noise (power
    ∝ 1/f above 20 Hz) and speech-shaped noise (white noise through the mean power spectrum of ``speech``,
    Hann frames of 512 samples hopped by 256). The scene sets every loop's level, so only the spectrum counts."""
    n = int(seconds * rate)
    white = torch.randn(n, generator=torch.Generator().manual_seed(seed))
    spectrum, freqs = torch.fft.rfft(white), torch.fft.rfftfreq(n, 1.0 / rate)
    frames = torch.cat([speech.audio[k, :int(length)].unfold(0, 512, 256) for k, length in enumerate(speech.lengths)
                        if int(length) >= 512])
    power = (torch.fft.rfft(frames * torch.hann_window(512), dim=1).abs() ** 2).mean(dim=0)  # [257]
    shape = torch.nn.functional.interpolate(power.sqrt()[None, None], size=len(freqs), mode="linear")[0, 0]
    loops = {"white noise": white, "pink noise": torch.fft.irfft(spectrum / freqs.clamp(min=20.0).sqrt(), n),
             "speech-shaped noise": torch.fft.irfft(spectrum * shape, n)}
    return {name: 0.9 * loop / loop.abs().max() for name, loop in loops.items()}


def condition(name: str) -> str:
    """A loop's condition name in the tables: plain noise is a baseline, everything learned is adversarial."""
    return f"baseline ({name})" if name.endswith(" noise") else f"adversarial ({name})"


def learning_positives(positives: Utterances, held_out: Utterances | None) -> Utterances:
    """The masking loop's learning set: ``positives``, and ``held_out``'s positives where given."""
    return positives if held_out is None else joined(positives, held_out.positives())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--voices", type=Path, default=Path("runs/voices"))
    parser.add_argument("--out", type=Path, default=Path("runs/jam_surrogates"))
    parser.add_argument("--md", type=Path)
    parser.add_argument("--train-steps", type=int, default=1200)
    parser.add_argument("--negatives", type=int, default=300)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--levels", type=float, nargs="+", default=[-10.0, -12.0])
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--surrogates", nargs="*", choices=SURROGATES, default=list(SURROGATES[:3]))
    parser.add_argument("--sets", nargs="+", choices=("openwakeword", "ensemble", "surrogates", "masking"),
                        default=["openwakeword", "ensemble"],
                        help="loops to learn: against openWakeWord alone, openWakeWord + the surrogates, the "
                             "surrogates alone, or masking (no detector: the word's visibility in microWakeWord's "
                             "public front end, robustaudio.attacks.masking_jam)")
    parser.add_argument("--load-musics", type=Path, nargs="+", default=[],
                        help="earlier runs' OUT/musics.pt: score their loops (those of --sets) instead of learning; "
                             "with several, each loop is named after its run's folder")
    parser.add_argument("--fresh", type=Path, nargs="+", default=[],
                        help="score on every clip of these make_wakeword_clips.py folders (--accented, --languages) "
                             "instead of the held-out flite + Festival voices")
    parser.add_argument("--cluster-by", choices=CLUSTER_CHOICES, default="voice",
                        help="--fresh: the unit the intervals resample (speaker: the recorded person)")
    parser.add_argument("--batch-size", type=int, default=16, help="masking: scenes per step")
    parser.add_argument("--notes-per-second", type=float, default=4.0,
                        help="masking: the loop's rhythm grid (onsets per second); other than 4, the scoring adds "
                             "random loops on that grid as a reference condition")
    parser.add_argument("--tail", type=float, default=1.0,
                        help="masking: average the visibility over this share of each batch where the word shows "
                             "most (robustaudio.attacks.masking_jam's tail)")
    parser.add_argument("--learn-held-out", action="store_true",
                        help="masking: learn from the held-out flite + Festival positives too (needs --fresh: "
                             "those voices are then no test)")
    parser.add_argument("--add-learn", type=Path, nargs="+", default=[],
                        help="masking: also learn from the positives of these make_wakeword_clips.py folders "
                             "(split fresh) that openWakeWord handles dry, like the other learning positives; "
                             "never one of --fresh")
    parser.add_argument("--add-repeat", type=int, default=1, help="each --add-learn positive enters this many times")
    parser.add_argument("--pick-visibility", action="store_true",
                        help="log each loop's speech visibility on scenes of W's learning voices (eSpeak NG learning "
                             "+ held-out flite + Festival positives) in held-out rooms: a detector-free pick")
    parser.add_argument("--noise-baselines", action="store_true",
                        help="also score white, pink and speech-shaped noise (the learning positives' spectrum) at "
                             "the same level: what learning buys over a plain masker")
    parser.add_argument("--word", choices=("alexa", "hey_jarvis"), default="alexa",
                        help="the wake word (and the openWakeWord / microWakeWord models of it); hey_jarvis with "
                             "--voices runs/voices_jarvis, masking loops only")
    parser.add_argument("--score", nargs="+", choices=("microwakeword", "openwakeword"),
                        default=["microwakeword", "openwakeword"], help="the detectors the loops are played to")
    parser.add_argument("--opt-seed", type=int, default=0, help="seeds the loops' synthesisers and scene draws")
    parser.add_argument("--no-augment", action="store_true", help="learn the loops without talker and device "
                        "augmentation")
    parser.add_argument("--load-surrogates", type=Path,
                        help="an earlier run's OUT/surrogates.pt: use its trained surrogates instead of training")
    parser.add_argument("--adversarial-every", type=int, default=0,
                        help="train the surrogates against their own jamming music every this many steps (robust "
                             "surrogates); 0: plain training")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.word != "alexa" and (args.surrogates or set(args.sets) != {"masking"}):
        parser.error("our surrogates detect 'alexa' only: with another --word, learn or score masking loops alone "
                     "(--surrogates with no names, --sets masking)")
    if args.learn_held_out and not args.fresh:
        parser.error("--learn-held-out learns from the held-out flite + Festival voices: score on --fresh folders")
    if {p.resolve() for p in args.add_learn} & {p.resolve() for p in args.fresh}:
        parser.error("--add-learn and --fresh name the same folder: the loop would be scored on speech it learned")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    config = EOTConfig(music_db=args.levels[0], jitter_db=3.0, scene_seconds=3.0)
    optimisation, _ = room_split(config, 16, 16, 0)
    word = args.word
    oww = Detector(load_model(f"openwakeword:{word}", pad_before=0.0, pad_after=0.0), word)
    mww = Detector(load_model(f"microwakeword:{word}"), word)

    split = speech_split(args.voices, word=word, quick=args.quick)
    learn, validate, evaluate = split["learn"], split["validate"], split["evaluate"]
    positives, _, _, _ = load_speech(learn, word, 16000)
    validation, _, _, _ = load_speech(validate, word, 16000)
    held_out, held_out_voices, _, _ = load_speech(evaluate, word, 16000)  # flite + Festival: scored, or learned
    trained = torch.load(args.load_surrogates, weights_only=True) if args.load_surrogates else {}
    training = [name for name in args.surrogates if name not in trained]
    # negatives only train surrogates: none to synthesise when every surrogate is loaded (or there is none)
    negatives = espeak_negatives(args.negatives if not args.quick else 30, seed=0) if training else None
    log(f"learn: {len(positives)} positives, {len(negatives) if negatives else 0} synthesised negatives; "
        f"validate {len(validation)}")

    detectors = {"openwakeword": oww}
    quality = {}
    for name, model in surrogates(args.surrogates).items():
        if name in trained:
            log(f"{name}: loaded from {args.load_surrogates}")
            model.load_state_dict(trained[name])
            model.eval()
        else:
            log(f"training {name}")
            train(model, positives, negatives, optimisation, config, args.train_steps, seed=1,
                  adversarial_every=args.adversarial_every)
        detectors[name] = Detector(model, "alexa")
        # quality where it will be used: scenes (rooms, noise, no music) of the validation voices in held-out
        # rooms; a dry clip in digital silence is outside what the surrogates were trained on
        rows = evaluate_seeds({"target": detectors[name]}, validation, config, {"clean": None}, seeds=(1,),
                              held_out_rooms=16, draws=2, avoid=optimisation)
        labels = np.array([r["label"] for r in rows], dtype=bool)
        fired = np.array([r["fired"] for r in rows], dtype=bool)
        quality[name] = {"tpr_scenes": float(fired[labels].mean()), "fpr_scenes": float(fired[~labels].mean())}
        log(f"{name} on validation voices in held-out rooms: {quality[name]}")
    torch.save({name: d.model.state_dict() for name, d in detectors.items() if name != "openwakeword"},
               args.out / "surrogates.pt")

    musics, synths = {}, {}
    member_sets = {"openwakeword": ["openwakeword"], "ensemble": list(detectors),
                   "surrogates": [d for d in detectors if d != "openwakeword"]}
    augmentation = None if args.no_augment else Augmentation()
    for path in args.load_musics:
        loaded = torch.load(path, weights_only=True)
        musics |= {(k if len(args.load_musics) == 1 else f"{k}, {path.parent.name}"): loaded[k] for k in args.sets}
        log(f"loops {', '.join(args.sets)} from {path}: nothing learned")
    if "masking" in args.sets and not args.load_musics:
        synth = KarplusStrong(4.0, 16000, notes_per_second=args.notes_per_second, seed=args.opt_seed)
        learning = learning_positives(positives, held_out if args.learn_held_out else None)
        for folder in args.add_learn:  # e.g. recorded people's calibration sessions, never a scored folder
            added, _, _, _ = load_speech([c for c in read_speech_set(folder, "added") if c.split == "fresh"], word,
                                         16000)
            for _ in range(args.add_repeat):
                learning = joined(learning, added.positives())
            log(f"learn: + {len(added.positives())} positives of {folder} x {args.add_repeat}")
        found = clean_correct(oww, learning, config)  # the same positives as the other sets learn from
        log(f"masking jam (no detector) on {int(found.sum())} positives, tail {args.tail:g}")
        musics["masking"] = masking_jam(
            synth, learning.subset(found), optimisation, config, steps=args.steps, batch_size=args.batch_size,
            seed=args.opt_seed, tail=args.tail, augmentation=augmentation, log_every=50,
            callback=lambda e: log(f"  masking step {e['step']}: speech visibility {e['visibility']:.3f} (min "
                                   f"{e['visibility_range'][0]:.3f}, max {e['visibility_range'][1]:.3f})")).music
        synths["masking"] = synth.state_dict()
    for set_name, members in ((k, member_sets[k]) for k in args.sets if k != "masking" and not args.load_musics):
        synth = KarplusStrong(4.0, 16000, seed=args.opt_seed)
        target = detectors[members[0]] if len(members) == 1 else Ensemble({m: detectors[m] for m in members})
        found = clean_correct(target if len(members) == 1 else oww, positives, config)
        log(f"jam against {set_name} ({', '.join(members)}) on {int(found.sum())} positives")
        result = jam(synth, target, positives.subset(found), optimisation, config, steps=args.steps, batch_size=16,
                     lr=0.05, seed=args.opt_seed, augmentation=augmentation,
                     callback=lambda e: log(f"  step {e['step']}: loss {e['loss']:.3f}, firing {e['firing']:.2f}")
                     if e["step"] % 50 == 0 else None)
        musics[set_name] = result.music
        synths[set_name] = synth.state_dict()
    torch.save(musics, args.out / "musics.pt")
    if synths:
        torch.save(synths, args.out / "synths.pt")  # the loops' parameters: a start for jam_query.py --start-from

    if args.noise_baselines:
        musics |= noise_loops(positives)
    visibility = {}
    if args.pick_visibility:  # detector-free: each loop on scenes of the voices W learns from, held-out rooms
        pick_speech, (_, pick_rooms) = learning_positives(positives, held_out), room_split(config, 16, 16, 0)
        for name, music in musics.items():  # held-out rooms of seed 0: no optimisation room, no scoring seed's
            visibility[name] = mean_visibility(music, pick_speech, pick_rooms,
                                               replace(config, music_db=args.levels[0]))
            log(f"visibility of the word under {name} (learning voices, held-out rooms): {visibility[name]:.4f}")
    if args.fresh:  # voices of another set, which no setting of these loops has seen
        clips = [c for folder in args.fresh for c in read_speech_set(folder, "fresh")]
        evaluated, loaded, _, _ = load_speech(clips, word, 16000)
        voice_of = cluster_of(clips, args.cluster_by, loaded=loaded)
    else:
        evaluated, voice_of = held_out, held_out_voices
    voice_tables = {}
    results = {}
    references = ({} if args.notes_per_second == 4.0 else
                  {f"random, {args.notes_per_second:g} notes/s": random_loops(4.0, 16000, 4, base=20_000,
                                                                     notes_per_second=args.notes_per_second)})
    for level in args.levels:
        level_config = replace(config, music_db=level)
        for name in args.score:
            detector = mww if name == "microwakeword" else oww
            keep = clean_correct(detector, evaluated, level_config)
            test = evaluated.subset(keep)
            rows = evaluate_seeds({"target": detector}, test, level_config,
                                  {"clean": None, "random": random_loops(4.0, 16000, 4), **references,
                                   **{condition(k): v for k, v in musics.items()}},
                                  seeds=tuple(args.seeds), held_out_rooms=16, draws=args.draws, avoid=optimisation)
            summary = {r["condition"]: r for r in seed_summary(rows, voice_of)}
            results[f"{name} @ {level:g} dB"] = summary
            voice_tables[f"{name} @ {level:g} dB"] = voice_table(rows, voice_of)
            log(f"{name} at {level:g} dB: " + ", ".join(f"{c} {fmt(s['f1'])}" for c, s in summary.items()))
    out = {"quality": quality, "visibility": visibility, "results": results, "voice_tables": voice_tables,
           "args": {k: str(v) for k, v in vars(args).items()}, "seconds": time.perf_counter() - started}
    (args.out / "jam_surrogates.json").write_text(json.dumps(json_safe(out), indent=2))
    conditions = ["clean", "random", *references, *[condition(k) for k in musics]]
    scored = ("Fresh voices of " + ", ".join(map(str, args.fresh)) if args.fresh
              else "Held-out flite + Festival voices")
    lines = [f"# Transfer to microWakeWord {word} from surrogate ensembles", "",
             "Surrogates trained here on eSpeak NG speech in the optimisation rooms (detection on scenes of the "
             "validation voices in held-out rooms, no music): " + "; ".join(
                 f"{k} TPR {v['tpr_scenes']:.2f}, FPR {v['fpr_scenes']:.2f}" for k, v in quality.items()),
             "", f"{scored}, held-out rooms, scene seeds {args.seeds} x {args.draws} draws; "
             "F1 with 95% intervals resampling voices.", "",
             "| detector @ level | " + " | ".join(conditions) + " |", "|---|" + "---|" * len(conditions)]
    for key, summary in results.items():
        lines.append(f"| {key} | " + " | ".join(fmt(summary[c]["f1"]) if c in summary else "-" for c in conditions)
                     + " |")
    lines += ["", f"Whole run {time.perf_counter() - started:.0f} s, one thread."]
    text = "\n".join(lines) + "\n"
    (args.out / "jam_surrogates.md").write_text(text)
    if args.md:
        args.md.write_text(text)
    print(text)


if __name__ == "__main__":
    main()

"""Query-based jamming through a substitute: fit a differentiable detector to the black box's answers,
jam the substitute with gradients, and ask the box again where the music now is.

The threat model of :mod:`robustaudio.attacks.query_jam` (a detector that only answers scores; every
scored scene is one **query**; a budget of queries), with another way of spending the queries
(substitute training, Papernot et al. 2017, adapted to a streaming detector and to music):

1. **Ask.** Render ``first_queries`` scenes (the target word in the optimisation rooms) with random
   loops of the synthesiser, and some with no music, and ask the box for the score of every step of the
   stream (``step_scores`` ``[B, S]``: microWakeWord hands a probability every 30 ms, so one query
   answers ~130 numbers) or, for a clip-only box, the clip's score.
2. **Fit.** Train a substitute (:class:`~robustaudio.models.zoo.stream_dscnn.StreamDSCNN` by default:
   a causal DS-CNN on the public TFLite-Micro front end, not the box's architecture) on every answer so
   far, by binary cross-entropy of its step margins against the box's step scores (soft targets); for
   clip answers, its highest step against the clip score.
3. **Jam.** Learn the loop against the substitute with :func:`~robustaudio.attacks.jamming.jam`
   (gradients, no queries), from the previous round's loop.
4. **Ask where the music is.** Spend ``round_queries`` on scenes with the new loop and with loops from
   along its path (the substitute is wrong where the attack took it, and those are the answers that
   correct it), then go back to 2, until the budget is spent. The loop of the last round is the result;
   the loop after each round is kept with the number of queries its substitute had seen.

Queries are counted when the box scores a scene; the substitute, the jam and the synthesiser cost none.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..acoustics.augmentation import Augmentation
from ..acoustics.scenes import EOTConfig, JamError, RoomSet, Utterances, render, sample_transforms
from ..models.zoo.stream_dscnn import StreamDSCNN
from .jamming import Detector, jam
from .music import KarplusStrong
from .query_jam import FEEDBACK, BlackBoxDetector, QueryJamResult


@dataclass
class SubstituteSettings:
    """``queries`` budget (scenes scored by the box); ``first_queries`` spent before the first fit (random
    loops, a fifth of them with no music); ``round_queries`` per later round (the new loop and
    ``path_loops`` loops from along its jam); ``fit_steps`` Adam steps (``fit_batch`` scenes, ``fit_lr``) per
    fit, on all answers so far; ``jam_steps`` / ``jam_batch`` / ``jam_lr`` for each round's jam;
    ``feedback``: ``"steps"`` or ``"clip"`` (what the box answers)."""

    queries: int = 20_000
    first_queries: int = 4_000
    round_queries: int = 2_000
    path_loops: int = 3
    fit_steps: int = 600
    fit_batch: int = 32
    fit_lr: float = 3e-3
    jam_steps: int = 200
    jam_batch: int = 16
    jam_lr: float = 0.05
    feedback: str = "steps"

    def __post_init__(self) -> None:
        if self.feedback not in FEEDBACK:
            raise JamError(f"feedback must be one of {', '.join(FEEDBACK)}; got {self.feedback!r}.")
        if not 0 < self.first_queries <= self.queries or self.round_queries < 1:
            raise JamError(f"Need 0 < first_queries <= queries and round_queries >= 1; got {self.first_queries}, "
                           f"{self.queries}, {self.round_queries}.")
        if min(self.fit_steps, self.fit_batch, self.jam_steps, self.jam_batch) < 1 or self.path_loops < 0:
            raise JamError("fit_steps, fit_batch, jam_steps and jam_batch must be >= 1, path_loops >= 0.")


class Answers:
    """Scenes asked so far, kept as the substitute's standardised front-end features ``[N, 40, F]`` (float16),
    with the box's answers: step scores ``[N, S]`` or clip scores ``[N]``."""

    def __init__(self) -> None:
        self.features: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []

    def add(self, features: torch.Tensor, targets: torch.Tensor) -> None:
        self.features.append(features.half())
        self.targets.append(targets.float())

    def __len__(self) -> int:
        return sum(len(t) for t in self.targets)

    def stacked(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.cat(self.features), torch.cat(self.targets)


def _ask(box: BlackBoxDetector, substitute: StreamDSCNN, scenes: torch.Tensor, steps: bool, answers: Answers) -> int:
    """Score ``scenes`` ``[B, T]`` with the box (``B`` queries) and keep them with the substitute's features,
    the scene padded or cut so that the substitute scores as many steps as the box answered."""
    with torch.no_grad():
        answer = box.step_scores(scenes) if steps else box.scores(scenes)  # type: ignore[attr-defined]
        count = answer.shape[1] if steps else substitute.front_end.frames(scenes) // substitute.step_frames
        width = substitute.frames_for_steps(count)
        fitted = F.pad(scenes, (0, max(0, width - scenes.shape[1])))[:, :width]
        answers.add(substitute.front_end(fitted), answer)
    return len(scenes)


def _scenes(utterances: Utterances, loops: torch.Tensor, count: int, rooms: RoomSet, config: EOTConfig,
            generator: torch.Generator) -> torch.Tensor:
    """``count`` scenes of random utterances, each with a random loop of ``loops`` ``[L, Tm]``."""
    pick = torch.randint(len(utterances), (count,), generator=generator)
    transforms = sample_transforms(count, rooms, config, generator, loop_samples=loops.shape[1])
    music = loops[torch.randint(len(loops), (count,), generator=generator)]
    with torch.no_grad():
        return render(utterances.subset(pick), music, transforms, rooms, config)


def fit(substitute: StreamDSCNN, answers: Answers, settings: SubstituteSettings, generator: torch.Generator) -> float:
    """``fit_steps`` Adam steps of the substitute on all answers (BCE against the box's scores); the last loss."""
    features, targets = answers.stacked()
    optimiser = torch.optim.Adam(substitute.parameters(), lr=settings.fit_lr)
    substitute.train()
    loss = torch.tensor(float("nan"))
    for _ in range(settings.fit_steps):
        pick = torch.randint(len(targets), (settings.fit_batch,), generator=generator)
        margins = substitute.network(features[pick].float())
        predicted = margins if targets.dim() == 2 else margins.amax(dim=1)
        target = targets[pick][:, : predicted.shape[1]] if targets.dim() == 2 else targets[pick]
        loss = F.binary_cross_entropy_with_logits(predicted, target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    substitute.eval()
    return float(loss.detach())


def substitute_jam(synth: KarplusStrong, box: BlackBoxDetector, utterances: Utterances, rooms: RoomSet,
                   config: EOTConfig, settings: SubstituteSettings | None = None, *, seed: int = 0,
                   substitute: StreamDSCNN | None = None, augmentation: Augmentation | None = None,
                   callback: Callable[[dict], None] | None = None) -> QueryJamResult:
    """Optimise ``synth`` in place against ``box`` through a substitute fitted to its answers (see the module).

    Args:
        synth: the synthesiser (its sample rate the box's).
        box: a black-box detector (``scores`` ``[B]``; ``step_scores`` ``[B, S]`` for ``feedback="steps"``).
        utterances: the target word's utterances (every scene is a positive).
        rooms: the optimisation rooms (the only rooms this function renders).
        config: the transform distribution (music level jittered by ``config.jitter_db``).
        settings: :class:`SubstituteSettings`.
        seed: seeds the scenes, the random loops, the fits and the jams.
        substitute: the model to fit (a fresh :class:`StreamDSCNN` by default); it is trained in place.
        augmentation: talker and device augmentation for the jams (:func:`jam`'s).
        callback: called with each round's history entry.

    Returns a :class:`QueryJamResult`: ``snapshots`` maps the queries each round's substitute had seen to
    the loop learned on it; ``history`` has per round the queries, the fit's loss and the jam's last loss.
    """
    settings = settings or SubstituteSettings()
    steps = settings.feedback == "steps"
    if steps and not hasattr(box, "step_scores"):
        raise JamError("feedback='steps' needs a detector that answers the score of every step (step_scores); "
                       "this one gives clip scores only: use feedback='clip'.")
    if synth.sample_rate != box.sample_rate or config.sample_rate != box.sample_rate:
        raise JamError(f"The synthesiser ({synth.sample_rate} Hz), transforms ({config.sample_rate} Hz) and "
                       f"detector ({box.sample_rate} Hz) must share one sample rate.")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the substitute's initial weights
    substitute = substitute or StreamDSCNN()
    started = time.perf_counter()
    with torch.no_grad():
        initial = synth().detach().clone()
    result = QueryJamResult(music=initial, initial=initial)
    answers = Answers()
    # round 0: random loops of this synthesiser (its own random draws), a fifth of the scenes without music
    with torch.no_grad():
        loops = torch.stack([KarplusStrong(synth.length / synth.sample_rate, synth.sample_rate, seed=seed + 1000 + k)()
                             for k in range(8)])
    silent = torch.zeros(1, loops.shape[1])
    batch = 64
    while result.queries < settings.first_queries:
        count = min(batch, settings.first_queries - result.queries)
        pool = loops if result.queries % (5 * batch) else silent
        result.queries += _ask(box, substitute, _scenes(utterances, pool, count, rooms, config, generator),
                               steps, answers)
    round_number = 0
    every = max(1, settings.jam_steps // max(1, settings.path_loops))
    while True:
        round_number += 1
        fit_loss = fit(substitute, answers, settings, generator)
        path: list[torch.Tensor] = []

        def keep(entry: dict, path: list[torch.Tensor] = path) -> None:
            if entry["step"] % every == 0 and entry["step"] < settings.jam_steps:
                with torch.no_grad():
                    path.append(synth().detach().clone())

        learned = jam(synth, Detector(substitute, substitute.labels[1]), utterances, rooms, config,
                      steps=settings.jam_steps, batch_size=settings.jam_batch, lr=settings.jam_lr,
                      seed=seed + round_number, log_every=1, callback=keep, augmentation=augmentation)
        result.snapshots[result.queries] = learned.music.clone()
        result.music = learned.music.clone()
        entry = {"round": round_number, "queries": result.queries, "fit_loss": fit_loss,
                 "jam_loss": learned.history[-1]["loss"], "seconds": time.perf_counter() - started}
        result.history.append(entry)
        if callback is not None:
            callback(entry)
        remaining = settings.queries - result.queries
        if remaining <= 0:
            break
        # the new loop for half the round, the loops along its path for the rest
        pools = [learned.music.unsqueeze(0)] + ([torch.stack(path)] if path else [])
        spent = 0
        budget = min(settings.round_queries, remaining)
        while spent < budget:
            count = min(batch, budget - spent)
            pool = pools[0] if (spent // batch) % 2 == 0 or len(pools) == 1 else pools[1]
            spent += _ask(box, substitute, _scenes(utterances, pool, count, rooms, config, generator), steps, answers)
        result.queries += spent
    result.seconds = time.perf_counter() - started
    return result


__all__ = ["Answers", "SubstituteSettings", "fit", "substitute_jam"]

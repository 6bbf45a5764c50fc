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
   correct it), then go back to 2, until the budget is spent. By default (``keep_best``) each round's loop is
   judged by the box's answers to the scenes asked with it, and the result is the loop judged best (the last
   round's asks are its judgement); otherwise the result is the loop of the last round, after a last fit.
   Several substitutes (other initial weights, the same answers) are fitted and jammed at once
   (``substitutes``), so that the music cannot ride one substitute's mistakes.

Queries are counted when the box scores a scene; the substitute, the jam and the synthesiser cost none.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..acoustics.augmentation import Augmentation, render_augmented
from ..acoustics.scenes import EOTConfig, JamError, RoomSet, Utterances, sample_transforms
from ..models.base import WholeModel
from ..models.zoo.stream_dscnn import StreamDSCNN
from .jamming import Detector, check_utterances, jam
from .music import KarplusStrong
from .query_jam import FEEDBACK, BlackBoxDetector, QueryJamResult, check_black_box


@dataclass
class SubstituteSettings:
    """``queries`` budget (scenes scored by the box); ``first_queries`` spent before the first fit (random
    loops, a fifth of them with no music); ``round_queries`` per later round (the new loop and
    ``path_loops`` loops from along its jam); ``fit_steps`` Adam steps (``fit_batch`` scenes, ``fit_lr``) per
    fit, on all answers so far; ``jam_steps`` / ``jam_batch`` / ``jam_lr`` for each round's jam;
    ``feedback``: ``"steps"`` or ``"clip"`` (what the box answers); ``substitutes``: how many substitutes (other
    initial weights) are fitted to the same answers and jammed at once (the loss pushes down the largest margin
    of all, so the music cannot ride one substitute's mistakes); ``keep_best``: the result is the round's loop
    that the box's own answers found firing least (each loop is judged by the scenes asked with it), not the
    last one; ``augment_asks``: the scenes asked are drawn with the jam's talker and device augmentation, so that
    the substitutes learn the box where the jam takes them (needs an ``augmentation``)."""

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
    substitutes: int = 3     # three substitutes and the best-judged loop: 0.238 / 0.258 against one substitute's
    keep_best: bool = True   # last loop 0.299 on microWakeWord, 20,000 queries (experiments/jam_query.md)
    augment_asks: bool = False  # on in `robustaudio jam --query-method substitute`: 0.224 / 0.185 / 0.176 at 20,000
    # queries on microWakeWord (start seeds 0-2), against 0.238 / 0.258 with plain asks (experiments/jam_query.md)

    def __post_init__(self) -> None:
        if self.feedback not in FEEDBACK:
            raise JamError(f"feedback must be one of {', '.join(FEEDBACK)}; got {self.feedback!r}.")
        if not 0 < self.first_queries <= self.queries or self.round_queries < 1:
            raise JamError(f"Need 0 < first_queries <= queries and round_queries >= 1; got {self.first_queries}, "
                           f"{self.queries}, {self.round_queries}.")
        if min(self.fit_steps, self.fit_batch, self.jam_steps, self.jam_batch, self.substitutes) < 1 or \
                self.path_loops < 0:
            raise JamError("fit_steps, fit_batch, jam_steps, jam_batch and substitutes must be >= 1, "
                           "path_loops >= 0.")

    @classmethod
    def for_budget(cls, queries: int, **settings: Any) -> SubstituteSettings:
        """The measured schedule scaled to a budget of ``queries``: a fifth of it before the first fit, the rest
        over eight more rounds, 600 fitting steps per fit (``experiments/jam_query.md`` at 20,000 queries: the
        class defaults), fewer where there are few answers to fit (a quarter of the budget, at least 40).
        ``settings``: any other field (``feedback``, ``jam_steps``, ``augment_asks``, ...), the class's defaults
        otherwise."""
        return cls(queries=queries, first_queries=max(1, queries // 5),
                   round_queries=max(1, (queries - queries // 5) // 8), fit_steps=min(600, max(40, queries // 4)),
                   **settings)

    @property
    def planned_steps(self) -> int:
        """Rounds the budget pays for: the first, then one per ``round_queries`` left."""
        return 1 + -(-(self.queries - self.first_queries) // self.round_queries)

    def record(self, used: int) -> dict:
        """The card's ``settings.query`` for a search that spent ``used`` queries."""
        return {"method": "substitute", "queries": self.queries, "used": used, "first_queries": self.first_queries,
                "round_queries": self.round_queries, "fit_steps": self.fit_steps, "jam_steps": self.jam_steps,
                "jam_lr": self.jam_lr, "feedback": self.feedback, "substitutes": self.substitutes,
                "keep_best": self.keep_best, "augment_asks": self.augment_asks}


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


def _ask(box: BlackBoxDetector, substitute: StreamDSCNN, scenes: torch.Tensor, steps: bool,
         answers: Answers) -> torch.Tensor:
    """Score ``scenes`` ``[B, T]`` with the box (``B`` queries) and keep them with the substitute's features,
    the scene padded or cut so that the substitute scores as many steps as the box answered. Returns whether the
    box fired on each scene ``[B]`` (its clip score, or its highest step score, at least 0.5)."""
    with torch.no_grad():
        answer = box.step_scores(scenes) if steps else box.scores(scenes)  # type: ignore[attr-defined]
        count = answer.shape[1] if steps else substitute.front_end.frames(scenes) // substitute.step_frames
        width = substitute.frames_for_steps(count)
        fitted = F.pad(scenes, (0, max(0, width - scenes.shape[1])))[:, :width]
        answers.add(substitute.front_end(fitted), answer)
    return (answer.amax(dim=1) if steps else answer) >= 0.5


def _scenes(utterances: Utterances, loops: torch.Tensor, count: int, rooms: RoomSet, config: EOTConfig,
            generator: torch.Generator, augmentation: Augmentation | None, augmenter: torch.Generator) -> torch.Tensor:
    """``count`` scenes of random utterances, each with a random loop of ``loops`` ``[L, Tm]``; with
    ``augmentation``, talkers and devices drawn from ``augmenter`` as the jam draws them."""
    pick = torch.randint(len(utterances), (count,), generator=generator)
    transforms = sample_transforms(count, rooms, config, generator, loop_samples=loops.shape[1])
    music = loops[torch.randint(len(loops), (count,), generator=generator)]
    with torch.no_grad():
        return render_augmented(utterances.subset(pick), music, transforms, rooms, config, augmentation, augmenter)


class SubstituteEnsemble(WholeModel):
    """Substitutes as one streaming detector: their step logits side by side ``[B, K·S, 2]``."""

    def __init__(self, members: list[StreamDSCNN]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self._members = members
        self.labels, self.multilabel, self.sample_rate = members[0].labels, False, members[0].sample_rate
        self.clip_seconds = members[0].clip_seconds

    def step_logits(self, audio: torch.Tensor) -> torch.Tensor:
        return torch.cat([member.step_logits(audio) for member in self._members], dim=1)

    def forward(self, audio: torch.Tensor, video: torch.Tensor | None = None) -> torch.Tensor:
        """The logits of the step (of any member) with the largest margin ``[B, 2]``."""
        logits = self.step_logits(audio)
        top = (logits[..., 1] - logits[..., 0]).argmax(dim=1)
        return logits[torch.arange(len(logits)), top]

    def forward_features(self, features: torch.Tensor, video: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward(features, video)


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
        substitute: the model to fit (a fresh :class:`StreamDSCNN` by default); it is trained in place, and
            ``settings.substitutes - 1`` copies of it with new initial weights beside it.
        augmentation: talker and device augmentation for the jams (:func:`jam`'s).
        callback: called with each round's history entry.

    Returns a :class:`QueryJamResult`: ``snapshots`` maps the queries each round's substitute had seen to
    the loop learned on it (with ``keep_best``: the queries spent once a round's loop was judged, to the best loop
    judged so far; ``music`` is then that loop, not necessarily the synthesiser's last state); ``history`` has per
    round the queries, the fits' largest loss, the jam's last loss and the share of the round's scenes with the
    new loop on which the box fired (``box_firing``).
    """
    settings = settings or SubstituteSettings()
    steps = settings.feedback == "steps"
    check_black_box(box, synth, config, steps)
    check_utterances(utterances)
    if settings.augment_asks and augmentation is None:
        raise JamError("augment_asks draws the asked scenes with the jam's augmentation; pass an augmentation.")
    asking = augmentation if settings.augment_asks else None
    augmenter = torch.Generator().manual_seed(seed + 2)  # the asked scenes' talkers and devices
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the substitutes' initial weights
    members = [substitute or StreamDSCNN()]
    for _ in range(settings.substitutes - 1):  # the same model, other initial weights
        member = copy.deepcopy(members[0])
        for module in member.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
        members.append(member)
    if members[0].sample_rate != box.sample_rate:
        raise JamError(f"The substitute hears {members[0].sample_rate} Hz (the TFLite-Micro front end) and the "
                       f"detector {box.sample_rate} Hz: substitute jamming needs a detector at the substitute's "
                       f"rate; search such a detector with NES instead (--query-method nes).")
    ensemble = SubstituteEnsemble(members)
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
        asked = _scenes(utterances, pool, count, rooms, config, generator, asking, augmenter)
        result.queries += len(_ask(box, members[0], asked, steps, answers))
    round_number = 0
    every = max(1, settings.jam_steps // max(1, settings.path_loops))
    best: tuple[float, torch.Tensor] | None = None
    while True:
        round_number += 1
        fit_loss = max(fit(member, answers, settings, generator) for member in members)
        path: list[torch.Tensor] = []

        def keep(entry: dict, path: list[torch.Tensor] = path) -> None:
            if entry["step"] % every == 0 and entry["step"] < settings.jam_steps:
                with torch.no_grad():
                    path.append(synth().detach().clone())

        learned = jam(synth, Detector(ensemble, ensemble.labels[1]), utterances, rooms, config,
                      steps=settings.jam_steps, batch_size=settings.jam_batch, lr=settings.jam_lr,
                      seed=seed + round_number, log_every=1, callback=keep, augmentation=augmentation)
        entry = {"round": round_number, "queries": result.queries, "fit_loss": fit_loss,
                 "jam_loss": learned.history[-1]["loss"], "seconds": time.perf_counter() - started}
        remaining = settings.queries - result.queries
        if not settings.keep_best or (remaining <= 0 and best is None):  # nothing judged yet: the loop just learned
            result.snapshots[result.queries] = learned.music.clone()
            result.music = learned.music.clone()
        if remaining <= 0:
            result.history.append(entry)
            if callback is not None:
                callback(entry)
            break
        # the new loop for half the round, the loops along its path for the rest
        pools = [learned.music.unsqueeze(0)] + ([torch.stack(path)] if path else [])
        spent, fired = 0, []
        budget = min(settings.round_queries, remaining)
        while spent < budget:
            count = min(batch, budget - spent)
            on_new = (spent // batch) % 2 == 0 or len(pools) == 1
            answered = _ask(box, members[0], _scenes(utterances, pools[0] if on_new else pools[1], count, rooms,
                                                     config, generator, asking, augmenter), steps, answers)
            if on_new:
                fired.append(answered)
            spent += len(answered)
        result.queries += spent
        entry["box_firing"] = float(torch.cat(fired).float().mean())  # the box's verdict on this round's loop
        if settings.keep_best:
            if best is None or entry["box_firing"] < best[0]:
                best = (entry["box_firing"], learned.music.clone())
            result.snapshots[result.queries] = best[1]
            result.music = best[1]
        result.history.append(entry)
        if callback is not None:
            callback(entry)
        if settings.keep_best and result.queries >= settings.queries:
            break
    result.seconds = time.perf_counter() - started
    return result


__all__ = ["Answers", "SubstituteEnsemble", "SubstituteSettings", "fit", "substitute_jam"]

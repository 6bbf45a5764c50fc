"""Query-based jamming: adversarial music against a detector that only answers with scores.

The threat model of :func:`robustaudio.attacks.jamming.jam` (music at a fixed level relative to the
speech, simulated rooms, background noise), but the detector is a black box (e.g. microWakeWord run
by TFLite): no gradients, every scored scene is one **query**, and the budget is a number of queries.

The synthesiser's parameters ``θ`` (excitations, string losses, note gains: about 1,800 numbers for
the default loop, or a subset: :attr:`QuerySettings.parameters`) are optimised with natural evolution
strategies (Wierstra et al. 2014; as used for black-box adversarial examples by Ilyas et al. 2018):
each step draws one batch of ``B`` scenes (utterances, rooms, offsets, noise) and ``n / 2`` directions
``u_j ~ N(0, I)``, scores the scenes with the loops of ``θ ± σ u_j`` (common random numbers: every
candidate hears the same scenes, so the difference is the music's doing), and moves ``θ`` with Adam along

    ĝ = Σ_j (L(θ + σu_j) − L(θ − σu_j)) u_j / (n σ),    L = mean_b softplus(logit s_b),

``s_b`` the detector's score of scene ``b``. With ``feedback="steps"`` the box answers the score of every
step of the stream (``step_scores`` ``[B, S]``: microWakeWord's sliding-window probability every 30 ms, what its
streaming API hands a caller) and ``L = mean_b softplus(logsumexp_s logit s_bs)``: a scene whose clip score is
saturated (int8 detectors stop at one value) still says how many steps fire. A step costs ``n · B`` queries.
Snapshots of the loop at chosen query counts let the caller draw F1 against queries (:func:`f1_against_queries`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from ..acoustics.scenes import EOTConfig, JamError, RoomSet, Utterances, render, sample_transforms
from .jamming import ScoringDetector, check_utterances
from .music import KarplusStrong

MUSIC_PARAMETERS = ("excitation", "damping_logit", "gains")  # KarplusStrong's, in named_parameters() order
FEEDBACK = ("clip", "steps")


class BlackBoxDetector(ScoringDetector, Protocol):
    """A scoring detector that also says its sample rate (Hz); ``feedback="steps"`` also needs
    ``step_scores(audio [B, T]) -> [B, S]`` (the clip's score is their maximum)."""

    @property
    def sample_rate(self) -> int: ...


@dataclass
class QuerySettings:
    """NES settings: ``queries`` budget (scenes scored), ``population`` ``n`` (even: antithetic pairs),
    ``batch_size`` ``B`` scenes per step, ``sigma`` (θ units), Adam ``lr``, ``snapshots``: query counts
    at which the loop is kept (the last loop is always kept); ``parameters``: the synthesiser's parameters
    searched (names of :class:`KarplusStrong`'s: ``excitation`` ``[K, P_max]``, ``damping_logit`` ``[K]``,
    ``gains`` ``[M, K]``; the others stay at their start). Leaving out the excitations (the strings' timbre,
    about 1,600 of the 1,800 numbers) searches the melody and the decays alone. ``feedback``: what the box
    answers per scene: ``"clip"`` (one score) or ``"steps"`` (the score of every stream step)."""

    queries: int = 20_000
    population: int = 10
    batch_size: int = 4      # σ, lr and B: the best of a 2 x 2 x 2 grid on validation voices against microWakeWord
    sigma: float = 0.2       # (experiments/jam_query.md), with clip and with per-step scores alike
    lr: float = 0.1
    snapshots: Sequence[int] = (1_000, 2_500, 5_000, 10_000, 15_000, 20_000)
    parameters: Sequence[str] = ("excitation", "damping_logit", "gains")
    feedback: str = "clip"

    def __post_init__(self) -> None:
        if self.feedback not in FEEDBACK:
            raise JamError(f"feedback must be one of {', '.join(FEEDBACK)}; got {self.feedback!r}.")
        if not self.parameters or not set(self.parameters) <= set(MUSIC_PARAMETERS):
            raise JamError(f"parameters must name some of {', '.join(MUSIC_PARAMETERS)}; got {list(self.parameters)}.")
        if self.population < 2 or self.population % 2:
            raise JamError(f"population must be even and >= 2 (antithetic pairs); got {self.population}.")
        if self.queries < self.population * self.batch_size:
            raise JamError(f"A budget of {self.queries} queries does not cover one step "
                           f"({self.population} × {self.batch_size} scenes).")
        if not (self.sigma > 0 and self.lr > 0):
            raise JamError("sigma and lr must be positive.")

    @property
    def planned_steps(self) -> int:
        """NES steps the budget pays for."""
        return self.queries // (self.population * self.batch_size)

    def record(self, used: int) -> dict:
        """The card's ``settings.query`` for a search that spent ``used`` queries."""
        return {"method": "nes", "queries": self.queries, "used": used, "population": self.population,
                "batch_size": self.batch_size, "sigma": self.sigma, "lr": self.lr, "feedback": self.feedback,
                "parameters": list(self.parameters)}


@dataclass
class QueryJamResult:
    """``music`` ``[Tm]`` after the last step; ``snapshots``: query count -> loop; ``history``: per step,
    queries used, loss and the share of the step's scenes (all candidates) on which the detector fired."""

    music: torch.Tensor
    initial: torch.Tensor
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    queries: int = 0
    seconds: float = 0.0


def score_loss(scores: torch.Tensor) -> torch.Tensor:
    """``softplus(logit s)`` per scene ``[B]`` for clip scores ``[B]``, or ``softplus(logsumexp_s logit s_s)``
    for step scores ``[B, S]``: large while the detector fires (the more steps, the larger), → 0 as it stops.
    Scores are clipped to [1e-4, 1 − 1e-4] (quantised detectors answer exactly 0 or 1)."""
    p = scores.clamp(1e-4, 1 - 1e-4)
    logits = torch.log(p / (1 - p))
    return F.softplus(logits if logits.dim() == 1 else torch.logsumexp(logits, dim=1))


def check_black_box(box: BlackBoxDetector, synth: KarplusStrong, config: EOTConfig, steps: bool) -> None:
    """Raise :class:`JamError` unless ``box`` answers step scores where ``steps`` asks for them and shares the
    synthesiser's and the transforms' sample rate."""
    if steps and not hasattr(box, "step_scores"):
        raise JamError("feedback='steps' needs a detector that answers the score of every step (step_scores); "
                       "this one gives clip scores only: use feedback='clip'.")
    if synth.sample_rate != box.sample_rate or config.sample_rate != box.sample_rate:
        raise JamError(f"The synthesiser ({synth.sample_rate} Hz), transforms ({config.sample_rate} Hz) and "
                       f"detector ({box.sample_rate} Hz) must share one sample rate.")


@torch.no_grad()
def query_jam(synth: KarplusStrong, detector: BlackBoxDetector, utterances: Utterances, rooms: RoomSet,
              config: EOTConfig, settings: QuerySettings | None = None, *, seed: int = 0,
              callback: Callable[[dict], None] | None = None) -> QueryJamResult:
    """Optimise ``synth``'s parameters in place against ``detector``'s scores alone (see the module).

    Args:
        synth: the synthesiser (its sample rate the detector's).
        detector: anything with ``scores(audio [B, T]) -> [B]`` in [0, 1] and ``sample_rate``.
        utterances: the target word's utterances (every scene is a positive).
        rooms: the optimisation rooms (the only rooms this function sees).
        config: the transform distribution (music level jittered by ``config.jitter_db``).
        settings: :class:`QuerySettings`.
        seed: seeds scenes and directions.
        callback: called with each history entry.
    """
    settings = settings or QuerySettings()
    steps = settings.feedback == "steps"
    check_black_box(detector, synth, config, steps)
    check_utterances(utterances)
    generator = torch.Generator().manual_seed(seed)
    directions = torch.Generator().manual_seed(seed + 1)
    parameters = [p for name, p in synth.named_parameters() if name in settings.parameters]
    theta = parameters_to_vector(parameters).detach().clone()
    optimiser = torch.optim.Adam([theta.requires_grad_(False)], lr=settings.lr)
    started = time.perf_counter()
    result = QueryJamResult(music=synth().clone(), initial=synth().clone())
    pending = sorted(q for q in settings.snapshots if q <= settings.queries)
    n, batch = settings.population, settings.batch_size
    per_step = n * batch
    step = 0
    while result.queries + per_step <= settings.queries:
        step += 1
        pick = torch.randint(len(utterances), (batch,), generator=generator)
        transforms = sample_transforms(batch, rooms, config, generator, loop_samples=synth.length)
        u = torch.randn(n // 2, theta.numel(), generator=directions)
        candidates = torch.cat([theta + settings.sigma * u, theta - settings.sigma * u])  # [n, D]
        loops = []
        for candidate in candidates:
            vector_to_parameters(candidate, parameters)
            loops.append(synth())
        music = torch.stack(loops).repeat_interleave(batch, dim=0)                       # [n·B, Tm]
        every = torch.arange(batch).repeat(n)
        scenes = render(utterances.subset(pick[every]), music, transforms.take(every), rooms, config)
        answered = detector.step_scores(scenes) if steps else detector.scores(scenes)  # type: ignore[attr-defined]
        scores = answered.amax(dim=1) if steps else answered
        result.queries += len(scenes)
        losses = score_loss(answered).reshape(n, batch).mean(dim=1)                      # [n]
        gradient = ((losses[: n // 2] - losses[n // 2:]).unsqueeze(1) * u).sum(dim=0) / (n * settings.sigma)
        optimiser.zero_grad()
        theta.grad = gradient
        optimiser.step()
        vector_to_parameters(theta, parameters)
        entry = {"step": step, "queries": result.queries, "loss": float(losses.mean()),
                 "firing": float((scores >= 0.5).float().mean()), "seconds": time.perf_counter() - started}
        result.history.append(entry)
        if callback is not None:
            callback(entry)
        while pending and result.queries >= pending[0]:
            result.snapshots[pending.pop(0)] = synth().clone()
    vector_to_parameters(theta, parameters)
    result.music = synth().clone()
    result.snapshots[result.queries] = result.music
    result.seconds = time.perf_counter() - started
    return result


__all__ = ["BlackBoxDetector", "QueryJamResult", "QuerySettings", "check_black_box", "query_jam", "score_loss"]

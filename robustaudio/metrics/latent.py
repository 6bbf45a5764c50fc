"""Latent density and convexity per modality (thesis ch. 10-11, audio-visual fusion under attack).

The thesis proposes both measures as explanations of (non-)robustness and as the weights for a
guided mixup, but its formulas are not available: everything below is our re-implementation of
``robustness_methods.md`` §3, tagged **[ours]** where we chose a detail the spec leaves open.

Density **[ours, spec §3]**: on L2-normalised latents ``z`` of one modality, the k-NN density of a
point is ``ρ_k(z_i) = 1 / d̄_k(z_i)``, with ``d̄_k`` the mean Euclidean distance to its ``k`` nearest
neighbours (``k = 10``). It is taken twice, among the points of the point's own class (itself
excluded) and among the points of other classes, and reported as the same-class vs other-class
ratio ``ρ_same / ρ_other``. **[ours]** A class score is the ratio of the class means of the
distances, ``D(c) = mean_i d̄_other(i) / mean_i d̄_same(i)`` over the points ``i`` of ``c`` (a ratio of
means, so one duplicated embedding with ``d̄_same = 0`` does not make the mean infinite); overall
pools all (point, class) pairs the same way. ``D > 1``: classes are tighter than the gaps between
them; ``D ≈ 1``: classes are interleaved. A point with fewer than ``k`` candidate neighbours uses
those it has; one with none (a class of one clip) is left out.

Convexity **[ours, spec §3]**: for pairs ``(i, j)`` of points of class ``c`` and ``λ`` in
``{0.1, ..., 0.9}``, ``C(c) = P[head(λ z_i + (1 − λ) z_j) predicts c]``, interpolating one modality
while the others are held at ``z_i``'s values **[ours: which endpoint is held]**. Pairs are all
ordered pairs of distinct points, or ``pairs_per_class`` of them drawn uniformly with a seed
**[ours]**; overall pools all (pair, λ) evaluations. "Predicts c": top-1 is ``c`` (single-label) or
``sigmoid(logit_c) > threshold`` (multi-label). A convex class region gives ``C = 1``; the anchor
accuracy (``λ = 1``) is reported beside it because ``C`` is bounded by how well the head
classifies the endpoints themselves.

Multi-label labels ``[N, K]`` 0/1 are handled by membership: a clip counts in every class it
carries, and "other class" means "does not carry ``c``" **[ours]**.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import cast

import torch
import torch.nn.functional as F

from ..data import Batch
from ..models.base import Classifier, frozen

Head = Callable[[dict[str, torch.Tensor]], torch.Tensor]
LAMBDAS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
CHUNK_ELEMENTS = 1 << 23  # distance-matrix entries per k-NN chunk: 32 MiB of float32


def unpack_batch(batch: Batch | tuple[torch.Tensor, torch.Tensor]
                 | tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(audio [B, T], labels [B] or [B, K], video or None)`` from a data ``Batch`` or a tuple
    ``(audio, labels[, video])``."""
    if hasattr(batch, "audio"):
        batch = cast(Batch, batch)  # a data Batch, or anything with its fields
        return batch.audio, batch.labels, getattr(batch, "video", None)
    audio, labels, *rest = batch
    return audio, labels, rest[0] if rest else None


def model_device(model: torch.nn.Module) -> torch.device:
    """Where the model's parameters live (CPU for a model without any)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def collect_embeddings(model: Classifier, batches: Iterable, modalities: Sequence[str] | None = None,
                       device: str | torch.device | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Per-modality embeddings of every clip, streamed batch by batch without gradients.

    Args:
        model: a Classifier; run in eval mode (restored afterwards).
        batches: data ``Batch`` objects or tuples ``(audio [B, T], labels[, video])``.
        modalities: keys of ``model.embeddings`` to keep (``None``: all).
        device: where the forward passes run; ``None``: where the model is (the model is not moved).
    Returns:
        ``({modality: [N, D] float32 on the CPU}, labels [N] or [N, K])``, rows in batch order.
    """
    device = torch.device(device) if device is not None else model_device(model)
    parts: dict[str, list[torch.Tensor]] = {}
    labels: list[torch.Tensor] = []
    with frozen(model), torch.no_grad():
        for batch in batches:
            audio, y, video = unpack_batch(batch)
            if len(audio) == 0:  # every clip of the batch was unusable
                continue
            video = None if video is None else video.to(device)
            embeddings = model.embeddings(model.features(audio.to(device)), video)
            unknown = set(modalities or ()) - set(embeddings)
            if unknown:
                raise ValueError(f"Modalities {sorted(unknown)} not among the model's embeddings {sorted(embeddings)}.")
            for name, z in embeddings.items():
                if modalities is None or name in modalities:
                    parts.setdefault(name, []).append(z.float().cpu())
            labels.append(y.cpu())
    if not labels:
        raise ValueError("No clips to embed: every batch was empty.")
    return {name: torch.cat(z) for name, z in parts.items()}, torch.cat(labels)


def class_members(labels: torch.Tensor) -> dict[int, torch.Tensor]:
    """Class index -> row indices ``[n_c]`` of the points carrying it (classes with none left out).

    ``labels``: ``[N]`` class indices, or ``[N, K]`` 0/1 (multi-label: a row counts in each class it has).
    """
    if labels.dim() == 1:
        classes = labels.long()
        return {int(c): torch.nonzero(classes == c).squeeze(1) for c in classes.unique()}
    carried = labels > 0.5
    return {c: torch.nonzero(carried[:, c]).squeeze(1) for c in range(carried.shape[1]) if carried[:, c].any()}


def knn_mean_distance(queries: torch.Tensor, points: torch.Tensor, k: int, exclude: torch.Tensor | None = None,
                      chunk_size: int | None = None) -> torch.Tensor:
    """Mean Euclidean distance from each query to its ``k`` nearest points, in query chunks.

    Args:
        queries: ``[Q, D]``; points: ``[P, D]`` (same device).
        exclude: ``[Q]`` index into ``points`` that each query must skip (itself), or None.
        chunk_size: queries per ``torch.cdist`` call; ``None``: ``CHUNK_ELEMENTS / P`` (bounded memory).
    Returns:
        ``[Q]`` distances, in the units of the points; a query with fewer than ``k`` candidates
        averages those it has, one with none gets NaN.
    """
    result = torch.full((len(queries),), float("nan"), dtype=queries.dtype, device=queries.device)
    k = min(k, len(points))
    if k == 0 or len(queries) == 0:
        return result
    chunk_size = chunk_size or max(1, CHUNK_ELEMENTS // len(points))
    for start in range(0, len(queries), chunk_size):
        stop = start + chunk_size
        distances = torch.cdist(queries[start:stop], points)                      # [c, P]
        if exclude is not None:
            distances.scatter_(1, exclude[start:stop, None], float("inf"))
        nearest = distances.topk(k, dim=1, largest=False).values                   # [c, k]
        found = nearest.isfinite()
        result[start:stop] = nearest.where(found, 0).sum(dim=1) / found.sum(dim=1)  # 0/0 -> NaN
    return result


def subsample(n: int, max_points: int | None, seed: int) -> torch.Tensor:
    """``[n]`` bool: a seeded uniform choice of ``max_points`` rows (all rows when ``None`` or ``n`` is smaller)."""
    chosen = torch.ones(n, dtype=torch.bool)
    if max_points is not None and n > max_points:
        chosen[:] = False
        chosen[torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_points]] = True
    return chosen


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> float:
    """``mean(numerator) / mean(denominator)``; NaN when empty."""
    if numerator.numel() == 0:
        return float("nan")
    return float(numerator.mean() / denominator.mean())


def _name(c: int, names: Sequence[str] | None) -> str | int:
    return names[c] if names is not None else c


def density(embeddings: torch.Tensor, labels: torch.Tensor, k: int = 10, *, normalize: bool = True,
            max_points: int | None = None, seed: int = 0, chunk_size: int | None = None,
            device: str | torch.device | None = None, names: Sequence[str] | None = None) -> dict:
    """Same-class vs other-class k-NN density ratio, per class and overall (formula in the module doc).

    Args:
        embeddings: ``[N, D]`` latents of one modality.
        labels: ``[N]`` class indices or ``[N, K]`` 0/1.
        k: neighbours per density (spec default 10).
        normalize: L2-normalise the latents first (spec; distances then lie in [0, 2]).
        max_points: evaluate the density at a seeded sample of at most this many query points
            **[ours]**; neighbours always come from all ``N`` points, so the distances keep their
            scale and the cost is ``O(max_points · N · D)``.
        seed: for the sample; chunk_size: see :func:`knn_mean_distance`.
        device: where distances are computed (``None``: where ``embeddings`` are).
        names: class names for the ``per_class`` keys (``None``: class indices).
    Returns:
        A dict: ``overall`` (D), ``per_class`` ({class: D(c)}), ``n`` ((point, class) pairs used),
        ``k``, ``same_class`` (1 / mean d̄_same) and ``other_class`` (1 / mean d̄_other). ``D`` is
        unitless; the two densities are in inverse latent-distance units.
    """
    z = embeddings.to(device if device is not None else embeddings.device).float()
    z = F.normalize(z, dim=1) if normalize else z
    chosen = subsample(len(z), max_points, seed).to(z.device)
    same, other, per_class = [], [], {}
    for c, members in class_members(labels).items():
        members = members.to(z.device)
        rest = torch.nonzero(~torch.isin(torch.arange(len(z), device=z.device), members)).squeeze(1)
        at = torch.nonzero(chosen[members]).squeeze(1)  # query positions within the class
        if len(at) == 0:
            continue
        queries = z[members[at]]
        d_same = knn_mean_distance(queries, z[members], k, exclude=at, chunk_size=chunk_size)
        d_other = knn_mean_distance(queries, z[rest], k, chunk_size=chunk_size)
        usable = d_same.isfinite() & d_other.isfinite()
        same.append(d_same[usable])
        other.append(d_other[usable])
        per_class[_name(c, names)] = _ratio(d_other[usable], d_same[usable])
    same_all = torch.cat(same) if same else torch.empty(0)
    other_all = torch.cat(other) if other else torch.empty(0)
    return {"overall": _ratio(other_all, same_all), "per_class": per_class, "n": int(same_all.numel()), "k": k,
            "same_class": 1 / float(same_all.mean()) if same_all.numel() else float("nan"),
            "other_class": 1 / float(other_all.mean()) if other_all.numel() else float("nan")}


def ordered_pairs(n: int, max_pairs: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions ``(i, j)`` ``[P]`` with ``i != j`` among ``n`` points: all ``n(n-1)`` ordered pairs if
    at most ``max_pairs``, else ``max_pairs`` drawn uniformly (with replacement)."""
    if n < 2:
        return torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long)
    if n * (n - 1) <= max_pairs:
        i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        distinct = i != j
        return i[distinct], j[distinct]
    i = torch.randint(n, (max_pairs,), generator=generator)
    j = (i + torch.randint(1, n, (max_pairs,), generator=generator)) % n  # uniform over j != i
    return i, j


def interpolate(embeddings: dict[str, torch.Tensor], modality: str, i: torch.Tensor, j: torch.Tensor,
                lambdas: torch.Tensor) -> dict[str, torch.Tensor]:
    """Rows ``p·L + l`` hold ``λ_l z_i[p] + (1 − λ_l) z_j[p]`` for ``modality`` and ``z_i[p]`` for the others.

    ``i, j``: ``[P]`` row indices; ``lambdas``: ``[L]``. Returns ``{name: [P·L, D]}``.
    """
    count = len(lambdas)
    mixed = {}
    for name, z in embeddings.items():
        anchor = z[i].repeat_interleave(count, dim=0)
        if name == modality:
            weight = lambdas.to(z).repeat(len(i)).reshape(-1, *[1] * (z.dim() - 1))
            anchor = weight * anchor + (1 - weight) * z[j].repeat_interleave(count, dim=0)
        mixed[name] = anchor
    return mixed


def predicts(logits: torch.Tensor, c: int, multilabel: bool, threshold: float) -> torch.Tensor:
    """``[B]`` bool: the head decides class ``c``."""
    if multilabel:
        return torch.sigmoid(logits[:, c]) > threshold
    return logits.argmax(dim=-1) == c


def convexity(embeddings: dict[str, torch.Tensor] | torch.Tensor, labels: torch.Tensor, head: Head, *,
              modality: str = "audio", lambdas: Sequence[float] = LAMBDAS, pairs_per_class: int = 100,
              seed: int = 0, multilabel: bool = False, threshold: float = 0.5, batch_size: int = 1024,
              device: str | torch.device | None = None, names: Sequence[str] | None = None) -> dict:
    """Fraction of same-class interpolations the head still assigns to the class (module doc).

    Args:
        embeddings: ``{modality: [N, D]}`` as from :func:`collect_embeddings` (a tensor is taken
            as ``{modality: tensor}``); every modality the head reads must be present.
        labels: ``[N]`` class indices or ``[N, K]`` 0/1.
        head: maps an embeddings dict ``[B, D]`` to logits ``[B, K]`` (e.g. ``model.head``; the
            caller puts the model in eval mode).
        modality: the one interpolated; lambdas: the ``λ`` grid (spec: 0.1..0.9).
        pairs_per_class: most ordered pairs evaluated per class; seed: for drawing them.
        multilabel, threshold: how a decision is read from the logits (see :func:`predicts`).
        batch_size: head rows per call; device: where the head runs (``None``: where embeddings are).
        names: class names for the ``per_class`` keys.
    Returns:
        A dict: ``overall`` (C), ``per_class`` ({class: C(c)}), ``n`` (pairs), ``lambdas`` (the λ
        grid) and ``anchor_accuracy`` (fraction of anchors z_i the head assigns to their class);
        all in [0, 1].
    """
    if isinstance(embeddings, torch.Tensor):
        embeddings = {modality: embeddings}
    if modality not in embeddings:
        raise ValueError(f"No {modality!r} embeddings; there are {sorted(embeddings)}.")
    device = torch.device(device) if device is not None else embeddings[modality].device
    grid = torch.tensor([*lambdas, 1.0])  # the last column, λ = 1, is the anchor itself
    per_pair = max(1, batch_size // len(grid))
    generator = torch.Generator().manual_seed(seed)
    hits: list[torch.Tensor] = []
    per_class = {}
    with torch.no_grad():
        for c, members in class_members(labels).items():
            i, j = ordered_pairs(len(members), pairs_per_class, generator)
            if len(i) == 0:
                continue
            i, j = members[i], members[j]
            decided_parts = []
            for start in range(0, len(i), per_pair):
                rows = slice(start, start + per_pair)
                mixed = interpolate(embeddings, modality, i[rows], j[rows], grid)
                logits = head({name: z.to(device) for name, z in mixed.items()})
                decided_parts.append(predicts(logits, c, multilabel, threshold).reshape(-1, len(grid)).cpu())
            decided = torch.cat(decided_parts)                                           # [P, L + 1]
            hits.append(decided)
            per_class[_name(c, names)] = float(decided[:, :-1].float().mean())
    if not hits:
        return {"overall": float("nan"), "per_class": {}, "n": 0, "lambdas": list(lambdas),
                "anchor_accuracy": float("nan")}
    all_hits = torch.cat(hits).float()
    return {"overall": float(all_hits[:, :-1].mean()), "per_class": per_class, "n": len(all_hits),
            "lambdas": list(lambdas), "anchor_accuracy": float(all_hits[:, -1].mean())}


def latent_metrics(model: Classifier, batches: Iterable, *, modalities: Sequence[str] | None = None, k: int = 10,
                   normalize: bool = True, max_points: int | None = None, lambdas: Sequence[float] = LAMBDAS,
                   pairs_per_class: int = 100, seed: int = 0,
                   device: str | torch.device | None = None) -> dict[str, dict[str, dict]]:
    """Density and convexity of each modality's embeddings over a dataset.

    Args:
        model: a Classifier (unimodal or audio-visual); batches: as for :func:`collect_embeddings`.
        modalities: the embeddings keys to measure (``None``: all); the others are still held
            fixed while one is interpolated.
        k, normalize, max_points: for :func:`density`; lambdas, pairs_per_class: for :func:`convexity`.
        seed: for both samples; device: where the model runs (``None``: where it is).
    Returns:
        ``{modality: {"density": density(...), "convexity": convexity(...)}}``, class keys named
        by ``model.labels``.
    """
    device = torch.device(device) if device is not None else model_device(model)
    embeddings, labels = collect_embeddings(model, batches, device=device)
    unknown = set(modalities or ()) - set(embeddings)
    if unknown:
        raise ValueError(f"Modalities {sorted(unknown)} not among the model's embeddings {sorted(embeddings)}.")
    names = list(model.labels) or None
    result = {}
    with frozen(model):
        for modality in modalities or list(embeddings):
            result[modality] = {
                "density": density(embeddings[modality], labels, k, normalize=normalize, max_points=max_points,
                                   seed=seed, device=device, names=names),
                "convexity": convexity(embeddings, labels, model.head, modality=modality, lambdas=lambdas,
                                       pairs_per_class=pairs_per_class, seed=seed, multilabel=model.multilabel,
                                       threshold=model.threshold, device=device, names=names),
            }
    return result

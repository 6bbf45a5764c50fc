"""Latent density and convexity: hand-computed tiny cases, cluster geometry, k-NN chunking, sampling,
and an audio-visual model with two embeddings."""

import pytest
import torch
from conftest import AudioVisualLinear, LinearClassifier
from torch import nn

from robustaudio.data.datasets import Batch
from robustaudio.metrics.latent import (
    collect_embeddings,
    convexity,
    density,
    interpolate,
    knn_mean_distance,
    latent_metrics,
)


def av_linear(audio_dim: int, video_dim: int, classes: int = 2, seed: int = 0) -> AudioVisualLinear:
    """Audio weights small and random; video dim 0 carries the class."""
    g = torch.Generator().manual_seed(seed)
    video = torch.zeros(classes, video_dim)
    video[:, 0] = torch.linspace(1, -1, classes)
    return AudioVisualLinear(0.1 * torch.randn(classes, audio_dim, generator=g), video)


def two_clusters(separated: bool, n: int = 150, dim: int = 8, seed: int = 0):
    """Two classes of ``n`` points: tight Gaussians at ±3·e₀ (separated), or one shared N(0, I) (interleaved)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(2).repeat_interleave(n)
    if separated:
        centres = torch.zeros(2, dim)
        centres[:, 0] = torch.tensor([3.0, -3.0])
        return centres[labels] + 0.1 * torch.randn(2 * n, dim, generator=g), labels
    return torch.randn(2 * n, dim, generator=g), labels


def sign_head(embeddings):
    """Class 0 when z₀ > 0, class 1 otherwise (the separating plane of :func:`two_clusters`)."""
    z = embeddings["audio"][:, 0]
    return torch.stack([z, -z], dim=-1)


def test_density_hand_computed():
    # 1-D points, no normalisation: class 0 at {0, 1}, class 1 at {10, 12}.
    z = torch.tensor([[0.0], [1.0], [10.0], [12.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # k = 1: d_same = 1, 1, 2, 2; d_other = 10 (0->10), 9 (1->10), 9 (10->1), 11 (12->1)
    result = density(z, labels, k=1, normalize=False)
    assert result["per_class"][0] == pytest.approx((10 + 9) / 2 / ((1 + 1) / 2))    # 9.5
    assert result["per_class"][1] == pytest.approx((9 + 11) / 2 / ((2 + 2) / 2))    # 5.0
    assert result["overall"] == pytest.approx((10 + 9 + 9 + 11) / (1 + 1 + 2 + 2))  # 6.5
    assert result["same_class"] == pytest.approx(1 / 1.5) and result["other_class"] == pytest.approx(1 / 9.75)
    assert result["n"] == 4 and result["k"] == 1
    # k = 2: one same-class candidate each, so d_same stays 1, 1, 2, 2;
    # d_other = mean(10, 12) = 11, mean(9, 11) = 10, mean(9, 10) = 9.5, mean(11, 12) = 11.5
    result = density(z, labels, k=2, normalize=False)
    assert result["per_class"][0] == pytest.approx((11 + 10) / 2 / 1)               # 10.5
    assert result["per_class"][1] == pytest.approx((9.5 + 11.5) / 2 / 2)            # 5.25
    assert result["overall"] == pytest.approx((11 + 10 + 9.5 + 11.5) / 6)           # 7.0


def test_convexity_hand_computed():
    # head: class 0 iff |z| > 1 (two disjoint intervals), class 1 inside (-1, 1).
    def head(embeddings):
        z = embeddings["audio"][:, 0]
        return torch.stack([z.abs() - 1, torch.zeros_like(z)], dim=-1)

    z = torch.tensor([[-2.0], [2.0], [3.5], [-0.5], [0.5]])
    labels = torch.tensor([0, 0, 0, 1, 1])
    # class 0, λ z_i + (1 − λ) z_j over λ = 0.1..0.9, count of |.| > 1:
    #   (-2, 2), (2, -2): ±(4λ − 2): λ < 0.25 or > 0.75 -> {0.1, 0.2, 0.8, 0.9} = 4 each
    #   (2, 3.5), (3.5, 2): stays in [2, 3.5] -> 9 each
    #   (-2, 3.5): 3.5 − 5.5λ > 1 for λ < 0.45 (4), < −1 for λ > 0.82 (1) -> 5
    #   (3.5, -2): 5.5λ − 2 > 1 for λ > 0.55 (4), < −1 for λ < 0.18 (1) -> 5
    #   => 36 of 54; class 1 stays inside (-0.5, 0.5): 18 of 18.
    result = convexity(z, labels, head, pairs_per_class=100)
    assert result["per_class"][0] == pytest.approx(36 / 54)
    assert result["per_class"][1] == pytest.approx(1.0)
    assert result["overall"] == pytest.approx((36 + 18) / (54 + 18))
    assert result["n"] == 6 + 2 and result["anchor_accuracy"] == 1.0


def test_separated_clusters_are_denser_and_more_convex_than_interleaved():
    separated = two_clusters(True)
    interleaved = two_clusters(False)
    d_sep, d_mix = density(*separated), density(*interleaved)
    assert d_sep["overall"] > 3 and d_mix["overall"] == pytest.approx(1.0, abs=0.15)
    assert min(d_sep["per_class"].values()) > max(d_mix["per_class"].values())
    c_sep = convexity(separated[0], separated[1], sign_head)
    c_mix = convexity(interleaved[0], interleaved[1], sign_head)
    assert c_sep["overall"] == 1.0 and c_mix["overall"] < 0.75


def test_chunked_knn_equals_brute_force():
    g = torch.Generator().manual_seed(1)
    points = torch.randn(120, 16, generator=g)
    queries_at = torch.randperm(120, generator=g)[:45]
    got = knn_mean_distance(points[queries_at], points, k=7, exclude=queries_at, chunk_size=8)
    brute = (points[queries_at, None, :] - points[None, :, :]).norm(dim=-1)
    brute[torch.arange(45), queries_at] = float("inf")
    expected = brute.sort(dim=1).values[:, :7].mean(dim=1)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    z, labels = two_clusters(False, n=60)
    chunked, whole = density(z, labels, chunk_size=5), density(z, labels)
    assert chunked["overall"] == pytest.approx(whole["overall"])
    assert chunked["per_class"] == pytest.approx(whole["per_class"])


def test_subsampling_is_seeded_and_multilabel_matches_single_label():
    z, labels = two_clusters(False, n=100)
    first = density(z, labels, max_points=40, seed=3)
    assert first == density(z, labels, max_points=40, seed=3) and first["n"] == 40
    assert density(z, labels, max_points=40, seed=4)["overall"] != first["overall"]
    assert density(z, labels, max_points=10_000) == density(z, labels)
    one_hot = nn.functional.one_hot(labels, 2).float()
    assert density(z, one_hot) == density(z, labels)
    assert convexity(z, labels, sign_head, seed=2) == convexity(z, labels, sign_head, seed=2)


def test_interpolation_holds_the_other_modality_at_the_anchor():
    embeddings = {"audio": torch.tensor([[0.0], [10.0]]), "video": torch.tensor([[1.0, 1.0], [5.0, 5.0]])}
    mixed = interpolate(embeddings, "audio", torch.tensor([0]), torch.tensor([1]), torch.tensor([0.25, 1.0]))
    torch.testing.assert_close(mixed["audio"], torch.tensor([[7.5], [0.0]]))  # 0.25·0 + 0.75·10; λ = 1: z_i
    torch.testing.assert_close(mixed["video"], torch.tensor([[1.0, 1.0], [1.0, 1.0]]))


def test_latent_metrics_audio_visual():
    g = torch.Generator().manual_seed(0)
    n, labels = 40, torch.arange(2).repeat_interleave(40)
    video = torch.randn(2 * n, 6, generator=g) * 0.2
    video[:, 0] += torch.where(labels == 0, 2.0, -2.0)  # the class lives in the video
    audio = torch.randn(2 * n, 10, generator=g)         # the audio is noise
    model = av_linear(10, 6).train()
    batches = [(audio[s:s + 16], labels[s:s + 16], video[s:s + 16]) for s in range(0, 2 * n, 16)]
    result = latent_metrics(model, batches, k=5)
    assert set(result) == {"audio", "video"} and model.training
    assert result["video"]["density"]["overall"] > 2 > result["audio"]["density"]["overall"]
    assert result["video"]["density"]["per_class"].keys() == {"c0", "c1"}
    # the fused head follows the video: interpolating either modality keeps the class
    assert result["video"]["convexity"]["overall"] == 1.0 and result["audio"]["convexity"]["overall"] > 0.9
    only_video, collected = collect_embeddings(model, batches, modalities=["video"])
    assert set(only_video) == {"video"} and torch.equal(only_video["video"], video) and torch.equal(collected, labels)


def test_collect_embeddings_reads_data_batches_and_skips_empty_ones():
    audio, labels = torch.randn(3, 10), torch.tensor([0, 1, 1])

    def batch(a, y, index):
        return Batch(ids=[str(i) for i in range(len(a))], audio=a, labels=y, label_names=[], index=index)

    unimodal = LinearClassifier(torch.randn(2, 10), torch.zeros(2))
    batches = [batch(audio, labels, 0), batch(torch.empty(0, 10), torch.empty(0, dtype=torch.long), 1)]
    embeddings, got = collect_embeddings(unimodal, batches)
    assert torch.equal(embeddings["audio"], audio) and torch.equal(got, labels)
    with pytest.raises(ValueError, match="not among"):
        collect_embeddings(av_linear(10, 6), [(audio, labels, torch.randn(3, 6))], modalities=["text"])


def test_a_tight_cluster_is_denser_than_a_spread_one():
    g = torch.Generator().manual_seed(0)
    centres = torch.zeros(60, 8)
    centres[30:, 0] = 4.0  # two classes, centres 4 apart
    labels = torch.arange(60) // 30
    tight = centres + 0.2 * torch.randn(60, 8, generator=g)
    spread = centres + 2.0 * torch.randn(60, 8, generator=g)
    assert density(tight, labels, k=5, normalize=False)["overall"] > 2 * density(spread, labels, k=5,
                                                                                 normalize=False)["overall"]


def test_convexity_is_one_for_separable_convex_classes_and_lower_for_a_ring_around_a_blob():
    g = torch.Generator().manual_seed(1)
    angle = torch.rand(80, generator=g) * 2 * torch.pi
    ring = torch.stack([angle.cos(), angle.sin()], 1) * (3 + 0.1 * torch.randn(80, 1, generator=g))
    blob = 0.5 * torch.randn(80, 2, generator=g)
    points, labels = torch.cat([blob, ring]), torch.cat([torch.zeros(80), torch.ones(80)]).long()

    def by_radius(embeddings):  # the optimal head: class 1 outside radius 1.75
        r = embeddings["audio"].norm(dim=1)
        return torch.stack([1.75 - r, r - 1.75], 1)

    result = convexity(points, labels, by_radius)
    # chords between ring points more than ~108° apart cross the blob's region
    assert result["per_class"][0] == 1.0 and result["per_class"][1] < 0.9

    shifted = torch.cat([blob - 3, blob + 3])  # two blobs split by a line: both classes convex

    def by_side(embeddings):
        x = embeddings["audio"][:, 0]
        return torch.stack([-x, x], 1)

    assert convexity(shifted, labels, by_side)["overall"] == 1.0

"""--limit draws a seeded sample stratified over labels (robustaudio.data.datasets.limited)."""

from collections import Counter
from pathlib import Path

from robustaudio.data.datasets import LIMIT_SEED, AudioDataset, Clip, limited


def clips(counts: dict[str, int]) -> list[Clip]:
    """Clips sorted by label, as the bundled metadata is."""
    return [Clip(id=f"{label}/{i}.wav", path=Path(f"{label}/{i}.wav"), labels=(label,))
            for label, n in counts.items() for i in range(n)]


def test_limit_is_stratified_proportional_and_in_dataset_order():
    data = clips({"a": 20, "b": 20, "c": 10, "d": 10})
    picked = limited(data, 12)
    assert Counter(c.labels[0] for c in picked) == {"a": 4, "b": 4, "c": 2, "d": 2}
    assert picked == sorted(picked, key=data.index)  # dataset order kept: batches stay in order


def test_limit_covers_labels_when_it_can_and_is_deterministic():
    data = clips({label: 11 for label in "abcdefghij"})
    picked = limited(data, 16)
    counts = Counter(c.labels[0] for c in picked)
    assert len(picked) == 16 and set(counts) == set("abcdefghij") and set(counts.values()) == {1, 2}
    assert limited(data, 16) == picked and limited(list(data), 16, seed=LIMIT_SEED) == picked
    assert limited(data, 16, seed=1) != picked  # the seed decides, nothing else
    assert limited(data, 5) and len({c.labels[0] for c in limited(data, 5)}) == 5


def test_no_limit_or_a_large_one_keeps_every_clip():
    data = clips({"a": 3, "b": 2})
    assert limited(data, None) == data and limited(data, 0) == data and limited(data, 99) == data


def test_multi_label_clips_are_stratified_by_their_label_set():
    data = [Clip(id=f"{i}", path=Path(f"{i}.wav"), labels=("x", "y") if i % 2 else ("x",)) for i in range(20)]
    assert Counter(c.labels for c in limited(data, 6)) == {("x",): 3, ("x", "y"): 3}


def test_bundled_limit_sees_every_class():
    """The bundled test split is sorted by class: the first 16 clips held two classes; the sample holds ten."""
    dataset = AudioDataset.from_path(None, split="test")
    picked = limited(dataset.clips, 16)
    assert len({c.labels for c in picked}) == len(dataset.label_names) == 10
    assert len({c.labels for c in dataset.clips[:16]}) == 2

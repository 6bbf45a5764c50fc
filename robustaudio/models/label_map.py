"""Run a model with a large label set (e.g. YAMNet's 521 AudioSet classes) on a dataset with its own labels.

:class:`LabelMapped` wraps any :class:`~robustaudio.models.Classifier` and maps each *dataset*
label to one or more of the model's labels: the logit of dataset label ``d`` is the **largest**
model logit among the classes mapped to ``d`` (the most confident of them; for a multi-label
tagger, the class that comes closest to firing). Model classes mapped to no dataset label are
ignored. By default the result is a **single-label** classifier over the dataset's labels: the
prediction is the dataset label with the highest mapped logit (a closed-set decision, like the
models trained on the dataset, so clean and robust accuracy compare directly); with
``multilabel=True`` it stays a tagger (sigmoid per dataset label, the model's threshold).

Attacks, noise and latent metrics need no special code: the wrapper has the model's front end,
stages, rate and clip length, and only the head is followed by the selection. Untargeted attacks
on the wrapper push the true label's mapped logit below another dataset label's.

Maps are ``{dataset_label: [model_label, ...]}``: a bundled one by name (:data:`MAPS`), or a JSON
file of that form. By name: ``labelmap:MAP:MODEL``, e.g. ``labelmap:minievents:yamnet``
(``robustaudio compare --models labelmap:minievents:yamnet cnn``).

**minievents -> AudioSet** (:data:`MINIEVENTS_TO_AUDIOSET`, for YAMNet and other AudioSet taggers
whose labels are the ontology's display names): each minievents class takes the AudioSet class
it is named after and that class's descendants among the 521 labels; where minievents draws its
class boundary differently from AudioSet, the map follows minievents (what the clips are):

* ``bird`` also takes AudioSet's *Fowl* subtree (chicken, duck, goose, turkey): minievents files
  ducks and roosters as birds; ``livestock`` is then the mammals (cattle, horse, pig, goat, sheep);
* ``engine`` also takes the engine-driven vehicles its clips are recorded from (aircraft,
  helicopter, trains, road vehicles and their engines);
* ``water`` also takes AudioSet's *Liquid* subtree (drips, splashes, pouring);
* ``music`` takes *Music*, musical instruments other than drums and cymbals (minievents' music
  clips are single instruments: accordion, cello, piano, ...), genres, roles and moods;
  ``kick`` -> *Bass drum*, ``snare`` -> *Snare drum* (+ rimshot, drum roll), ``cymbal`` ->
  *Cymbal*, *Hi-hat*. Generic percussion (*Drum*, *Drum kit*, *Percussion*, ...) is mapped to
  none of them: it does not say which drum.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from .base import Classifier, ModelError

_MUSIC_INSTRUMENTS = (
    "Musical instrument", "Plucked string instrument", "Guitar", "Electric guitar", "Bass guitar", "Acoustic guitar",
    "Steel guitar, slide guitar", "Tapping (guitar technique)", "Strum", "Banjo", "Sitar", "Mandolin", "Zither",
    "Ukulele", "Keyboard (musical)", "Piano", "Electric piano", "Organ", "Electronic organ", "Hammond organ",
    "Synthesizer", "Sampler", "Harpsichord", "Gong", "Tubular bells", "Mallet percussion", "Marimba, xylophone",
    "Glockenspiel", "Vibraphone", "Steelpan", "Orchestra", "Brass instrument", "French horn", "Trumpet",
    "Trombone", "Bowed string instrument", "String section", "Violin, fiddle", "Pizzicato", "Cello",
    "Double bass", "Wind instrument, woodwind instrument", "Flute", "Saxophone", "Clarinet", "Harp", "Bell",
    "Church bell", "Jingle bell", "Bicycle bell", "Tuning fork", "Chime", "Wind chime",
    "Change ringing (campanology)", "Harmonica", "Accordion", "Bagpipes", "Didgeridoo", "Shofar", "Theremin",
    "Singing bowl", "Scratching (performance technique)")
_MUSIC_GENRES_ROLES_MOODS = (
    "Pop music", "Hip hop music", "Beatboxing", "Rock music", "Heavy metal", "Punk rock", "Grunge",
    "Progressive rock", "Rock and roll", "Psychedelic rock", "Rhythm and blues", "Soul music", "Reggae", "Country",
    "Swing music", "Bluegrass", "Funk", "Folk music", "Middle Eastern music", "Jazz", "Disco", "Classical music",
    "Opera", "Electronic music", "House music", "Techno", "Dubstep", "Drum and bass", "Electronica",
    "Electronic dance music", "Ambient music", "Trance music", "Music of Latin America", "Salsa music", "Flamenco",
    "Blues", "Music for children", "New-age music", "Vocal music", "A capella", "Music of Africa", "Afrobeat",
    "Christian music", "Gospel music", "Music of Asia", "Carnatic music", "Music of Bollywood", "Ska",
    "Traditional music", "Independent music", "Song", "Background music", "Theme music", "Jingle (music)",
    "Soundtrack music", "Lullaby", "Video game music", "Christmas music", "Dance music", "Wedding music",
    "Happy music", "Sad music", "Tender music", "Exciting music", "Angry music", "Scary music")

MINIEVENTS_TO_AUDIOSET: dict[str, tuple[str, ...]] = {
    "bird": ("Bird", "Bird vocalization, bird call, bird song", "Chirp, tweet", "Squawk", "Pigeon, dove", "Coo",
             "Crow", "Caw", "Owl", "Hoot", "Bird flight, flapping wings",
             "Fowl", "Chicken, rooster", "Cluck", "Crowing, cock-a-doodle-doo", "Turkey", "Gobble", "Duck", "Quack",
             "Goose", "Honk"),
    "cymbal": ("Cymbal", "Hi-hat"),
    "engine": ("Engine", "Light engine (high frequency)", "Medium engine (mid frequency)",
               "Heavy engine (low frequency)", "Engine knocking", "Engine starting", "Idling",
               "Accelerating, revving, vroom", "Lawn mower", "Chainsaw", "Dental drill, dentist's drill",
               "Vehicle", "Motor vehicle (road)", "Car", "Truck", "Bus", "Motorcycle", "Race car, auto racing",
               "Car passing by", "Rail transport", "Train", "Railroad car, train wagon", "Subway, metro, underground",
               "Aircraft", "Aircraft engine", "Jet engine", "Propeller, airscrew", "Helicopter",
               "Fixed-wing aircraft, airplane", "Motorboat, speedboat"),
    "footsteps": ("Walk, footsteps", "Run", "Shuffle"),
    "kick": ("Bass drum",),
    "livestock": ("Livestock, farm animals, working animals", "Horse", "Clip-clop", "Neigh, whinny",
                  "Cattle, bovinae", "Moo", "Cowbell", "Pig", "Oink", "Goat", "Bleat", "Sheep"),
    "music": ("Music",) + _MUSIC_INSTRUMENTS + _MUSIC_GENRES_ROLES_MOODS,
    "snare": ("Snare drum", "Rimshot", "Drum roll"),
    "speech": ("Speech", "Child speech, kid speaking", "Conversation", "Narration, monologue", "Babbling",
               "Speech synthesizer"),
    "water": ("Water", "Rain", "Raindrop", "Rain on surface", "Stream", "Waterfall", "Ocean", "Waves, surf",
              "Steam", "Gurgling", "Liquid", "Splash, splatter", "Slosh", "Squish", "Drip", "Pour",
              "Trickle, dribble", "Gush", "Fill (with liquid)", "Spray", "Pump (liquid)", "Stir", "Boiling"),
}

MAPS: dict[str, dict[str, tuple[str, ...]]] = {"minievents": MINIEVENTS_TO_AUDIOSET}


class LabelMapped(Classifier):
    """``model`` restricted to dataset labels: logit of ``d`` = max of the model's logits mapped to ``d``.

    Args:
        model: any Classifier (stages are passed through; a model run whole stays run whole).
        mapping: ``{dataset_label: [model_label, ...]}``; every model label must exist in ``model.labels``.
        multilabel: False (default): single-label over the dataset labels (softmax, argmax decision);
            True: a tagger over them (sigmoid, ``model.threshold``).
        name: how error messages and ``describe_source`` name the map.

    Output logits ``[B, len(mapping)]``, in the mapping's order (``labels``).
    """

    gather_index: torch.Tensor  # buffer

    def __init__(self, model: Classifier, mapping: Mapping[str, Sequence[str]], multilabel: bool = False,
                 name: str = "label map"):
        super().__init__()
        if not mapping:
            raise ModelError(f"The {name} is empty: give at least one dataset label and its model labels.")
        index = {label: i for i, label in enumerate(model.labels)}
        mapping = {label: (targets,) if isinstance(targets, str) else tuple(targets)
                   for label, targets in mapping.items()}
        columns = []
        for label, targets in mapping.items():
            if not targets:
                raise ModelError(f"The {name} maps {label!r} to no model label.")
            missing = [t for t in targets if t not in index]
            if missing:
                hints = {t: difflib.get_close_matches(t, list(index), n=2, cutoff=0.6) for t in missing[:3]}
                raise ModelError(f"The {name} names label(s) the model does not have: "
                                 + "; ".join(f"{t!r}" + (f" (did you mean {', '.join(map(repr, c))}?)" if c else "")
                                             for t, c in hints.items())
                                 + f". The model's labels begin: {', '.join(model.labels[:8])} ...")
            columns.append(torch.tensor([index[t] for t in targets], dtype=torch.long))
        self.model = model
        self.map_name = name
        self.mapping = mapping
        self.labels = tuple(mapping)
        self.multilabel = multilabel
        self.sample_rate = model.sample_rate
        self.bounds = model.bounds
        self.modalities = model.modalities
        self.clip_seconds = model.clip_seconds
        self.threshold = model.threshold
        # [K_dataset, M] gather index into the model's logits, padded by repeating each row's first index
        width = max(len(c) for c in columns)
        self.register_buffer("gather_index", torch.stack(
            [torch.cat([c, c[:1].expand(width - len(c))]) for c in columns]), persistent=False)

    def describe_source(self) -> str:
        inner = getattr(self.model, "describe_source", lambda: type(self.model).__name__)()
        return f"{inner} through the {self.map_name}"

    def select(self, logits: torch.Tensor) -> torch.Tensor:
        """Dataset-label logits ``[B, K_dataset]`` from the model's logits ``[B, K_model]``."""
        gathered = logits[:, self.gather_index.reshape(-1)].reshape(logits.shape[0], *self.gather_index.shape)
        return gathered.amax(dim=-1)

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        return self.model.features(audio)

    def embeddings(self, features: torch.Tensor, video: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return self.model.embeddings(features, video)

    def head(self, embeddings: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.select(self.model.head(embeddings))

    def forward_features(self, features: torch.Tensor, video: torch.Tensor | None = None) -> torch.Tensor:
        return self.select(self.model.forward_features(features, video))

    def forward(self, audio: torch.Tensor, video: torch.Tensor | None = None) -> torch.Tensor:
        return self.select(self.model(audio, video))


def read_map(spec: str) -> tuple[dict[str, tuple[str, ...]], str]:
    """A bundled map by name (``minievents``) or a JSON file ``{dataset_label: [model_label, ...]}``; and its name."""
    if spec in MAPS:
        return MAPS[spec], f"{spec} label map"
    path = Path(spec)
    if not path.is_file():
        raise ModelError(f"Label map {spec!r} is neither a bundled map ({', '.join(MAPS)}) nor a JSON file.")
    try:
        mapping = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelError(f"Label map {path} is not valid JSON ({error}).") from error
    if not isinstance(mapping, dict) or not all(
            isinstance(v, str) or (isinstance(v, list) and all(isinstance(t, str) for t in v))
            for v in mapping.values()):
        raise ModelError(f'Label map {path} must be an object {{"dataset label": ["model label", ...]}}.')
    return {k: (v,) if isinstance(v, str) else tuple(v) for k, v in mapping.items()}, f"label map {path.name}"


def load_label_mapped(target: str, **options: Any) -> LabelMapped:
    """``labelmap:MAP:MODEL``: ``MODEL`` (any ``load_model`` name, prefixed or not) through ``MAP``.

    ``multilabel`` goes to :class:`LabelMapped`; other options go to the model's loader.
    """
    from .registry import load_model

    spec, colon, model_name = target.partition(":")
    if not colon or not spec or not model_name:
        raise ModelError(f"labelmap:{target} should be labelmap:MAP:MODEL, e.g. labelmap:minievents:yamnet "
                         f"(MAP: {', '.join(MAPS)} or a JSON file).")
    multilabel = options.pop("multilabel", False)
    mapping, name = read_map(spec)
    return LabelMapped(load_model(model_name, **options), mapping, multilabel=multilabel, name=name)

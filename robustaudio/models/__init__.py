"""Classifiers: the common interface, front ends, architectures and the name registry."""

from .ast import SmallAST
from .base import Classifier, frozen
from .cnn import LogMelCNN
from .frontends import KaldiFbank, LogMel
from .registry import ARCHITECTURES, DEFAULT_MODEL, MODELS, ModelError, load_checkpoint, load_model, save_checkpoint

__all__ = ["Classifier", "frozen", "LogMelCNN", "SmallAST", "LogMel", "KaldiFbank", "ARCHITECTURES", "MODELS",
           "DEFAULT_MODEL", "ModelError", "load_model", "load_checkpoint", "save_checkpoint"]

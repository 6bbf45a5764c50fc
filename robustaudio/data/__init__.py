"""Reading labelled audio: files, dataset layouts, the bundled mini dataset, batching."""

from .audio import AudioError, check_waveform, fit_length, load_audio
from .datasets import AudioDataset, Batch, Clip, DatasetError, bundled_path

__all__ = ["AudioError", "check_waveform", "fit_length", "load_audio", "AudioDataset", "Batch", "Clip",
           "DatasetError", "bundled_path"]

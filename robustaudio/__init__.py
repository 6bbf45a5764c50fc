"""robustaudio: attack, measure, defend and certify audio and audio-visual event classifiers.

The library is usable without the CLI; the main entry points are

- :class:`robustaudio.models.Classifier` and :func:`robustaudio.models.load_model`,
- :class:`robustaudio.attacks.ThreatModel` and :func:`robustaudio.attacks.pgd`,
- :func:`robustaudio.runner.run_attack` (a dataset, a model, threat models -> records),
- :func:`robustaudio.report.build_report` (records -> card.json, report.md, report.html).
"""

__version__ = "0.1.0"


def versions() -> dict[str, str]:
    """Versions of robustaudio and the libraries that change its numbers."""
    import numpy
    import torch
    import torchaudio

    return {
        "robustaudio": __version__,
        "torch": torch.__version__,
        "torchaudio": torchaudio.__version__,
        "numpy": numpy.__version__,
    }

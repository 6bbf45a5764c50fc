"""Metrics over records and models. A new metric goes in its own module here."""

from .classification import mean_with_ci, per_class_mean

__all__ = ["mean_with_ci", "per_class_mean"]

"""Metrics over records and models. A new metric goes in its own module here."""

from ..stats import mean_with_ci, per_class_mean
from .latent import collect_embeddings, convexity, density, latent_metrics
from .potency import accuracy_from_minimal_eps, eps_at_chance, median_with_ci
from .sanity import Check, probe_model, record_checks
from .sharpness import sharpness

__all__ = ["mean_with_ci", "per_class_mean", "accuracy_from_minimal_eps", "eps_at_chance", "median_with_ci", "Check",
           "probe_model", "record_checks",
           "collect_embeddings", "density", "convexity", "latent_metrics", "sharpness"]

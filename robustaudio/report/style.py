"""One look for every report figure: sizes, fonts, colours, axes that read at a glance.

Every figure of :mod:`robustaudio.report` is made inside :func:`figure` (which applies :data:`RC`), and
uses the helpers here for what recurs: accuracy axes (:func:`accuracy_axis`), a reference line for the
clean accuracy labelled on the line itself instead of in a legend (:func:`clean_line`), ε axes with
their unit and a secondary SNR axis (:func:`eps_axes`), histogram counts in whole numbers
(:func:`count_axis`), legends outside the data (:func:`legend_outside`), heatmaps for many series
(:func:`heatmap`) and spectrograms on one colour scale (:func:`power_db`, :func:`spectrogram_figure`).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any, cast

import matplotlib

matplotlib.use("Agg")  # reports are written without a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator, NullLocator  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Callable

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.image import AxesImage

DPI = 110
WIDTH = 7.0  # inches: one panel of the HTML column (1100 px at DPI)
RC: dict[Any, Any] = {  # Any keys: matplotlib's stubs type rc_context's keys as a Literal of rc names
    "figure.dpi": DPI, "savefig.dpi": DPI, "font.size": 9.5, "axes.titlesize": 10, "axes.labelsize": 9.5,
    "xtick.labelsize": 8.5, "ytick.labelsize": 8.5, "legend.fontsize": 8, "legend.frameon": False,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.color": "#e6e6e6",
    "grid.linewidth": 0.7, "axes.axisbelow": True, "axes.titleweight": "bold", "lines.linewidth": 1.8,
    "lines.markersize": 5, "image.cmap": "magma",
}
CLEAN = "#7f7f7f"      # clean accuracy: a grey reference
ROBUST = "#1f5fa8"     # robust accuracy / the main series
BAD = "#c0392b"        # broken, flagged
CHANCE = "#bbbbbb"
SERIES = ["#1f5fa8", "#e07b24", "#2e8b57", "#8e44ad", "#c0392b", "#17becf", "#8c564b", "#bcbd22"]
ACCURACY_MAP = "viridis"  # heatmaps of accuracy in [0, 1]
SPECTRUM_MAP = "magma"
SPECTRUM_RANGE_DB = 100.0  # dynamic range of the spectrograms' one colour scale


def figure(rows: int = 1, cols: int = 1, *, width: float | None = None, height: float = 3.2,
           **kwargs: Any) -> tuple[Figure, np.ndarray]:
    """``(fig, axes)`` (axes always 2-D) in the report style; ``width`` defaults to one HTML column."""
    with plt.rc_context(RC):
        fig, axes = plt.subplots(rows, cols, figsize=(width or WIDTH, height), squeeze=False, **kwargs)
    for ax in axes.flat:
        _style(ax)
    return fig, axes


def _style(ax: Axes) -> None:
    for key, value in RC.items():
        if key.startswith("axes.spines."):
            ax.spines[key.split(".")[-1]].set_visible(value)
    ax.grid(True, color=RC["grid.color"], linewidth=RC["grid.linewidth"])
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=RC["xtick.labelsize"])
    ax.title.set_fontsize(RC["axes.titlesize"])
    ax.title.set_fontweight(RC["axes.titleweight"])
    ax.xaxis.label.set_fontsize(RC["axes.labelsize"])
    ax.yaxis.label.set_fontsize(RC["axes.labelsize"])


def finish(fig: Figure) -> None:
    """Tight layout in the report style (call once the figure is drawn)."""
    with plt.rc_context(RC):
        fig.tight_layout()


def accuracy_axis(ax: Axes, label: str = "accuracy") -> None:
    ax.set_ylabel(label)
    ax.set_ylim(-0.02, 1.05)
    ax.yaxis.set_major_locator(MaxNLocator(6))


def clean_line(ax: Axes, value: float, label: str = "clean") -> None:
    """The clean accuracy as a dashed grey line, labelled at its right end (no legend entry)."""
    if value is None or not np.isfinite(value):
        return
    ax.axhline(value, color=CLEAN, linestyle="--", linewidth=1.2, zorder=1)
    ax.annotate(f"{label} {value:.2f}", xy=(1, value), xycoords=("axes fraction", "data"), xytext=(-2, 3),
                textcoords="offset points", ha="right", va="bottom", fontsize=8, color=CLEAN)


def count_axis(ax: Axes, label: str = "clips") -> None:
    """Counts of clips: whole-number ticks only."""
    ax.set_ylabel(label)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))


def eps_axes(ax: Axes, eps: list[float], norm: str, domain: str, snr: list[float | None] | None = None) -> None:
    """An ε x-axis with its unit (log-scaled over a decade or more, ticks at the budgets) and, when the
    budgets' median SNRs are known, a secondary SNR (dB) axis on top with the same ticks."""
    units = {"waveform": "full scale = 1", "feature": "normalised features", "video": "pixels in [0, 1]"}
    unit = units.get(domain, domain)
    name = {"linf": "L∞", "l2": "L2", "l1": "L1"}.get(norm, norm)
    ax.set_xlabel(f"{name} budget ε ({domain}, {unit})")
    positive = [e for e in eps if e > 0]
    if positive and max(positive) / min(positive) >= 10:
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(eps)
    ax.set_xticklabels([f"{e:g}" for e in eps])
    if snr and any(s is not None for s in snr):
        top = ax.secondary_xaxis("top")
        top.set_xticks(eps)
        top.set_xticklabels(["–" if s is None else f"{s:.0f}" for s in snr])
        top.set_xlabel("median SNR of the perturbations, attacked clips (dB)", fontsize=RC["axes.labelsize"])
        top.tick_params(labelsize=RC["xtick.labelsize"])
        if ax.get_xscale() == "log":
            top.xaxis.set_minor_locator(NullLocator())


def legend_outside(ax: Axes, **kwargs: Any) -> None:
    """A legend to the right of the axes, never over the data."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        # RC's legend settings apply only inside rc_context, which ends with figure(): pass them here
        options = {"frameon": RC["legend.frameon"], "fontsize": RC["legend.fontsize"], **kwargs}
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, **options)


def heatmap(ax: Axes, values: np.ndarray, rows: list[str], cols: list[str], *, vmin: float = 0.0, vmax: float = 1.0,
            cmap: str = ACCURACY_MAP, fmt: str = "{:.2f}", label: str = "accuracy") -> AxesImage:
    """A labelled heatmap with each value written in its cell (NaN cells left blank); returns the image."""
    shown = np.ma.masked_invalid(np.asarray(values, dtype=float))
    image = ax.imshow(shown, aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels(cols, rotation=30 if max((len(c) for c in cols), default=0) > 6 else 0,
                       ha="right" if max((len(c) for c in cols), default=0) > 6 else "center")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows)
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    colormap = plt.get_cmap(cmap)
    for i in range(shown.shape[0]):
        for j in range(shown.shape[1]):
            value = values[i][j]
            if value is None or not np.isfinite(value):
                continue
            shade = colormap((value - vmin) / (vmax - vmin) if vmax > vmin else 0.5)
            light = 0.299 * shade[0] + 0.587 * shade[1] + 0.114 * shade[2] > 0.55
            ax.text(j, i, fmt.format(value), ha="center", va="center", fontsize=8,
                    color="black" if light else "white")
    colorbar = ax.figure.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    colorbar.set_label(label)
    colorbar.outline.set_visible(False)
    return image


# ---- spectrograms -----------------------------------------------------------------------------------

def power_db(samples: np.ndarray, rate: int) -> np.ndarray:
    """Log power spectrogram ``[freq, frames]`` in dB re full scale: Hann windows of about 32 ms, 1/4 hop."""
    x = np.asarray(samples, dtype=np.float64)
    n_fft = int(2 ** round(np.log2(max(0.032 * rate, 64))))
    hop = n_fft // 4
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    window = np.hanning(n_fft)
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * window
    spectrum = np.abs(np.fft.rfft(frames, axis=-1)) ** 2 / (window.sum() / 2) ** 2
    return (10 * np.log10(spectrum + 1e-12)).T


def _maps_figure(maps: dict[str, np.ndarray], low: float, high: float,
                 extent: Callable[[np.ndarray], tuple[float, float, float, float] | None], titles: dict[str, str],
                 xlabel: str, ylabel: str, unit: str) -> Figure:
    """Side-by-side maps ``[rows, frames]`` on one colour scale ``[low, high]`` with one colour bar."""
    n = len(maps)
    fig, axes = figure(1, n + 1, width=WIDTH + 2.5, height=2.3, gridspec_kw={"width_ratios": [1] * n + [0.04]})
    image = None
    for ax, (name, values) in zip(axes[0], maps.items()):
        image = ax.imshow(values, origin="lower", aspect="auto", extent=extent(values), vmin=low, vmax=high,
                          cmap=SPECTRUM_MAP, interpolation="nearest")
        ax.set_title(titles.get(name, name))
        ax.set_xlabel(xlabel)
        ax.grid(False)
        if ax is not axes[0][0]:
            ax.tick_params(labelleft=False)
    axes[0][0].set_ylabel(ylabel)
    # cast: ``maps`` is never empty (every caller passes two or more maps), so the loop set ``image``
    colorbar = fig.colorbar(cast("AxesImage", image), cax=axes[0][-1])
    colorbar.set_label(unit)
    colorbar.outline.set_visible(False)
    finish(fig)
    return fig


def spectrogram_figure(spectra: dict[str, np.ndarray], rate: int, top: float, amplify: int | None = None) -> Figure:
    """Side-by-side spectrograms on one colour scale (``top`` dB down to ``top - SPECTRUM_RANGE_DB``),
    one colour bar. δ is drawn at its true level (not amplified), so its darkness is its quietness."""
    hop = int(2 ** round(np.log2(max(0.032 * rate, 64)))) // 4
    titles = {"δ": "δ at its true level" + (f" (played ×{amplify})" if amplify else "")}
    return _maps_figure(spectra, top - SPECTRUM_RANGE_DB, top, lambda p: (0, p.shape[1] * hop / rate, 0, rate / 2000),
                        titles, "time (s)", "frequency (kHz)", "dB re full scale")


def feature_figure(features: dict[str, np.ndarray]) -> Figure:
    """Side-by-side feature maps ``[F, frames]`` (normalised log-mel units) on one colour scale."""
    low = min(float(np.percentile(f, 1)) for f in features.values())
    high = max(float(np.percentile(f, 99)) for f in features.values())
    return _maps_figure(features, low, high, lambda f: None, {}, "frame", "mel band", "normalised log-mel")


# ---- output -----------------------------------------------------------------------------------------

def png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    return buffer.getvalue()


def jpeg(fig: Figure, quality: int = 82) -> bytes:
    """JPEG for dense images (spectrograms): a fraction of the PNG's size at no visible cost."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="jpeg", dpi=DPI, pil_kwargs={"quality": quality})
    plt.close(fig)
    return buffer.getvalue()

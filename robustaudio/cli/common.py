"""What the commands share: option groups, the list-valued option parser, device parsing, the user
errors that become one-line messages, and the run summary printed after a report."""

from __future__ import annotations

import errno
import hashlib
import json
import math
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from . import choices

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

_F = TypeVar("_F", bound="Callable[..., Any]")  # a command function, decorated by option groups


def user_errors(*more: type[Exception]) -> tuple[type[Exception], ...]:
    """The exceptions that mean a user mistake: shown as one line with their fix, never a traceback.

    Imported here, when a command fails, so that ``--help`` does not import torch. A run folder that cannot
    be written (:class:`~robustaudio.records.RunDirectoryError`, an ``OSError``) is left to :class:`Main`, which
    adds what a rerun of this command redoes.
    """
    from ..attacks import ThreatModelError
    from ..attacks.backends import BackendError
    from ..data import DatasetError
    from ..extras import MissingExtraError
    from ..models.base import GradientUnavailableError, ModelError
    from ..runner import RunSettingsError

    return (ModelError, DatasetError, ThreatModelError, RunSettingsError, BackendError, GradientUnavailableError,
            MissingExtraError, *more)


def parse_device(name: str) -> torch.device:
    import torch
    try:
        device = torch.device(name)
    except RuntimeError as error:  # torch names every device type it knows, over several lines
        raise click.BadParameter(f"{name!r} is not a device: use cpu, cuda, cuda:N or mps.",
                                 param_hint="--device") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter("CUDA is not available on this machine; use --device cpu.",
                                 param_hint="--device")
    return device


class FiniteFloat(click.FloatRange):
    """A float option that must be a finite number, within the bounds of :class:`click.FloatRange` when given
    (click's ``float`` and ``FloatRange`` let ``nan`` and ``inf`` through, to fail later with a traceback)."""

    name = "float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number

    def _describe_range(self) -> str:  # click describes a range with no bounds as "x<=None" in --help
        return "" if self.min is None and self.max is None else super()._describe_range()


FINITE = FiniteFloat()
SEED = click.IntRange(0, 2**32 - 1)  # numpy's and torch's generators take no negative seed, nor one past 64 bits


def data_for(model_name: str, data: str | None) -> str | None:
    """``--data``, or when it is not given the bundled set a bundled model was trained on (avmini for
    the av-* models; ``None``, the bundled minievents, for everything else)."""
    from ..models import MODELS
    if data is None and model_name in MODELS:
        return MODELS[model_name].data
    return data


def expand_value_lists(args: list[str]) -> list[str]:
    """Let ``--eps 0.05 0.1 0.2`` mean ``--eps 0.05 --eps 0.1 --eps 0.2``, for every option of
    :data:`LIST_OPTIONS` (those that take several values)."""
    out: list[str] = []
    option = None  # the list option whose values are being read
    for arg in args:
        if option is not None and LIST_OPTIONS[option](arg):
            if out[-1] != option:
                out.append(option)
            out.append(arg)
            continue
        option = arg if arg in LIST_OPTIONS else None
        out.append(arg)
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_name(text: str) -> bool:
    return not text.startswith("-")


LIST_OPTIONS = {"--eps": _is_number, "--snr-db": _is_number, "--models": _is_name, "--corruption": _is_name,
                "--scene-seeds": _is_number, "--evaluate-engine": _is_name, "--sigma": _is_number,
                "--video-eps": _is_number, "--levels": _is_number, "--defenses": _is_name}


RESUMABLE = {"attack", "noise", "compare", "certify", "defend"}  # commands that keep finished work in --out


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # every write is whole or rolled back on it (records.append_rows, the atomic writes)


class Main(click.Group):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, expand_value_lists(args))

    def invoke(self, ctx: click.Context) -> Any:
        # `kill` (SIGTERM) ends a run as Ctrl-C does, saying how to resume (it ended silently, exit -15)
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None
        try:
            return super().invoke(ctx)
        except (KeyboardInterrupt, click.exceptions.Abort):  # Ctrl-C: click alone prints only "Aborted!"
            command = ctx.invoked_subcommand
            if command in RESUMABLE:
                click.echo("\nInterrupted. Finished batches are saved in the run directory: rerun the same "
                           "command to resume (--restart starts over).", err=True)
            else:
                click.echo(f"\nInterrupted; {command or 'the command'} keeps no partial results.", err=True)
            ctx.exit(130)
        except OSError as error:  # a full disk or a bad path met where no layer names it (writing a report, say)
            if error.errno == errno.EPIPE:  # output piped into `head`: click ends quietly on its own
                raise
            from ..records import describe_os_error
            raise click.ClickException(describe_os_error(error, ctx.invoked_subcommand in RESUMABLE)) from error
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


class Progress:
    """Progress of a run, one line per update: clips (or ``unit``) done, elapsed time and a calibrated time left.

    The rate behind the time left counts only batches computed in this process after the first one, so
    start-up (model warm-up, sanity probes) and batches resumed from the records do not skew it. On a
    terminal the line is rewritten in place; in a log it is printed at most every ``every`` seconds.
    """

    def __init__(self, label: str, total: int, every: float = 10.0, unit: str = "clips"):
        import sys
        import time

        self.label, self.total, self.every, self.unit = label, total, every, unit
        self.clock = time.monotonic
        self.started = self.last = self.printed = self.clock()
        self.done = self.resumed = self.timed_clips = 0
        self.timed_seconds, self.fresh_batches = 0.0, 0
        self.tty = sys.stdout.isatty()

    def __call__(self, batch: object, n_clips: int, resumed: bool) -> None:
        now = self.clock()
        if resumed:
            self.resumed += n_clips
        else:
            if self.fresh_batches:  # the first computed batch carries the start-up cost
                self.timed_clips += n_clips
                self.timed_seconds += now - self.last
            self.fresh_batches += 1
        self.last, self.done = now, self.done + n_clips
        if self.tty or now - self.printed >= self.every or self.done >= self.total:
            self.printed = now
            click.echo(("\r" if self.tty else "") + self.line(now), nl=not self.tty)

    def line(self, now: float) -> str:
        text = f"{self.label}: {self.done}/{self.total} {self.unit}, {clock_text(now - self.started)} elapsed"
        left = self.total - self.done
        if left and self.timed_clips:
            text += f", about {clock_text(left * self.timed_seconds / self.timed_clips)} left"
        elif left:
            text += ", time left after the next batch"
        if self.resumed:
            text += f" ({self.resumed} from the records)"
        return text + (" " * 8 if self.tty else "")

    def close(self) -> None:
        if self.tty:
            click.echo("")
        if self.done and not self.fresh_batches:
            click.echo(f"{self.label}: already complete (all {self.done} {self.unit} were in the records); nothing "
                       f"was recomputed; --restart runs it again.")


class PhaseProgress:
    """``progress(phase, done, total)`` callbacks (e.g. of ``jam``) as one :class:`Progress` per phase."""

    def __init__(self, label: str, units: dict[str, str]):
        self.label, self.units = label, units
        self.phase: str | None = None
        self.current: Progress | None = None

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase != self.phase or self.current is None:
            self.close()
            self.phase = phase
            self.current = Progress(f"{self.label} {phase}", total, unit=self.units.get(phase, "items"))
        self.current(None, done - self.current.done, False)

    def close(self) -> None:
        if self.current is not None:
            self.current.close()
        self.current = None


def clock_text(seconds: float) -> str:
    """``"1:05:09"``, ``"4:02"`` or ``"12 s"``: a duration as people read it."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def compose(*decorators: Callable[[_F], _F]) -> Callable[[_F], _F]:
    """Several click options as one decorator: the options that commands share, defined once."""
    def apply(function: _F) -> _F:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function
    return apply


model_options = compose(
    click.option("--model", "model_name", default=choices.DEFAULT_MODEL, show_default=True,
                 help="Model name (see `robustaudio models`)."),
    click.option("--weights", type=click.Path(dir_okay=False), help="Checkpoint replacing the bundled weights."),
    click.option("--trust-checkpoint", is_flag=True,
                 help="Allow pickled checkpoints and .bin weights (they run code from the file). A "
                      "python:MODULE:FACTORY model named on this command line runs without it (naming it is the "
                      "consent); one named in a run folder, for `report`, needs it."))
run_options = compose(
    click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
                 help="Shard batches over Ray workers: --ray for a local cluster, --ray ADDRESS to join one."),
    click.option("--workers", type=click.IntRange(min=1), help="CPUs of the local Ray cluster (default: all)."),
    click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True),
    click.option("--limit", type=click.IntRange(min=1), help="A seeded sample of N clips, stratified over labels."),
    click.option("--seed", type=SEED, default=0, show_default=True),
    click.option("--device", default="cpu", show_default=True))



def print_summary(card: dict, run_dir: Path) -> None:
    if not card.get("complete", True):
        click.echo(f"incomplete: {card['clips']} of {card['settings'].get('clips')} clips have records; rerun the "
                   f"command that made {run_dir} to finish it (it resumes).", err=True)
    if "clean_accuracy" in card:
        click.echo(f"clean accuracy {card['clean_accuracy']['value']:.3f}")
    for c in card["conditions"]:
        what = "accuracy" if c.get("kind") == "noise" else "robust accuracy"
        click.echo(f"{c['condition']}: {what} {c['robust_accuracy']['value']:.3f} "
                   f"[{c['robust_accuracy']['ci95'][0]:.3f}, {c['robust_accuracy']['ci95'][1]:.3f}], "
                   f"success rate {c['success_rate']['value']:.3f}")
        if c.get("transfer"):
            t = c["transfer"]
            click.echo(f"  transferred to {t['model']}: accuracy {t['clean_accuracy']['value']:.3f} clean, "
                       f"{t['robust_accuracy']['value']:.3f} on the adversarial audio; transfer rate "
                       f"{t['transfer_rate']['value']:.3f}")
    for m in card.get("minimal", []):
        median = m["median_eps"]
        click.echo(f"{m['condition']}: {m['found']} of {m['attacked']} clips broken; median minimal ε "
                   f"{median['value']:.4g} [{median['ci95'][0]:.4g}, {median['ci95'][1]:.4g}]; ε at chance "
                   f"{m['eps_at_chance'] if m['eps_at_chance'] is None else format(m['eps_at_chance'], '.4g')}")
    if card.get("flags"):
        click.echo(f"sanity flags: {', '.join(card['flags'])} (see the report's Sanity checks)", err=True)
    if card["skipped_clips"]:
        click.echo(f"{card['skipped_clips']} clip(s) skipped: see {run_dir / 'warnings.jsonl'}", err=True)
    from ..data.audio import summarize_notes  # here: the command has run, torch is loaded
    from ..records import read_warnings

    notes = summarize_notes(w["message"] for w in read_warnings(run_dir) if w["kind"] == "note")
    if notes:
        click.echo(f"audio: {notes} (per clip: {run_dir / 'warnings.jsonl'})", err=True)
    click.echo(f"report: {run_dir / 'report.html'}")


def parse_corruptions(names: tuple[str, ...]) -> dict:
    from ..runner import noise_suite
    try:
        return noise_suite(names)
    except KeyError as error:  # UnknownCorruption: its message lists the valid names
        raise click.BadParameter(str(error.args[0]), param_hint="--corruption") from error


def given(name: str) -> bool:
    """Whether the user set option ``name`` (the parameter's name) on the command line, not left its default."""
    from click.core import ParameterSource
    return click.get_current_context().get_parameter_source(name) == ParameterSource.COMMANDLINE


def flag(name: str) -> str:
    """The option string of the current command's parameter ``name`` (``purify_sigma`` -> ``--purify-sigma``)."""
    return next(p.opts[0] for p in click.get_current_context().command.params if p.name == name)


def refuse_unused(unused: dict[str, str]) -> None:
    """A usage error for the first option the user set that this command line does not use: an option
    silently ignored reads as if it had done something. ``unused``: option -> why it does not apply."""
    for option, why in unused.items():
        raise click.UsageError(f"{option} {why}.")


def require_extras(*, rooms: bool = False, ray: bool = False) -> None:
    """Stop with the install line (MissingExtraError) before any work if a needed extra is missing."""
    if rooms:
        from ..acoustics import require_pyroomacoustics
        require_pyroomacoustics()
    if ray:
        from ..runner.scale import require_ray
        require_ray()


def default_out(kind: str, parts: list) -> Path:
    key = json.dumps(parts, default=str)
    return Path("robustaudio-runs") / f"{kind}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"

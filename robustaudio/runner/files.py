"""The run directory: ``run.json`` (settings, seed, versions, command), opened or re-opened for resume."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from .. import versions
from ..records import (
    RECORDS_FILE,
    SANITY_FILE,
    WARNINGS_FILE,
    make_folder,
    read_records,
    read_run_json,
    write_json_atomic,
)

RUN_FILE = "run.json"
UNIVERSAL_FILE = "universal.pt"


class RunSettingsError(ValueError):
    """The run directory holds a run with other settings, or the settings cannot run together."""


def open_run(run_dir: str | Path, settings: dict, restart: bool = False) -> Path:
    """Create or re-open ``run_dir`` for ``settings``; refuse a mismatch unless ``restart``, or unless the run
    there finished no batch (one refused before any work, e.g. an impossible budget, must not block the
    corrected command)."""
    run_dir = Path(run_dir)
    meta_path = run_dir / RUN_FILE
    if meta_path.exists() and not restart:
        previous = read_run_json(run_dir)["settings"]
        if previous != settings and len(read_records(run_dir)):
            changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
            raise RunSettingsError(
                f"{run_dir} holds a run with other settings (differs in: {', '.join(changed)}). "
                f"Use another --out, or pass --restart to discard it and start over.")
        restart = previous != settings  # that run finished no batch: nothing of it is lost
    if meta_path.exists() and restart:
        for name in (RECORDS_FILE, RUN_FILE, WARNINGS_FILE, SANITY_FILE, UNIVERSAL_FILE):
            (run_dir / name).unlink(missing_ok=True)
    make_folder(run_dir)
    if not meta_path.exists():
        write_json_atomic(meta_path, {"settings": settings, "versions": versions(), "command": sys.argv,
                                      "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=2)
    return run_dir

"""The run folder: its name, creation, the files in it, and finding what to resume from.

Every file the trainer writes here goes through ``atomic_write``: it is written to a temporary
file in the same folder, flushed to disk, then renamed over its final name, so a reader (or a
resumed run) sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from .config import ConfigError, ResolvedConfig, TrainConfig, build_config, is_recipe_file
from .runlog import METRICS

CONFIG = "config.json"
LAST = "last.pth"
BEST_PREFIX = "best-"
PRE_DISTILL = "pre-distill.pth"
RUNS = Path("runs")


class OutputError(ConfigError):
    """The run folder cannot be used (unwritable, or holds another run)."""


# --------------------------------------------------------------------------------------------------
# atomic writes
# --------------------------------------------------------------------------------------------------


def atomic_write(path: Path, write) -> None:
    """Call ``write(file_object)`` on a temporary file next to ``path``, then rename it into place."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes private files; a run folder is ordinary output
        with os.fdopen(fd, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_folder(path.parent)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself durable; not every platform can open a folder.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_copy(source: Path, target: Path) -> None:
    def write(stream):
        with open(source, "rb") as src:
            shutil.copyfileobj(src, stream)

    atomic_write(target, write)


# --------------------------------------------------------------------------------------------------
# the files in a run folder
# --------------------------------------------------------------------------------------------------


def best_name(epoch: int, top1: float) -> str:
    return f"{BEST_PREFIX}epoch{epoch:04d}-top1-{top1:.3f}.pth"


def write_config(run_dir: Path, resolved: ResolvedConfig) -> None:
    from .config import to_json

    text = to_json(resolved) + "\n"
    atomic_write(run_dir / CONFIG, lambda stream: stream.write(text.encode()))


def find_resume_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run folder (``last.pth``, else the newest best/pre-distill)."""
    last = run_dir / LAST
    if last.is_file():
        return last
    candidates = [p for p in run_dir.glob("*.pth") if p.is_file()]
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


# --------------------------------------------------------------------------------------------------
# naming, choosing and creating the folder
# --------------------------------------------------------------------------------------------------


def _run_name(config: TrainConfig) -> str:
    name = config.recipe if config.recipe and not is_recipe_file(config.recipe) else config.model
    return Path(name).stem


def default_run_dir(config: TrainConfig) -> Path:
    return RUNS / f"{_run_name(config)}-{time.strftime('%Y%m%d-%H%M%S')}"


def latest_run_dir(config: TrainConfig) -> Path | None:
    """For ``--resume auto`` without ``--output``: the newest runs/<name>-* folder with a checkpoint."""
    candidates = [p for p in RUNS.glob(f"{_run_name(config)}-*") if find_resume_checkpoint(p)]
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


def choose_run_dir(config: TrainConfig) -> tuple[Path, Path | None]:
    """(run folder, checkpoint to resume from or None) for the launch ``config`` describes."""
    if config.resume is None:
        return (Path(config.output) if config.output else default_run_dir(config)), None
    if config.resume == "auto":
        run_dir = Path(config.output) if config.output else latest_run_dir(config)
        if run_dir is None:
            raise ConfigError("--resume auto: no run folder to resume under runs/; pass --output RUN_FOLDER")
        found = find_resume_checkpoint(run_dir) if run_dir.is_dir() else None
        if found is None:
            print(f"--resume auto: no checkpoint in {run_dir} yet; starting from the beginning")
        return run_dir, found
    path = Path(config.resume)
    if not path.is_file():
        raise ConfigError(f"--resume: no checkpoint file {path}")
    return (Path(config.output) if config.output else path.parent), path


def prepare_run_dir(run_dir: Path, resuming: bool) -> list[Path]:
    """Create the run folder and prove it writable; refuse to overwrite another run's checkpoints.

    Returns the folders this call created (innermost first), for ``remove_if_empty`` after a failure.
    """
    created = []
    folder = run_dir
    while not folder.exists() and folder != folder.parent:
        created.append(folder)
        folder = folder.parent
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        remove_if_empty(created)
        raise OutputError(f"--output: cannot write to the run folder {run_dir}: {err.strerror or err}") from None
    if not resuming and (any(run_dir.glob("*.pth")) or (run_dir / METRICS).exists()):
        raise OutputError(
            f"--output: {run_dir} already holds a run; continue it with --resume auto or choose a new --output folder"
        )
    return created


def remove_if_empty(created: list[Path]) -> None:
    """Remove the folders a failed launch created, as long as nothing was written into them."""
    for folder in created:
        try:
            folder.rmdir()
        except OSError:
            return  # not empty (or already gone): leave it and everything above it


# --------------------------------------------------------------------------------------------------
# resuming
# --------------------------------------------------------------------------------------------------


def saved_config_for_resume(config_overrides: dict[str, Any]) -> dict[str, Any] | None:
    """The settings a run was started with, so ``--resume`` needs no repeat of the original command
    line: from the checkpoint, or from config.json when the run was killed before its first one."""
    from .checkpoint import read_training_checkpoint

    resume = config_overrides.get("resume")
    if not resume:
        return None
    if resume == "auto":
        output = config_overrides.get("output")
        if output:
            run_dir: Path | None = Path(output)
        else:
            run_dir = latest_run_dir(build_config({k: v for k, v in config_overrides.items() if k != "resume"}))
        if run_dir is None or not run_dir.is_dir():
            return None
        path = find_resume_checkpoint(run_dir)
        if path is None:
            saved = run_dir / CONFIG
            if saved.is_file():
                try:
                    return json.loads(saved.read_text())
                except json.JSONDecodeError as err:
                    raise ConfigError(f"--resume auto: {saved} is not valid JSON ({err})") from None
            return None
    else:
        path = Path(resume) if Path(resume).is_file() else None
    if path is None:
        return None
    return read_training_checkpoint(path, "--resume").get("config")

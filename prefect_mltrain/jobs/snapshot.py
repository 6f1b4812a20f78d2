"""Snapshot a source directory for a job: honour an ignore file, refuse one that is too big."""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pathspec

from prefect_mltrain.errors import ConfigurationError, SnapshotTooLargeError

# Azure ML reads .amlignore first and .gitignore when there is none; so do we.
IGNORE_FILES = (".amlignore", ".gitignore")
ALWAYS_IGNORED = [".git/", "__pycache__/", "*.pyc", ".venv/", ".mltrain-home/"]


@dataclass(frozen=True)
class Snapshot:
    """A copy of a source directory."""

    path: str
    files: int
    bytes: int
    fingerprint: str


def _ignore_spec(source: Path, ignore_file: str | None) -> pathspec.PathSpec:
    lines = list(ALWAYS_IGNORED)
    candidates = [ignore_file] if ignore_file else list(IGNORE_FILES)
    for name in candidates:
        path = source / name
        if path.is_file():
            lines += path.read_text().splitlines()
            break
        if ignore_file:
            raise ConfigurationError(
                f"`ignore_file`={ignore_file!r} does not exist in '{source}'. Fix: create it, "
                f"or leave `ignore_file` empty to use .amlignore or .gitignore."
            )
    return pathspec.GitIgnoreSpec.from_lines(lines)


def list_source_files(source: Path, ignore_file: str | None = None) -> list[tuple[str, int]]:
    """The files a snapshot of `source` takes, as (relative path, size) pairs, sorted."""
    spec = _ignore_spec(source, ignore_file)
    files: list[tuple[str, int]] = []
    for root, dirs, names in os.walk(source):
        rel_root = os.path.relpath(root, source)
        rel_root = "" if rel_root == "." else rel_root + "/"
        dirs[:] = [d for d in dirs if not spec.match_file(rel_root + d + "/")]
        for name in names:
            rel = rel_root + name
            if not spec.match_file(rel):
                files.append((rel, os.path.getsize(os.path.join(root, name))))
    return sorted(files)


def snapshot_source(
    source_dir: str | Path, destination: str | Path, max_mb: float, ignore_file: str | None = None
) -> Snapshot:
    """Copy `source_dir` to `destination`, leaving out what the ignore file names.

    Args:
        source_dir: The job's source directory.
        destination: A new folder for the copy.
        max_mb: Largest allowed total size in MB.
        ignore_file: Name of the ignore file in `source_dir`; `.amlignore`, else `.gitignore`.

    Raises:
        SnapshotTooLargeError: Over `max_mb`; the message names the biggest files. Nothing is copied.
    """
    source = Path(source_dir).resolve()
    files = list_source_files(source, ignore_file)
    total = sum(size for _, size in files)
    if total > max_mb * 1e6:
        biggest = sorted(files, key=lambda f: -f[1])[:5]
        listed = ", ".join(f"{rel} ({size / 1e6:.1f} MB)" for rel, size in biggest)
        raise SnapshotTooLargeError(
            f"The source directory '{source}' holds {total / 1e6:.1f} MB in {len(files)} files, "
            f"over the snapshot limit of {max_mb:g} MB. Biggest: {listed}. Fix: list data and "
            f"checkpoints in {source / '.amlignore'} (read data from an input path instead), or "
            f"raise the limit with PREFECT_MLTRAIN_SNAPSHOT_MAX_MB."
        )
    dest = Path(destination)
    digest = hashlib.sha256()
    for rel, _ in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / rel, target)
        digest.update(rel.encode() + b"\0" + (source / rel).read_bytes() + b"\0")
    dest.mkdir(parents=True, exist_ok=True)
    return Snapshot(str(dest), len(files), total, digest.hexdigest())

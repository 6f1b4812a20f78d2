"""Snapshot a source directory for a job: honour an ignore file, refuse one that is too big.

A snapshot is packed once per content (`pack_source`) and unpacked where the job runs
(`materialize`): on the flow's machine from its cache, on any other worker from the MLflow
artifact the flow uploaded it to, so workers need no filesystem shared with the flow.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import pathspec

from prefect_mltrain.errors import ConfigurationError, SnapshotTooLargeError
from prefect_mltrain.settings import MltrainSettings
from prefect_mltrain.system.files import exclusive

# Azure ML reads .amlignore first and .gitignore when there is none; so do we.
IGNORE_FILES = (".amlignore", ".gitignore")
ALWAYS_IGNORED = [".git/", "__pycache__/", "*.pyc", ".venv/", ".mltrain-home/"]


@dataclass(frozen=True)
class SnapshotRef:
    """A source snapshot, named by its content: what travels to the workers that run a job.

    The archive itself (`<fingerprint>.tar.gz`) sits in the snapshot cache of the machine that
    packed it; a worker whose own cache lacks it downloads it from `artifact_uri` (the MLflow
    artifact the flow uploaded it to) once, and every later job of the same code finds it there.

    Attributes:
        fingerprint: SHA-256 over the files' paths and contents.
        files: How many files it holds.
        bytes: Their total size.
        artifact_uri: Where a worker without it gets it (`runs:/<run id>/snapshot/<fingerprint>.tar.gz`);
            None when every worker shares the packing machine's cache.
    """

    fingerprint: str
    files: int
    bytes: int
    artifact_uri: str | None = None


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


def pack_source(
    source_dir: str | Path, max_mb: float, ignore_file: str | None = None, cache_dir: Path | None = None
) -> SnapshotRef:
    """Pack `source_dir` (less what the ignore file names) into the snapshot cache, once per content.

    Args:
        source_dir: The job's source directory.
        max_mb: Largest allowed total size in MB.
        ignore_file: Name of the ignore file in `source_dir`; `.amlignore`, else `.gitignore`.
        cache_dir: The snapshot cache; the project home's `snapshots/` when None.

    Raises:
        SnapshotTooLargeError: Over `max_mb`; the message names the biggest files. Nothing is packed.
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
    digest = hashlib.sha256()
    for rel, _ in files:
        digest.update(rel.encode() + b"\0" + (source / rel).read_bytes() + b"\0")
    ref = SnapshotRef(digest.hexdigest(), len(files), total)
    archive = archive_path(ref.fingerprint, cache_dir)
    if not archive.exists():
        tmp = archive.with_name(f"{archive.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        archive.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tmp, "w:gz", compresslevel=1) as tar:
            for rel, _ in files:
                tar.add(source / rel, arcname=rel, recursive=False, filter=_reproducible)
        os.replace(tmp, archive)  # complete whenever it exists
    return ref


def _reproducible(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def archive_path(fingerprint: str, cache_dir: Path | None = None) -> Path:
    """Where the snapshot cache keeps the archive of `fingerprint`."""
    return (cache_dir or MltrainSettings().home_dir / "snapshots") / f"{fingerprint}.tar.gz"


def materialize(
    ref: SnapshotRef, destination: Path, tracking_uri: str | None = None, cache_dir: Path | None = None
) -> Path:
    """Unpack the snapshot `ref` into `destination` (once: processes of one job on a machine share it).

    The archive comes from this machine's snapshot cache, or is downloaded into it from
    `ref.artifact_uri` through MLflow (`tracking_uri`) when the cache lacks it.

    Raises:
        ConfigurationError: The cache lacks it and it has no `artifact_uri` to come from.
    """
    done = destination / ".mltrain-snapshot"
    if done.exists():
        return destination
    archive = archive_path(ref.fingerprint, cache_dir)
    with exclusive(destination.parent / f"{destination.name}.lock"):
        if done.exists():
            return destination
        if not archive.exists():
            _download(ref, archive, tracking_uri)
        shutil.rmtree(destination, ignore_errors=True)  # a half-unpacked copy of a dead process
        destination.mkdir(parents=True)
        with tarfile.open(archive, "r:gz") as tar:
            # The data filter (Python 3.11.4+, 3.10.12+) where the worker's Python has it: our own archive.
            if hasattr(tarfile, "data_filter"):
                tar.extractall(destination, filter="data")
            else:
                tar.extractall(destination)  # noqa: S202 - our own archive, packed by pack_source
        done.write_text(ref.fingerprint)
    return destination


def _download(ref: SnapshotRef, archive: Path, tracking_uri: str | None) -> None:
    if ref.artifact_uri is None:
        raise ConfigurationError(
            f"The job's source snapshot {ref.fingerprint[:12]} is not in this worker's cache "
            f"({archive.parent}) and has no artifact to download it from. Fix: run the job through "
            f"`train_job`/`sweep`, which upload it for workers on other machines."
        )
    import mlflow.artifacts

    with tempfile.TemporaryDirectory(dir=archive.parent.parent if archive.parent.exists() else None) as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=ref.artifact_uri, dst_path=tmp, tracking_uri=tracking_uri
        )
        archive.parent.mkdir(parents=True, exist_ok=True)
        os.replace(local, archive)

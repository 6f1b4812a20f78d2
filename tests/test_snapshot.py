"""Source snapshots: ignore files, the size limit, fingerprints, the content-addressed cache."""

import pytest

from prefect_mltrain.errors import ConfigurationError, SnapshotTooLargeError
from prefect_mltrain.jobs.snapshot import SnapshotRef, archive_path, materialize, pack_source

pytestmark = pytest.mark.unit


def _tree(root, files):
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def test_amlignore_wins_over_gitignore(tmp_path):
    src = _tree(
        tmp_path / "src",
        {
            "train.py": b"print(1)",
            "data/big.csv": b"x" * 10,
            "notes.md": b"n",
            ".amlignore": b"data/\n",
            ".gitignore": b"notes.md\n",
            ".git/HEAD": b"ref",
        },
    )
    snap = materialize(
        pack_source(src, max_mb=1, cache_dir=tmp_path / "cache"), tmp_path / "snap", cache_dir=tmp_path / "cache"
    )
    copied = sorted(p.relative_to(tmp_path / "snap").as_posix() for p in (tmp_path / "snap").rglob("*") if p.is_file())
    assert copied == [".amlignore", ".gitignore", ".mltrain-snapshot", "notes.md", "train.py"]
    assert snap == tmp_path / "snap"


def test_named_ignore_file_must_exist(tmp_path):
    src = _tree(tmp_path / "src", {"train.py": b""})
    with pytest.raises(ConfigurationError, match="'.myignore' does not exist"):
        pack_source(src, max_mb=1, ignore_file=".myignore", cache_dir=tmp_path / "cache")


def test_too_large_names_biggest_files_and_packs_nothing(tmp_path):
    src = _tree(tmp_path / "src", {"train.py": b"", "weights.bin": b"0" * 2_000_000, "small.txt": b"1" * 1000})
    with pytest.raises(SnapshotTooLargeError) as err:
        pack_source(src, max_mb=1, cache_dir=tmp_path / "cache")
    message = str(err.value)
    assert "weights.bin (2.0 MB)" in message and "limit of 1 MB" in message
    assert ".amlignore" in message and "PREFECT_MLTRAIN_SNAPSHOT_MAX_MB" in message
    assert not (tmp_path / "cache").exists()


def test_fingerprint_follows_content(tmp_path):
    src = _tree(tmp_path / "src", {"train.py": b"a"})
    first = pack_source(src, max_mb=1, cache_dir=tmp_path / "cache").fingerprint
    assert pack_source(src, max_mb=1, cache_dir=tmp_path / "cache").fingerprint == first
    (src / "train.py").write_bytes(b"b")
    assert pack_source(src, max_mb=1, cache_dir=tmp_path / "cache").fingerprint != first


def test_one_archive_per_content_and_executable_bits_kept(tmp_path):
    src = _tree(tmp_path / "src", {"run.sh": b"#!/bin/sh\necho hi\n", "pkg/mod.py": b"x = 1\n"})
    (src / "run.sh").chmod(0o755)
    ref = pack_source(src, max_mb=1, cache_dir=tmp_path / "cache")
    archive = archive_path(ref.fingerprint, tmp_path / "cache")
    made = archive.stat().st_mtime_ns
    assert pack_source(src, max_mb=1, cache_dir=tmp_path / "cache") == ref  # packed once
    assert archive.stat().st_mtime_ns == made and list((tmp_path / "cache").iterdir()) == [archive]
    out = materialize(ref, tmp_path / "run" / "snapshot", cache_dir=tmp_path / "cache")
    assert (out / "pkg" / "mod.py").read_text() == "x = 1\n" and (out / "run.sh").stat().st_mode & 0o111


def test_a_snapshot_missing_here_and_with_nowhere_to_come_from_is_refused(tmp_path):
    ref = SnapshotRef("0" * 64, files=1, bytes=1)
    with pytest.raises(ConfigurationError, match="not in this worker's cache") as err:
        materialize(ref, tmp_path / "snapshot", cache_dir=tmp_path / "cache")
    assert "000000000000" in str(err.value) and not (tmp_path / "snapshot").exists()

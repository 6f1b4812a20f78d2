"""Source snapshots: ignore files, the size limit, fingerprints."""

import pytest

from prefect_mltrain.errors import ConfigurationError, SnapshotTooLargeError
from prefect_mltrain.jobs.snapshot import snapshot_source

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
    snap = snapshot_source(src, tmp_path / "snap", max_mb=1)
    copied = sorted(p.relative_to(tmp_path / "snap").as_posix() for p in (tmp_path / "snap").rglob("*") if p.is_file())
    assert copied == [".amlignore", ".gitignore", "notes.md", "train.py"]
    assert snap.files == 4


def test_named_ignore_file_must_exist(tmp_path):
    src = _tree(tmp_path / "src", {"train.py": b""})
    with pytest.raises(ConfigurationError, match="'.myignore' does not exist"):
        snapshot_source(src, tmp_path / "snap", max_mb=1, ignore_file=".myignore")


def test_too_large_names_biggest_files_and_copies_nothing(tmp_path):
    src = _tree(tmp_path / "src", {"train.py": b"", "weights.bin": b"0" * 2_000_000, "small.txt": b"1" * 1000})
    with pytest.raises(SnapshotTooLargeError) as err:
        snapshot_source(src, tmp_path / "snap", max_mb=1)
    message = str(err.value)
    assert "weights.bin (2.0 MB)" in message and "limit of 1 MB" in message
    assert ".amlignore" in message and "PREFECT_MLTRAIN_SNAPSHOT_MAX_MB" in message
    assert not (tmp_path / "snap").exists()


def test_fingerprint_follows_content(tmp_path):
    src = _tree(tmp_path / "src", {"train.py": b"a"})
    first = snapshot_source(src, tmp_path / "s1", max_mb=1).fingerprint
    assert snapshot_source(src, tmp_path / "s2", max_mb=1).fingerprint == first
    (src / "train.py").write_bytes(b"b")
    assert snapshot_source(src, tmp_path / "s3", max_mb=1).fingerprint != first

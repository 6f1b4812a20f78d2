"""Time from `prefect-mltrain job run job.yml` to the script's first output line, vs the script alone.

    python benchmarks/job_first_line.py [--repeats 3]

Both are started as a user starts them, as new processes, alternating; the server is running
and the environment cached (a warm-up run first). Target: under 3 s to the first line.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
MARKER = "FIRST-LINE"


def time_to_line(argv: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if MARKER in line:
            elapsed = time.perf_counter() - started
            break
    else:
        raise RuntimeError(f"{argv} never printed {MARKER}")
    proc.stdout.read()
    proc.wait()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from _stack import local_stack

    with local_stack():
        work = Path(tempfile.mkdtemp())
        (work / "src").mkdir()
        (work / "src" / "train.py").write_text(f"print('{MARKER}', flush=True)\nimport time; time.sleep(0.5)\n")
        (work / "job.yml").write_text("type: command\ncode: src\ncommand: python train.py\n")
        cli = [str(Path(sys.executable).with_name("prefect-mltrain")), "job", "run", str(work / "job.yml")]
        direct_argv = [sys.executable, "train.py"]
        time_to_line(cli, work)  # warm-up: MLflow store, environment cache
        direct, job = [], []
        for _ in range(args.repeats):
            direct.append(time_to_line(direct_argv, work / "src"))
            job.append(time_to_line(cli, work))
        d, j = statistics.median(direct), statistics.median(job)
        print(f"direct script to first line:           {d:6.2f} s")
        print(f"prefect-mltrain job run to first line: {j:6.2f} s  (+{j - d:.2f} s, {j / d:.1f}x; target < 3 s)")


if __name__ == "__main__":
    main()

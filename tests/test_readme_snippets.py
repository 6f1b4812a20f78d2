"""The README's Python snippets run verbatim as scripts, on a machine with no Prefect profile.

Each runs in a fresh process with no `PREFECT_API_URL` and an empty `PREFECT_HOME`, in a
project home of its own: the first flow call must find (here: start) the embedded server, as
the CLI does, never Prefect's temporary server. Snippets that need what a test machine lacks
(image folders, a GPU box, a remote cluster, files of the user's) are named in SKIPPED with why.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from prefect_mltrain.system.net import free_port

ROOT = Path(__file__).resolve().parents[1]
SNIPPETS = re.findall(r"```python\n(.*?)\n```", (ROOT / "README.md").read_text(), flags=re.S)
SKIPPED = {
    "TrainingEnvironment(pip_requirements_file=": "a list of constructors naming the user's own files",
    'train_pytorch_model(\n    "data/train"': "needs image folders and the `gpu-box` compute block",
    'compute="gpu-cluster"': "needs the user's `gpu-cluster` compute block and train_ddp.py",
    "DockerRegistryCredentials(": "prefect-docker's own block, saved with PREFECT_API_URL set (the README says so)",
}


def _why_skipped(snippet: str) -> str | None:
    return next((why for marker, why in SKIPPED.items() if marker in snippet), None)


@pytest.fixture(scope="module")
def bare_machine(tmp_path_factory):
    """The environment of a new user's shell: no Prefect API, no profile, a project home of its own."""
    base = tmp_path_factory.mktemp("bare")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "MLTRAIN_"))}
    env |= {
        "PREFECT_HOME": str(base / "prefect-profile"),
        "PREFECT_MLTRAIN_HOME": str(base / "home"),
        "PREFECT_MLTRAIN_SERVER_PORT": str(free_port()),
        "PREFECT_MLTRAIN_MLFLOW_PORT": str(free_port()),
    }
    yield env
    exe = Path(sys.executable).with_name("prefect-mltrain")
    subprocess.run([str(exe), "server", "stop"], env=env, capture_output=True, timeout=60)


def test_every_snippet_is_run_or_skipped_for_a_reason():
    assert len(SNIPPETS) >= 5
    assert all(any(marker in s for s in SNIPPETS) for marker in SKIPPED), "a SKIPPED marker matches nothing"


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_readme_snippet_runs_as_a_script(index, bare_machine, tmp_path):
    snippet = SNIPPETS[index]
    if why := _why_skipped(snippet):
        pytest.skip(why)
    script = tmp_path / f"snippet_{index}.py"
    script.write_text(snippet + "\n")
    out = subprocess.run(
        [sys.executable, str(script)], cwd=ROOT, env=bare_machine, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, f"{snippet}\n---\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}"
    assert "temporary server" not in out.stdout + out.stderr
    if "flows import" in snippet:  # it ran on the embedded server of its project home
        assert (Path(bare_machine["PREFECT_MLTRAIN_HOME"]) / "prefect-server.json").exists()

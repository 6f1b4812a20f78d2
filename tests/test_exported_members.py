"""Public names live in one place: each package's `__all__` is sorted and complete."""

import importlib
import subprocess
import sys

import pytest

PACKAGES = ["prefect_mltrain", "prefect_mltrain.blocks", "prefect_mltrain.tasks", "prefect_mltrain.flows"]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_and_importable(name):
    module = importlib.import_module(name)
    assert module.__all__ == sorted(module.__all__)
    for member in module.__all__:
        assert getattr(module, member) is not None


@pytest.mark.parametrize("name", ["prefect_mltrain.blocks", "prefect_mltrain.tasks", "prefect_mltrain.flows"])
def test_all_lists_every_public_member(name):
    module = importlib.import_module(name)
    public = {
        n for n, v in vars(module).items() if not n.startswith("_") and getattr(v, "__module__", "").startswith(name)
    }
    assert public <= set(module.__all__)


def test_import_is_light():
    """`import prefect_mltrain` (and its blocks) must not import mlflow, torch, dask or CUDA."""
    code = (
        "import sys, prefect_mltrain; prefect_mltrain.DaskCompute; "
        "print(sorted(m for m in ('mlflow', 'torch', 'distributed', 'dask_cuda', 'sklearn', 'optuna', 'docker') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_stack_does_not_import_prefect():
    """The CLI points Prefect at a server before Prefect reads its settings."""
    code = "import sys, prefect_mltrain.server.stack, prefect_mltrain.cli; print('prefect' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_blocks_register_with_prefect_cli():
    out = subprocess.run(
        [sys.executable, "-m", "prefect", "block", "register", "-m", "prefect_mltrain"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    for name in ("Dask Compute", "MLflow Tracking", "Registered Model", "Training Environment"):
        assert name in out.stdout

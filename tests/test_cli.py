"""The README's main job: `prefect-mltrain demo`, run as a user runs it."""

import os
import subprocess
import sys
from pathlib import Path


def test_demo_trains_registers_and_says_where_to_look(unique_name):
    exe = Path(sys.executable).with_name("prefect-mltrain")
    out = subprocess.run(
        [str(exe), "demo", "--model-name", unique_name], capture_output=True, text=True, env=os.environ, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"Registered model: block '{unique_name}-v1' (alias '{unique_name}')" in out.stdout
    assert "Prefect UI:  http://127.0.0.1:" in out.stdout and "/runs/flow-run/" in out.stdout
    assert "mlflow ui --backend-store-uri sqlite:///" in out.stdout
    from prefect_mltrain.blocks import RegisteredModel

    assert RegisteredModel.load(unique_name).metrics["accuracy"] > 0.9


def test_cli_reports_user_errors_in_one_line(unique_name):
    exe = Path(sys.executable).with_name("prefect-mltrain")
    out = subprocess.run(
        [str(exe), "demo", "--model-name", "Bad Name"], capture_output=True, text=True, env=os.environ, timeout=300
    )
    assert out.returncode != 0
    assert "must be lowercase letters and digits" in out.stderr

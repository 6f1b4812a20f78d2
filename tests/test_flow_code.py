"""The warm workers adopt a flow's code: its import paths, its folder, fresh user modules."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from prefect_mltrain.compute.flow_code import adopt_flow_code, user_code_paths
from prefect_mltrain.compute.warm import sizing
from prefect_mltrain.settings import MltrainSettings

pytestmark = pytest.mark.unit


def test_an_edited_user_module_is_imported_afresh_and_installed_ones_are_kept(tmp_path: Path) -> None:
    (tmp_path / "mltrain_probe_mod.py").write_text("VALUE = 1\n")
    saved_path, saved_cwd = list(sys.path), os.getcwd()
    try:
        assert adopt_flow_code([str(tmp_path)], str(tmp_path)) == []
        import mltrain_probe_mod

        assert mltrain_probe_mod.VALUE == 1 and os.getcwd() == str(tmp_path)
        (tmp_path / "mltrain_probe_mod.py").write_text("VALUE = 2\n")
        forgotten = adopt_flow_code([str(tmp_path)], str(tmp_path))
        assert forgotten == ["mltrain_probe_mod"]  # pytest, optuna, this package: kept
        import mltrain_probe_mod as again

        assert again.VALUE == 2
    finally:
        sys.path[:] = saved_path
        sys.modules.pop("mltrain_probe_mod", None)
        os.chdir(saved_cwd)


def test_user_code_paths_leave_out_the_python_installation(tmp_path: Path) -> None:
    assert user_code_paths(["", sys.prefix, str(tmp_path), str(tmp_path)], cwd=str(tmp_path)) == [
        os.path.realpath(tmp_path)
    ]


def test_the_warm_cluster_has_one_single_threaded_worker_per_core_unless_told() -> None:
    assert sizing(MltrainSettings(warm_workers=0, warm_threads=1))[0] == len(os.sched_getaffinity(0))
    assert sizing(MltrainSettings(warm_workers=3, warm_threads=2)) == (3, 2)

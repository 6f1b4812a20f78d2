"""DaskCompute: resolving, reaching and choosing clusters."""

import logging
import time

import pytest
from pydantic import ValidationError

from prefect_mltrain.blocks import DaskCompute
from prefect_mltrain.blocks._load import resolve_block
from prefect_mltrain.blocks.compute import LOCAL_CLUSTER, visible_gpu_count
from prefect_mltrain.errors import ComputeError, ConfigurationError
from prefect_mltrain.system.net import free_port


def test_unknown_compute_name_lists_saved_ones(unique_name):
    DaskCompute(address="tcp://127.0.0.1:8786").save(f"{unique_name}-saved")
    with pytest.raises(ConfigurationError) as err:
        resolve_block(f"{unique_name}-typo", DaskCompute, "compute")
    assert f"'{unique_name}-typo' names no saved DaskCompute" in str(err.value)
    assert f"'{unique_name}-saved'" in str(err.value)
    assert resolve_block(f"{unique_name}-saved", DaskCompute, "compute").address == "tcp://127.0.0.1:8786"


def test_unreachable_scheduler_fails_fast_with_fix():
    compute = DaskCompute(address=f"tcp://127.0.0.1:{free_port()}", connect_timeout=2)
    started = time.perf_counter()
    with pytest.raises(ComputeError, match=r"cannot be reached .* Fix: start it \(`dask scheduler"):
        compute.task_runner()
    assert time.perf_counter() - started < 3


def test_malformed_address_is_refused():
    with pytest.raises(ValidationError, match="must look like 'tcp://HOST:PORT'"):
        DaskCompute(address="localhost")


def test_unimportable_cluster_class(monkeypatch):
    with pytest.raises(ConfigurationError, match="cannot be imported"):
        DaskCompute(cluster_class="no_such_pkg.Cluster", reuse_cluster=False).task_runner()


def test_auto_and_cuda_fall_back_to_local_cluster_without_gpu(monkeypatch, caplog):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert DaskCompute().resolved_cluster_class() == LOCAL_CLUSTER
    with caplog.at_level(logging.WARNING, logger="prefect_mltrain.compute"):
        assert DaskCompute(cluster_class="dask_cuda.LocalCUDACluster").resolved_cluster_class() == LOCAL_CLUSTER
    assert "no GPU is visible" in caplog.text


def test_auto_without_dask_cuda_hints_the_extra(monkeypatch, caplog):
    import sys

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setitem(sys.modules, "dask_cuda", None)
    with caplog.at_level(logging.WARNING, logger="prefect_mltrain.compute"):
        assert DaskCompute().resolved_cluster_class() == LOCAL_CLUSTER
    assert "prefect-mltrain[gpu]" in caplog.text


def test_gpu_count_follows_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    assert visible_gpu_count() == 3
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert visible_gpu_count() == 0
    assert DaskCompute(gpus_per_trial=1).worker_resources() == {"GPU": 1}


def test_shared_cluster_is_reused(compute):
    first = compute.task_runner()
    second = compute.task_runner()
    assert first.address == second.address

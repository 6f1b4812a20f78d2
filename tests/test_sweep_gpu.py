"""GPU pinning logic, tested on CPU: device parsing, per-worker allocation, CUDA_VISIBLE_DEVICES."""

from __future__ import annotations

import doctest

import pytest

from prefect_mltrain.compute import devices as gpu
from prefect_mltrain.compute.devices import GpuAllocator, cuda_env, devices_needed, visible_devices, worker_allocator

pytestmark = pytest.mark.unit


def test_doctests():
    assert doctest.testmod(gpu).failed == 0


def test_concurrent_trials_get_distinct_devices_while_free():
    alloc = GpuAllocator(visible_devices({"CUDA_VISIBLE_DEVICES": "4,5,6,7"}))
    a, b = alloc.acquire(devices_needed(2)), alloc.acquire(devices_needed(2))
    assert a == ["4", "5"] and b == ["6", "7"]
    alloc.release(a)
    assert alloc.acquire(1) == ["4"]
    assert cuda_env(b) == {"CUDA_VISIBLE_DEVICES": "6,7"}


def test_fractional_trials_share_a_device():
    alloc = GpuAllocator(["0"])
    assert alloc.acquire(devices_needed(0.5)) == ["0"] and alloc.acquire(devices_needed(0.5)) == ["0"]


def test_no_gpu_means_no_pinning():
    alloc = worker_allocator({"CUDA_VISIBLE_DEVICES": ""}, count=0)
    assert alloc.acquire(devices_needed(0)) == [] and alloc.acquire(1) == []
    assert cuda_env([]) == {}


def test_one_allocator_per_process_and_device_set():
    env = {"CUDA_VISIBLE_DEVICES": "0,1"}
    assert worker_allocator(env, 0) is worker_allocator(env, 0)

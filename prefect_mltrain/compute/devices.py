"""Pin each trial to its own GPUs on a Dask worker: pure functions, testable without a GPU.

Dask's `resources={"GPU": n}` only counts GPUs; it does not say *which* device a task may
use. Each worker process keeps a `GpuAllocator` over the devices it sees, hands a trial the
lowest free ids, and the trial runs with `CUDA_VISIBLE_DEVICES` set to them.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import threading
from collections.abc import Mapping


def visible_devices(env: Mapping[str, str], count: int = 0) -> list[str]:
    """The device ids a process may use: `CUDA_VISIBLE_DEVICES`, else `0..count-1`.

    >>> visible_devices({"CUDA_VISIBLE_DEVICES": "2,3"})
    ['2', '3']
    >>> visible_devices({}, count=2)
    ['0', '1']
    >>> visible_devices({"CUDA_VISIBLE_DEVICES": "-1"})
    []
    """
    raw = env.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return [str(i) for i in range(count)]
    ids = [d.strip() for d in raw.split(",") if d.strip()]
    # CUDA stops at the first invalid id; -1 is the conventional "no GPU".
    out: list[str] = []
    for d in ids:
        if d == "-1":
            break
        out.append(d)
    return out


def visible_gpu_count() -> int:
    """Count the NVIDIA GPUs this process may use, without importing CUDA libraries.

    `CUDA_VISIBLE_DEVICES` wins when set; otherwise `nvidia-smi -L` is asked.

    >>> import os; os.environ["CUDA_VISIBLE_DEVICES"] = "0,1"; visible_gpu_count()
    2
    >>> os.environ["CUDA_VISIBLE_DEVICES"] = ""; visible_gpu_count()
    0
    >>> del os.environ["CUDA_VISIBLE_DEVICES"]
    """
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return len(visible_devices(os.environ))
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def devices_needed(gpus_per_trial: float) -> int:
    """Whole devices a trial pins: fractional requests share one device.

    >>> devices_needed(0), devices_needed(0.5), devices_needed(1), devices_needed(2)
    (0, 1, 1, 2)
    """
    return 0 if gpus_per_trial <= 0 else max(1, math.ceil(gpus_per_trial - 1e-9))


class GpuAllocator:
    """Hands out device ids of one worker to concurrent trials, least-loaded first.

    A fractional `gpus_per_trial` (e.g. 0.5) lets trials share a device, as Dask's resource
    accounting already allows; whole requests get distinct devices while any are free.

    >>> a = GpuAllocator(["0", "1"])
    >>> a.acquire(1), a.acquire(1), a.acquire(1)
    (['0'], ['1'], ['0'])
    >>> a.release(["0"]); a.acquire(2)
    ['0', '1']
    """

    def __init__(self, devices: list[str]) -> None:
        self.devices = list(devices)
        self._load = {d: 0 for d in self.devices}
        self._lock = threading.Lock()

    def acquire(self, n: int) -> list[str]:
        """Reserve `n` devices (the least loaded, lowest id first); [] when `n` is 0 or none exist."""
        if n <= 0 or not self.devices:
            return []
        with self._lock:
            order = sorted(self.devices, key=lambda d: (self._load[d], self.devices.index(d)))
            chosen = sorted(order[: min(n, len(order))], key=self.devices.index)
            for d in chosen:
                self._load[d] += 1
            return chosen

    def release(self, ids: list[str]) -> None:
        """Give back devices from `acquire`."""
        with self._lock:
            for d in ids:
                if self._load.get(d, 0) > 0:
                    self._load[d] -= 1


def cuda_env(ids: list[str]) -> dict[str, str]:
    """The environment that pins a process to `ids` (nothing when no GPU was asked for).

    >>> cuda_env(["1"])
    {'CUDA_VISIBLE_DEVICES': '1'}
    >>> cuda_env([])
    {}
    """
    return {"CUDA_VISIBLE_DEVICES": ",".join(ids)} if ids else {}


_allocators: dict[tuple[str, ...], GpuAllocator] = {}
_allocators_lock = threading.Lock()


def worker_allocator(env: Mapping[str, str], count: int) -> GpuAllocator:
    """The allocator of this process for the devices it sees (one per process)."""
    devices = visible_devices(env, count)
    key = tuple(devices)
    with _allocators_lock:
        if key not in _allocators:
            _allocators[key] = GpuAllocator(devices)
        return _allocators[key]

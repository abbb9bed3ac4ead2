"""Per-device figures of a server: what it holds on each accelerator (GPU), the device's memory,
and its utilisation where NVIDIA's management library (NVML) is present.

A CPU-only server (a CPU build, or no layer offloaded) has no device figures: ``devices`` is
None, not a list of zeros. NVML is optional: it is loaded from the driver's
``libnvidia-ml.so.1`` / ``nvml.dll`` when there, and ``utilization_percent`` is None otherwise.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DeviceMetrics:
    """One accelerator a server uses.

    Attributes:
        name: ggml's device name (``CUDA0``, ``Vulkan0``, ...).
        description: The device's model, as its backend names it.
        pci_bus_id: ``domain:bus:device.function``, or "" when the backend does not say.
        server_bytes: What this server holds on it: weights, KV cache and compute buffers.
        total_bytes: The device's memory (None when the backend does not report it).
        free_bytes: Its free memory now, for every process (None when not reported).
        utilization_percent: GPU busy time over NVML's last sample period (None without NVML).
    """

    name: str
    description: str
    pci_bus_id: str
    server_bytes: int
    total_bytes: int | None
    free_bytes: int | None
    utilization_percent: int | None


class _Utilization(ctypes.Structure):
    _fields_ = [("gpu", ctypes.c_uint), ("memory", ctypes.c_uint)]


class _Nvml:
    """The few NVML calls needed, through ctypes; absent when the library is not installed."""

    _lock = threading.Lock()
    _loaded: _Nvml | None = None
    _tried = False

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib

    @classmethod
    def get(cls) -> _Nvml | None:
        with cls._lock:
            if not cls._tried:
                cls._tried = True
                cls._loaded = cls._load()
            return cls._loaded

    @staticmethod
    def _load() -> _Nvml | None:
        names = ["nvml.dll"] if sys.platform == "win32" else ["libnvidia-ml.so.1", ctypes.util.find_library("nvidia-ml")]
        for name in names:
            if not name:
                continue
            try:
                lib = ctypes.CDLL(name)
                if lib.nvmlInit_v2() == 0:
                    return _Nvml(lib)
            except (OSError, AttributeError):
                continue
        return None

    def utilization(self, pci_bus_id: str) -> int | None:
        handle = ctypes.c_void_p()
        if self.lib.nvmlDeviceGetHandleByPciBusId_v2(pci_bus_id.encode(), ctypes.byref(handle)) != 0:
            return None
        rates = _Utilization()
        if self.lib.nvmlDeviceGetUtilizationRates(handle, ctypes.byref(rates)) != 0:
            return None
        return int(rates.gpu)


def nvml_available() -> bool:
    """Whether NVIDIA's management library could be loaded (utilisation figures need it)."""
    return _Nvml.get() is not None


def device_metrics(raw: Iterable[Mapping[str, Any]] | None) -> tuple[DeviceMetrics, ...] | None:
    """The figures of the devices the native core lists for a server; None when there are none."""
    devices = list(raw or ())
    if not devices:
        return None
    nvml = _Nvml.get()
    out = []
    for d in devices:
        pci = str(d.get("pci_bus_id") or "")
        out.append(DeviceMetrics(
            name=str(d["name"]), description=str(d.get("description", "")), pci_bus_id=pci,
            server_bytes=int(d.get("bytes", 0)),
            total_bytes=int(d["total"]) if "total" in d else None,
            free_bytes=int(d["free"]) if "free" in d else None,
            utilization_percent=nvml.utilization(pci) if nvml is not None and pci else None))
    return tuple(out)


__all__ = ["DeviceMetrics", "device_metrics", "nvml_available"]

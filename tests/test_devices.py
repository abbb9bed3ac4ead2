"""Per-device figures: a CPU-only server reports none (absent, not zero); NVML is optional."""

from __future__ import annotations

from conftest import tiny_config
from llamaproc import LlamaServer
from llamaproc.devices import device_metrics, nvml_available


def test_a_cpu_only_server_reports_no_devices(tiny_model):
    with LlamaServer.start(tiny_config(tiny_model)) as server:
        assert server.metrics().devices is None
        assert server.health_check().devices is None


def test_device_records_become_metrics_with_what_the_backend_reports():
    raw = [{"name": "CUDA0", "description": "Some GPU", "pci_bus_id": "0000:01:00.0", "bytes": 123,
            "free": 1000, "total": 4000},
           {"name": "Vulkan0", "description": "iGPU", "pci_bus_id": "", "bytes": 5}]
    cuda, vulkan = device_metrics(raw)  # type: ignore[misc]
    assert (cuda.name, cuda.server_bytes, cuda.free_bytes, cuda.total_bytes) == ("CUDA0", 123, 1000, 4000)
    assert (vulkan.free_bytes, vulkan.total_bytes, vulkan.utilization_percent) == (None, None, None)
    if not nvml_available():  # no NVIDIA driver here: utilisation is absent, not 0
        assert cuda.utilization_percent is None
    assert device_metrics([]) is None and device_metrics(None) is None

"""onnxruntime providers for a device, and devices when torch is not installed."""
from __future__ import annotations

import pytest

import engine.compute.devices
from engine.compute.devices import Device, resolve_device
from engine.jobs import DeviceError
from engine.compute.onnx_runtime import cuda_available, install_command, providers_for


def test_providers_follow_the_device():
    assert providers_for(Device("cpu")) == ["CPUExecutionProvider"]
    cuda = providers_for(Device("cuda", 1))
    if cuda_available():
        assert cuda == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    else:  # a CPU-only onnxruntime: the CPU serves, it does not fail
        assert cuda == ["CPUExecutionProvider"]


def test_install_command_uses_this_interpreter():
    import sys
    assert install_command("onnxruntime==1.32.0") == \
        f"{sys.executable} -m pip install onnxruntime==1.32.0"


def test_devices_without_torch(monkeypatch):
    monkeypatch.setattr(engine.compute.devices, "torch_module", lambda: None)
    assert resolve_device("cpu") == Device("cpu") and str(Device("cuda", 0)) == "cuda:0"
    assert resolve_device("auto") == Device("cuda" if cuda_available() else "cpu")
    if not cuda_available():
        with pytest.raises(DeviceError, match="onnxruntime's CUDA execution provider"):
            resolve_device("cuda:0")
    with pytest.raises(DeviceError, match="'tpu' is not a device"):
        resolve_device("tpu")

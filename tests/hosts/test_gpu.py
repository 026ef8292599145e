"""Checks that need an NVIDIA GPU: skipped, with the reason, on hosts without one (gpu_host)."""

from __future__ import annotations

import re
import shlex

import pytest
from nodecheck import ALL_REDUCE

from infra.catalog import CATALOG, instance_type

pytestmark = pytest.mark.gpu



def _gpus(host) -> list[dict[str, str]]:
    fields = "name,memory.total,persistence_mode,driver_version"
    out = host.check_output(f"nvidia-smi --query-gpu={fields} --format=csv,noheader,nounits")
    return [dict(zip(fields.split(","), (c.strip() for c in line.split(",")), strict=True))
            for line in out.splitlines()]


def _model_matches(catalog_model: str, gpu: dict[str, str]) -> bool:
    """Catalog 'H100-SXM5-80GB' vs nvidia-smi 'NVIDIA H100 80GB HBM3' with 81559 MiB."""
    family = catalog_model.split("-")[0]
    gib = int(re.search(r"(\d+)GB$", catalog_model).group(1)) if re.search(r"\d+GB$", catalog_model) else None
    memory_ok = gib is None or abs(float(gpu["memory.total"]) / 1024 - gib) / gib < 0.1
    return family in gpu["name"] and memory_ok


def test_gpu_count_and_model_match_catalog(gpu_host, instance_type_name):
    gpus = _gpus(gpu_host)
    assert gpus, "nvidia-smi lists no GPU although one is on the PCI bus"
    name = instance_type_name
    if name:
        wanted = instance_type(name)
        assert len(gpus) == wanted.gpus
        assert all(_model_matches(wanted.gpu_model, g) for g in gpus), (wanted.gpu_model, gpus)
    else:  # no instance type given: the GPUs must still be a model some catalog entry offers
        fits = [t for t in CATALOG.values() if all(_model_matches(t.gpu_model, g) for g in gpus)]
        assert fits and len(gpus) <= max(t.gpus for t in fits), gpus


def test_persistence_mode_on(gpu_host):
    assert {g["persistence_mode"] for g in _gpus(gpu_host)} == {"Enabled"}


def test_persistenced_running(gpu_host):
    assert gpu_host.service("nvidia-persistenced").is_running


def test_driver_branch_and_cuda_compatibility(gpu_host, expect):
    gpus = _gpus(gpu_host)
    assert {g["driver_version"].split(".")[0] for g in gpus} == {expect.driver_branch}
    header = gpu_host.check_output("nvidia-smi")
    supported = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", header)
    assert supported, header[:400]
    wanted = tuple(int(p) for p in str(expect["aidc_cuda_version"]).split("."))
    assert (int(supported.group(1)), int(supported.group(2))) >= wanted, header[:400]


def test_one_process_nccl_all_reduce(gpu_host, request):
    python = request.config.getoption("--aidc-python")
    if gpu_host.run(f"{python} -c 'import torch'").rc != 0:
        pytest.skip(f"torch is not importable by {python} on this host; pass --aidc-python")
    out = gpu_host.run(f"timeout 300 {python} -c {shlex.quote(ALL_REDUCE)}")
    assert out.rc == 0, out.stderr[-2000:]
    assert out.stdout.startswith("nccl "), out.stdout

"""Static contracts of the roles site.yml runs: each is tagged by its name, and every variable in a
role's defaults is documented in that role's README (users read the README, not the YAML)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ANSIBLE = Path(__file__).resolve().parents[3] / "ansible"
SITE = yaml.safe_load((ANSIBLE / "site.yml").read_text())
ROLES = [entry["role"] for entry in SITE[0]["roles"]]


def test_site_runs_every_role_once_tagged_by_its_name():
    on_disk = sorted(p.name for p in (ANSIBLE / "roles").iterdir() if p.is_dir())
    assert sorted(ROLES) == on_disk
    for entry in SITE[0]["roles"]:
        assert entry["tags"] == [entry["role"]], entry


@pytest.mark.parametrize("role", ROLES)
def test_every_default_is_documented_in_the_role_readme(role):
    defaults = yaml.safe_load((ANSIBLE / "roles" / role / "defaults/main.yml").read_text()) or {}
    readme = (ANSIBLE / "roles" / role / "README.md").read_text()
    missing = [name for name in defaults if f"`{name}`" not in readme]
    assert not missing, f"{role}/README.md does not document {missing}"


@pytest.mark.parametrize("role", ROLES)
def test_defaults_are_prefixed_with_the_role_name(role):
    defaults = yaml.safe_load((ANSIBLE / "roles" / role / "defaults/main.yml").read_text()) or {}
    assert all(name.startswith(f"{role}_") for name in defaults), sorted(defaults)


def test_kernel_headers_metapackages_follow_the_installed_kernel_metapackages():
    """nvidia_driver's expression, rendered with Ansible's semantics for `match` and `regex_replace`."""
    import re

    from jinja2 import Environment

    env = Environment()
    env.tests["match"] = lambda value, pattern: re.match(pattern, value) is not None
    env.filters["regex_replace"] = lambda value, pattern, repl="": re.sub(pattern, repl, value)
    variables = yaml.safe_load((ANSIBLE / "roles/nvidia_driver/vars/main.yml").read_text())
    expr = variables["_nvidia_driver_headers_metapackages"]
    installed = ["linux-aws-lts-22.04", "linux-image-aws-lts-22.04", "linux-image-6.8.0-1015-aws",
                 "linux-image-unsigned-6.8.0-1015-aws", "linux-image-extra-virtual", "linux-image-cloud-amd64",
                 "linux-modules-6.8.0-1015-aws", "nvidia-dkms-570"]
    packages = {name: [{"version": "1"}] for name in installed}
    rendered = env.from_string(expr).render(ansible_facts={"packages": packages})
    assert rendered == str(["linux-headers-aws-lts-22.04", "linux-headers-cloud-amd64", "linux-headers-extra-virtual"])


@pytest.mark.parametrize(("pin", "index", "resolved"), [
    ("4.6.0-1", "Version: 1:4.8.2-1\nVersion: 1:4.6.0-1\n", "1:4.6.0-1"),  # epoch-less pin, any epoch
    ("4.6.0-1", "Version: 4.8.2-1\nVersion: 4.6.0-1\n", "4.6.0-1"),
    ("4.6.0-1", "Version: 4.6.0-10\nVersion: 4.6.0-1ubuntu1\n", ""),  # anchored: no prefix matches
    ("1:4.6.0-1", "Version: 2:4.6.0-1\n", ""),  # a pin with an epoch matches exactly
    ("1:4.6.0-1", "Version: 1:4.6.0-1\n", "1:4.6.0-1"),
    ("4.6.0-1", "", ""),  # no repository offers the package
])
def test_dcgm_exporter_pin_resolves_to_the_repository_version(pin, index, resolved):
    """The dcgm role's resolution of the exporter pin, rendered with Ansible's filter semantics."""
    import re

    from jinja2 import Environment

    env = Environment()
    env.filters["regex_findall"] = lambda value, pattern: re.findall(pattern, value)
    env.filters["regex_escape"] = re.escape
    tasks = yaml.safe_load((ANSIBLE / "roles/dcgm/tasks/exporter.yml").read_text())
    task = next(t for t in tasks if t["name"] == "Resolve the pinned dcgm-exporter version")
    expr = task["ansible.builtin.set_fact"]["_dcgm_exporter_candidate"]
    rendered = env.from_string(expr).render(dcgm_exporter_version=pin, _dcgm_exporter_index={"stdout": index})
    assert rendered.strip() == resolved


def test_fabric_manager_instance_types_follow_the_catalog():
    """The role's EC2 type lists and infra/catalog.py agree: a type added to the catalog with
    NVSwitch must reach the role, or its nodes get no fabric manager when the PCI scan misses."""
    from infra.catalog import CATALOG

    defaults = yaml.safe_load((ANSIBLE / "roles/fabric_manager/defaults/main.yml").read_text())
    nvswitch = sorted(t.name for t in CATALOG.values() if t.nvswitch)
    # NVLink 5 = Blackwell HGX (B200/B300 GPUs behind NVSwitch).
    nvl5 = sorted(t.name for t in CATALOG.values() if t.nvswitch and t.gpu_model.startswith(("B200", "B300")))
    assert sorted(defaults["fabric_manager_nvswitch_instance_types"]) == nvswitch
    assert sorted(defaults["fabric_manager_nvl5_instance_types"]) == nvl5
    assert nvl5, "the catalog lost its NVLink 5 type"

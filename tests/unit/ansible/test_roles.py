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


@pytest.mark.parametrize(("kernel", "package"), [
    ("6.8.0-1015-aws", "linux-headers-aws"),
    ("5.15.0-1072-aws", "linux-headers-aws"),
    ("6.8.0-45-generic", "linux-headers-generic"),
    ("6.1.0-27-cloud-amd64", "linux-headers-cloud-amd64"),
    ("6.1.0-27-amd64", "linux-headers-amd64"),
])
def test_kernel_headers_metapackage_follows_the_kernel_flavour(kernel, package):
    """nvidia_driver's regex (applied with Python's re, as Ansible's regex_replace does)."""
    import re

    variables = yaml.safe_load((ANSIBLE / "roles/nvidia_driver/vars/main.yml").read_text())
    raw = variables["_nvidia_driver_headers_metapackage"]
    pattern = re.search(r"regex_replace\('([^']+)', '([^']*)'\)", raw)
    assert pattern, raw
    assert "linux-headers-" + re.sub(pattern.group(1), pattern.group(2), kernel) == package

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

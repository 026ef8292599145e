"""Static contracts of the roles site.yml runs: each is tagged by its name, and every variable in a
role's defaults is documented in that role's README (users read the README, not the YAML)."""

from __future__ import annotations

import re
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
    installed = [
        "linux-aws-lts-22.04",
        "linux-image-aws-lts-22.04",
        "linux-image-6.8.0-1015-aws",
        "linux-image-unsigned-6.8.0-1015-aws",
        "linux-image-extra-virtual",
        "linux-image-cloud-amd64",
        "linux-modules-6.8.0-1015-aws",
        "nvidia-dkms-570",
    ]
    packages = {name: [{"version": "1"}] for name in installed}
    rendered = env.from_string(expr).render(ansible_facts={"packages": packages})
    assert rendered == str(["linux-headers-aws-lts-22.04", "linux-headers-cloud-amd64", "linux-headers-extra-virtual"])


@pytest.mark.parametrize(
    ("pin", "index", "resolved"),
    [
        ("4.6.0-1", "Version: 1:4.8.2-1\nVersion: 1:4.6.0-1\n", "1:4.6.0-1"),  # epoch-less pin, any epoch
        ("4.6.0-1", "Version: 4.8.2-1\nVersion: 4.6.0-1\n", "4.6.0-1"),
        ("4.6.0-1", "Version: 4.6.0-10\nVersion: 4.6.0-1ubuntu1\n", ""),  # anchored: no prefix matches
        ("1:4.6.0-1", "Version: 2:4.6.0-1\n", ""),  # a pin with an epoch matches exactly
        ("1:4.6.0-1", "Version: 1:4.6.0-1\n", "1:4.6.0-1"),
        ("4.6.0-1", "", ""),  # no repository offers the package
    ],
)
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


# --- Version pins live in group_vars/all.yml only -------------------------------------------------

PINS = yaml.safe_load((ANSIBLE / "group_vars/all.yml").read_text())
# Playbooks (and requirements.yml) plus every role's defaults: where a pin would be repeated.
PIN_READERS = sorted(ANSIBLE.glob("*.yml")) + sorted(ANSIBLE.glob("roles/*/defaults/main.yml"))


def _scalars(node, path=()):
    """(key path, value) of every scalar in a parsed YAML document; comments are not scalars."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _scalars(value, (*path, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _scalars(value, (*path, str(index)))
    else:
        yield path, node


def _pin_reader_scalars():
    for path in PIN_READERS:
        for keys, value in _scalars(yaml.safe_load(path.read_text())):
            yield path.relative_to(ANSIBLE), keys, value


def test_version_variables_outside_group_vars_are_templates():
    """A *_version variable set to a literal ("0.11.0", "1.1-1") is a pin outside the one place."""
    literal = [
        (str(path), "/".join(keys), value)
        for path, keys, value in _pin_reader_scalars()
        if keys and keys[-1].endswith("_version") and "{{" not in str(value)
    ]
    assert not literal, f"pin these in group_vars/all.yml as aidc_* and reference them: {literal}"


def test_version_variables_refer_to_pins_that_exist():
    """With no fallback left, a misspelt aidc_* name would only fail on a node."""
    referenced = {
        name
        for _, keys, value in _pin_reader_scalars()
        if keys and keys[-1].endswith("_version")
        for name in re.findall(r"\baidc_\w+", str(value))
    }
    assert referenced, "no *_version variable reads a group_vars pin"
    assert referenced <= PINS.keys(), sorted(referenced - PINS.keys())


@pytest.mark.parametrize("pin", sorted(PINS))
def test_group_vars_pin_is_not_repeated_outside_group_vars(pin):
    """Catches copies such as `aidc_torch_version | default('2.13.0')` or `.../whl/cu128`."""
    value = str(PINS[pin])
    copy = re.compile(rf"(?<![\w.:+-]){re.escape(value)}(?![\w.+-])")
    copies = [(str(path), "/".join(keys)) for path, keys, v in _pin_reader_scalars() if copy.search(str(v))]
    fallbacks = [
        (str(path), "/".join(keys))
        for path, keys, v in _pin_reader_scalars()
        if re.search(rf"\b{pin}\s*\|\s*default\b", str(v))
    ]
    assert not copies, f"{pin}={value!r} repeated in {copies}"
    assert not fallbacks, f"{pin} given a fallback value in {fallbacks}"


# --- ansible.cfg -------------------------------------------------------------------------------


def test_ansible_cfg_enables_the_host_list_inventory_plugin():
    """`-i 10.0.1.5,` (one node, ad hoc) needs host_list; any_unparsed_is_failed makes it fatal."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(ANSIBLE / "ansible.cfg")
    plugins = [p.strip() for p in cfg["inventory"]["enable_plugins"].split(",")]
    assert "ansible.builtin.host_list" in plugins, plugins
    assert "amazon.aws.aws_ec2" in plugins, plugins


def test_ad_hoc_host_list_inventory_parses_with_the_project_config(tmp_path):
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"), "ANSIBLE_LOCAL_TEMP": str(tmp_path)}
    inventory = Path(sys.executable).parent / "ansible-inventory"
    proc = subprocess.run(
        [str(inventory), "-i", "10.0.1.5,", "--list"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["ungrouped"]["hosts"] == ["10.0.1.5"]


# --- common role --------------------------------------------------------------------------------

COMMON_TASKS = ANSIBLE / "roles/common/tasks"


def _task(file: str, name: str) -> dict:
    return next(t for t in yaml.safe_load((COMMON_TASKS / file).read_text()) if t["name"] == name)


_ANSIBLE_EVAL = """
import json, sys
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

def trusted(value):
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return {k: trusted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [trusted(v) for v in value]
    return value

req = json.load(sys.stdin)
templar = Templar(loader=DataLoader(), variables=trusted(req["variables"]))
expr = trust_as_template(req["expr"])
out = templar.evaluate_conditional(expr) if req["kind"] == "when" else templar.template(expr)
json.dump(out, sys.stdout)
"""


def _ansible_eval(kind: str, expr: str, variables: dict):
    """Ansible's own templating (2.19 templates only strings marked trusted, as a play's would be),
    in a child process: importing ansible patches ``sys.intern`` and ``socket`` process-wide, which
    breaks torch.compile in later tests of the same session."""
    import json
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", _ANSIBLE_EVAL],
        input=json.dumps({"kind": kind, "expr": expr, "variables": variables}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_apt_index_refresh_never_reports_a_change():
    task = _task("main.yml", "Refresh the APT package index when it is older than an hour")
    assert task["ansible.builtin.apt"]["update_cache"] is True
    assert task["changed_when"] is False
    assert task["check_mode"] is False


INFINITY = "18446744073709551615"  # how busctl prints systemd's infinity


@pytest.mark.parametrize(
    ("memlock", "nofile", "live", "reexec"),
    [
        ("unlimited", 1048576, [INFINITY, INFINITY, "1048576", "1048576"], False),
        ("unlimited", 1048576, ["8388608", "8388608", "1048576", "1048576"], True),  # memlock not yet applied
        ("unlimited", 2097152, [INFINITY, INFINITY, "1048576", "1048576"], True),  # only nofile changed
        ("unlimited", 524288, [INFINITY, INFINITY, "1024", "524288"], True),  # systemd's 1024:524288 default
        (65536, 1048576, ["67108864", "67108864", "1048576", "1048576"], False),  # memlock in KiB, live in bytes
        (65536, "1048576", [INFINITY, INFINITY, "1048576", "1048576"], True),
    ],
)
def test_systemd_is_reexecuted_when_any_service_limit_differs(memlock, nofile, live, reexec):
    read = _task("limits.yml", "Read the memlock and nofile limits systemd gives services now")
    properties = read["ansible.builtin.command"]["argv"][5:]
    assert properties == [
        "DefaultLimitMEMLOCKSoft",
        "DefaultLimitMEMLOCK",
        "DefaultLimitNOFILESoft",
        "DefaultLimitNOFILE",
    ]
    task = _task("limits.yml", "Re-execute systemd so that services get the new limits")
    stdout_lines = [f"t {value}" for value in live]
    variables = {
        **task["vars"],
        "common_memlock_limit": memlock,
        "common_nofile_limit": nofile,
        read["register"]: {"stdout_lines": stdout_lines, "stdout": "\n".join(stdout_lines)},
    }
    assert _ansible_eval("when", task["when"], variables) is reexec


@pytest.mark.parametrize(("hugepages", "state"), [(0, "absent"), ("0", "absent"), (512, "present")])
def test_zero_hugepages_removes_the_setting_from_the_sysctl_file(hugepages, state):
    task = next(
        t
        for t in yaml.safe_load((COMMON_TASKS / "sysctl.yml").read_text())
        if t.get("ansible.posix.sysctl", {}).get("name") == "vm.nr_hugepages"
    )
    assert "when" not in task, "a skipped task leaves an earlier vm.nr_hugepages in the file"
    args = task["ansible.posix.sysctl"]
    assert _ansible_eval("template", args["state"], {"common_hugepages": hugepages}) == state
    assert args["sysctl_file"] == "{{ common_sysctl_file }}"

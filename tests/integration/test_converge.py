"""site.yml on two disposable Debian 12 hosts, in order (the tests share the hosts):

1. check mode on the fresh hosts fails nowhere;
2. host 1's first run is killed mid-way;
3. a full run converges both hosts (host 0 from fresh, host 1 after the interruption), and a
   second run reports changed=0 on every host;
4. the testinfra node checks (tests/hosts) pass on them;
4b. told that they are GPU nodes (nvidia_driver_gpu_present), their GPU checks fail instead of skipping;
5. new pins (newer driver, NCCL, EFA, DCGM, dcgm-exporter and nvlsm, as a group_vars change would set) move
   the held packages on the stand-in repo host, and the run after that changes nothing;
5b. an old kernel module still loaded under the newer driver asks for the reboot on every run and
    keeps fabric manager from being started, until the loaded module is the installed one;
6. a driver that no package owns stops the driver role before it installs anything;
7. an EFA installer whose sha256 does not match the pin never runs;
8. an EFA that came with the image is kept unless efa_replace_preinstalled, then replaced;
9. a DCGM 3 that came with the image is kept (without dcgm-exporter, which needs DCGM 4) unless
   dcgm_replace_legacy, then replaced by DCGM 4 and the exporter;
10. the EFA pin goes back down on the host that moved up (uninstall first), through an installer
    that fails after writing its marker: the next run installs again and records it;
11. an NCCL, DCGM or dcgm-exporter pin that no repository offers fails with the way out, before apt runs.

Host 0 installs Debian's real nvidia-driver packages; host 1 takes the Ubuntu/CUDA-repo code path
against the stand-in repo (same names and versions as NVIDIA's; newer versions published beside
the pinned ones) with fabric manager forced on, as an NVLink 5 system (nvlsm, ib_umad). Both install
EFA from the stand-in installer tarball (tests/integration/standin_efa.py). No GPU or EFA device
here: those checks skip with their reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest

from tests.integration.ansible_run import (
    ANSIBLE,
    REPO,
    ansible_env,
    changed_tasks,
    converge,
    failed_tasks,
    playbook_command,
)
from tests.integration.standin_efa import NEWER_EFA
from tests.integration.standin_repo import (
    LEGACY_DCGM,
    NEWER_DCGM,
    NEWER_DCGM_EXPORTER,
    NEWER_DRIVER,
    NEWER_NCCL,
    NEWER_NVLSM,
)

pytestmark = [pytest.mark.hosts, pytest.mark.slow]

#: The only reasons a node check may skip on these hosts; anything else is a broken setup.
ALLOWED_SKIPS = ("no NVIDIA GPU on the PCI bus", "common_sysctl_apply_runtime is false", "container:",
                 "lacks CAP_SYS_RESOURCE on this host (container)", "no EFA device on the PCI bus",
                 "no --aidc-instance-type")
EFA_MARKER = "/opt/amazon/efa_installed_packages"
EFA_RECORD = "/var/lib/aidc/efa-installer-version"
DCGM4 = ("datacenter-gpu-manager-4-core", "datacenter-gpu-manager-4-cuda12",
         "datacenter-gpu-manager-4-proprietary-cuda12")
EXPORTER = "datacenter-gpu-manager-exporter"
DCGM_ENABLE = "dcgm : Enable DCGM's host engine (started where a GPU is present)"
#: Kill the first run once this task starts: the CUDA source list is written, its index not yet.
INTERRUPT_AT = "Read the repositories APT has indexed"
REBOOT_ASK = ("nvidia_driver : Ask for the reboot that loads the installed driver "
              "(loaded module is not the installed one)")


def _assert_converged(report: dict, hosts: list[str]) -> None:
    stats = report["stats"]
    assert sorted(stats) == sorted(hosts), stats
    bad = {h: s for h, s in stats.items() if s["failures"] or s["unreachable"]}
    assert not bad, f"failed: {failed_tasks(report)}"
    assert report["rc"] == 0


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run_until(bed, marker: str, timeout: float, limit: str) -> bool:
    """Start site.yml on ``limit`` and SIGKILL it (with its workers) once ``marker`` is printed."""
    proc = subprocess.Popen([*playbook_command(bed), "--limit", limit], cwd=ANSIBLE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env=ansible_env(bed, callback="ansible.builtin.default"))
    seen = False
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + timeout
            while not seen and time.monotonic() < deadline:
                if not sel.select(timeout=5):
                    continue  # silent task (apt): keep waiting until the deadline
                line = proc.stdout.readline()
                if not line:
                    break
                seen = marker in line
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    return seen


def test_check_mode_on_fresh_hosts_fails_nowhere_with_stand_in_repo(two_hosts):
    report = converge(two_hosts, "--check")
    _assert_converged(report, [h.name for h in two_hosts.hosts])


def test_first_run_killed_mid_way_on_stand_in_repo_host(two_hosts):
    host = two_hosts.hosts[1]
    assert _run_until(two_hosts, INTERRUPT_AT, timeout=300, limit=host.name), (
        f"the run never reached '{INTERRUPT_AT}'")
    # Killed after the CUDA source list was written and before its index was fetched.
    listing = two_hosts.ssh(host, "ls /etc/apt/sources.list.d/").stdout
    assert "cuda-" in listing, listing


def test_site_converges_then_reconverges_with_no_changes_on_stand_in_repo(two_hosts, pins):
    names = [h.name for h in two_hosts.hosts]
    first = converge(two_hosts)
    _assert_converged(first, names)
    assert all(first["stats"][h]["changed"] > 0 for h in names), "first full run changed nothing"
    # The second run as a rolling one (one host per batch, stop at a failed batch): same result.
    second = converge(two_hosts, "-e", "aidc_serial=1", "-e", "aidc_max_fail_percentage=0")
    _assert_converged(second, names)
    assert len(second["plays"]) == 2, "aidc_serial=1 did not converge one host per batch"
    assert {h: second["stats"][h]["changed"] for h in names} == dict.fromkeys(names, 0), (
        f"not idempotent: {changed_tasks(second)}")
    held = set(two_hosts.ssh(two_hosts.hosts[1], "apt-mark showhold").stdout.split())
    branch = pins["aidc_driver_branch"]
    wanted = {"cuda-keyring", "libnccl2", "libnccl-dev", f"nvidia-fabricmanager-{branch}", f"libnvidia-nscq-{branch}",
              "datacenter-gpu-manager-4-core", EXPORTER, "nvlsm"}
    assert wanted <= held, held
    # Host 1 is an NVLink 5 system (fabric_manager_nvl5): mlx5_ib and ib_umad are loaded at boot.
    modules = two_hosts.ssh(two_hosts.hosts[1], "cat /etc/modules-load.d/aidc-fabric-manager.conf").stdout
    assert {"mlx5_ib", "ib_umad"} <= set(modules.split()), modules
    for host in two_hosts.hosts:
        assert _efa_version(two_hosts, host) == pins["aidc_efa_installer_version"]
        plugin = two_hosts.ssh(host, "cat /etc/ld.so.conf.d/aidc-efa.conf").stdout
        assert "/opt/amazon/ofi-nccl/lib/x86_64-linux-gnu" in plugin.split(), plugin
        assert two_hosts.ssh(host, f"cat {EFA_RECORD}").stdout.strip() == (
            f"aidc efa role installed {pins['aidc_efa_installer_version']}")
        # Container options passed: the installer left the memlock limits to the common role.
        assert two_hosts.ssh(host, "test -e /etc/security/limits.d/01_efa.conf").returncode == 1


def _efa_version(bed, host) -> str:
    return bed.ssh(host, f"sed -n 's/^# EFA installer version: //p' {EFA_MARKER}").stdout.strip()


def test_node_checks_pass_on_converged_hosts_with_stand_in_repo(two_hosts, tmp_path):
    junit = tmp_path / "hosts.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/hosts", "-p", "no:cacheprovider", "-q", "-rs",
         "--hosts=ansible://all", f"--ansible-inventory={two_hosts.inventory_yml}",
         f"--junitxml={junit}", "-o", "addopts="],
        cwd=REPO, env=ansible_env(two_hosts, callback="ansible.builtin.default"),
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    cases = ET.parse(junit).getroot().iter("testcase")
    skipped, passed = [], 0
    for case in cases:
        skip = case.find("skipped")
        if skip is None:
            passed += 1
        else:
            skipped.append(skip.get("message", ""))
    unexpected = [m for m in skipped if not any(a in m for a in ALLOWED_SKIPS)]
    assert not unexpected, unexpected
    # 21 checks per host run here (GPU, EFA device, runtime-sysctl, login-limit and clock checks skip).
    assert passed >= 2 * 21, f"only {passed} node checks passed"


def test_gpu_checks_fail_on_a_gpu_node_whose_gpus_are_gone(two_hosts, tmp_path):
    """4b. Driver installed and nvidia_driver_gpu_present true, yet no GPU on the PCI bus (a GPU that
    fell off the bus): every GPU check must fail with that reason instead of skipping."""
    junit, extra = tmp_path / "gpu.xml", tmp_path / "gpu-node.yml"
    extra.write_text("nvidia_driver_gpu_present: true\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/hosts/test_gpu.py", "-p", "no:cacheprovider", "-q",
         "--hosts=ansible://all", f"--ansible-inventory={two_hosts.inventory_yml}", f"--aidc-extra-vars={extra}",
         f"--junitxml={junit}", "-o", "addopts="],
        cwd=REPO, env=ansible_env(two_hosts, callback="ansible.builtin.default"),
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout[-4000:] + proc.stderr[-2000:]
    cases = list(ET.parse(junit).getroot().iter("testcase"))
    assert len(cases) >= 2 * 5, len(cases)
    for case in cases:
        problem = case.find("error") if case.find("error") is not None else case.find("failure")
        text = "" if problem is None else problem.get("message", "") + (problem.text or "")
        assert "a lost GPU" in text, (case.get("name"), text[:500])


def test_new_pins_move_the_held_packages_on_stand_in_repo_host(two_hosts, pins, standin_repo):
    """5. Changing the pins (as group_vars would) upgrades held packages and EFA; the next run is a no-op."""
    host = two_hosts.hosts[1]
    cuda_line = NEWER_NCCL.rsplit("+cuda", 1)[1]  # the NCCL pin names its CUDA line; they move together
    new = ["-e", f"aidc_driver_version={NEWER_DRIVER}", "-e", f"aidc_nccl_version={NEWER_NCCL}",
           "-e", f"aidc_cuda_version={cuda_line}", "-e", f"aidc_efa_installer_version={NEWER_EFA}",
           "-e", f"aidc_dcgm_version={NEWER_DCGM}", "-e", f"aidc_dcgm_exporter_version={NEWER_DCGM_EXPORTER}",
           "-e", f"aidc_nvlsm_version={NEWER_NVLSM}",
           "-e", f"aidc_efa_installer_sha256={_sha256(standin_repo / f'aws-efa-installer-{NEWER_EFA}.tar.gz')}",
           "--limit", host.name]
    first = converge(two_hosts, *new)
    _assert_converged(first, [host.name])
    branch = pins["aidc_driver_branch"]
    query = ("dpkg-query -W -f '${Package}=${Version}\\n' libnccl2 nvidia-persistenced datacenter-gpu-manager-4-core "
             f"{EXPORTER} nvlsm nvidia-fabricmanager-{branch} libnvidia-nscq-{branch}")
    versions = dict(line.split("=", 1) for line in two_hosts.ssh(host, query).stdout.split())
    assert versions == {"libnccl2": NEWER_NCCL, "nvidia-persistenced": f"{NEWER_DRIVER}-1",
                        "datacenter-gpu-manager-4-core": NEWER_DCGM, EXPORTER: NEWER_DCGM_EXPORTER,
                        "nvlsm": NEWER_NVLSM,
                        f"nvidia-fabricmanager-{branch}": f"{NEWER_DRIVER}-1",
                        f"libnvidia-nscq-{branch}": f"{NEWER_DRIVER}-1"}, versions
    held = set(two_hosts.ssh(host, "apt-mark showhold").stdout.split())
    assert {"libnccl2", "libnccl-dev", "datacenter-gpu-manager-4-core", EXPORTER, "nvlsm",
            f"nvidia-fabricmanager-{branch}", f"libnvidia-nscq-{branch}"} <= held, held
    assert _efa_version(two_hosts, host) == NEWER_EFA
    again = converge(two_hosts, *new)
    _assert_converged(again, [host.name])
    assert again["stats"][host.name]["changed"] == 0, changed_tasks(again)


def test_old_module_still_loaded_asks_for_the_reboot_and_holds_fabric_manager(two_hosts, pins):
    """5b. Host 1 has the newer driver installed (step 5). A module of the old version still loaded
    (a run killed after the install, or a declined reboot) must ask for the reboot on every run, and
    fabric manager, which refuses a mismatched driver, must not be (re)started meanwhile."""
    host = two_hosts.hosts[1]
    loaded = "/tmp/aidc-loaded-nvidia-version"  # stands in for /sys/module/nvidia/version
    args = ["--limit", host.name, "--tags", "nvidia_driver,fabric_manager", "-e", f"aidc_driver_version={NEWER_DRIVER}",
            "-e", f"aidc_nvlsm_version={NEWER_NVLSM}", "-e", f"_nvidia_driver_loaded_version_file={loaded}"]
    # As on a GPU host, except for nvlsm's modules, which a container cannot load.
    start = ["-e", "fabric_manager_start=true", "-e", "fabric_manager_nvl5=false"]
    two_hosts.ssh(host, f"echo {pins['aidc_driver_version']} > {loaded}")
    try:
        stale = converge(two_hosts, *args, *start)
        _assert_converged(stale, [host.name])
        assert changed_tasks(stale).get(host.name) == [REBOOT_ASK], changed_tasks(stale)
        assert "reboot this host" in json.dumps(stale), "the run did not say that a reboot is needed"
        two_hosts.ssh(host, f"echo {NEWER_DRIVER} > {loaded}")
        current = converge(two_hosts, *args)
        _assert_converged(current, [host.name])
        assert current["stats"][host.name]["changed"] == 0, changed_tasks(current)
    finally:
        two_hosts.ssh(host, f"rm -f {loaded}")


def test_driver_outside_apt_is_refused_before_any_install(two_hosts):
    """6. A driver no package owns (preinstalled AMI, .run installer) stops the role with the way out."""
    host = two_hosts.hosts[1]
    two_hosts.ssh(host, "printf '#!/bin/sh\\nexit 0\\n' > /usr/bin/nvidia-smi && chmod 755 /usr/bin/nvidia-smi")
    try:
        report = converge(two_hosts, "--limit", host.name)
    finally:
        two_hosts.ssh(host, "rm -f /usr/bin/nvidia-smi")
    failed = failed_tasks(report).get(host.name, [])
    assert len(failed) == 1 and "belongs to no package" in failed[0], failed
    assert "--skip-tags nvidia_driver" in failed[0], failed
    assert report["stats"][host.name]["changed"] == 0, changed_tasks(report)


def test_efa_installer_with_wrong_checksum_never_runs(two_hosts, pins, standin_repo):
    """7. A tarball whose sha256 is not the pinned one (tampered, or a pin typo) stops before it runs."""
    host = two_hosts.hosts[0]
    before = _efa_version(two_hosts, host)
    wrong = _sha256(standin_repo / f"aws-efa-installer-{pins['aidc_efa_installer_version']}.tar.gz")
    report = converge(two_hosts, "--limit", host.name, "-e", f"aidc_efa_installer_version={NEWER_EFA}",
                      "-e", f"aidc_efa_installer_sha256={wrong}")
    failed = failed_tasks(report).get(host.name, [])
    assert len(failed) == 1 and "checksum" in failed[0].lower(), failed
    assert _efa_version(two_hosts, host) == before
    assert two_hosts.ssh(host, "test -e /var/cache/aidc/efa").returncode == 1, "download left behind"


def test_efa_from_the_image_is_kept_unless_replacement_is_asked(two_hosts, pins):
    """8. EFA that the role did not install (a DLAMI's) stays; efa_replace_preinstalled installs the pin."""
    host = two_hosts.hosts[0]
    pin = pins["aidc_efa_installer_version"]
    two_hosts.ssh(host, f"sed -i 's/^# EFA installer version: .*/# EFA installer version: 1.40.0/' {EFA_MARKER}"
                        f" && rm {EFA_RECORD}")
    kept = converge(two_hosts, "--limit", host.name)
    _assert_converged(kept, [host.name])
    assert kept["stats"][host.name]["changed"] == 0, changed_tasks(kept)
    assert _efa_version(two_hosts, host) == "1.40.0"
    replaced = converge(two_hosts, "--limit", host.name, "-e", "efa_replace_preinstalled=true")
    _assert_converged(replaced, [host.name])
    assert _efa_version(two_hosts, host) == pin
    record = two_hosts.ssh(host, f"cat {EFA_RECORD}").stdout
    assert record.strip() == f"aidc efa role installed {pin}", record


def _dcgm_installed(bed, host) -> set[str]:
    query = "dpkg-query -W -f '${Package}=${Version} ${db:Status-Status}\\n' 'datacenter-gpu-manager*'"
    lines = bed.ssh(host, query).stdout.splitlines()
    return {line.split()[0] for line in lines if line.endswith(" installed")}


def test_dcgm_3_from_the_image_is_kept_unless_replacement_is_asked(two_hosts, pins):
    """9. DCGM 3 (a DLAMI's) blocks DCGM 4 (shared files): kept and reported, or purged on request."""
    host = two_hosts.hosts[0]
    dcgm4 = " ".join((*DCGM4, EXPORTER))
    swap = (f"apt-mark unhold {dcgm4} && apt-get -y -q purge {dcgm4} && "
            f"apt-get -y -q install datacenter-gpu-manager={LEGACY_DCGM}")
    out = two_hosts.ssh(host, swap, timeout=180)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    kept = converge(two_hosts, "--limit", host.name)
    _assert_converged(kept, [host.name])
    # Only enabling the kept DCGM 3's host engine may change.
    assert set(changed_tasks(kept).get(host.name, [])) <= {DCGM_ENABLE}, changed_tasks(kept)
    assert _dcgm_installed(two_hosts, host) == {f"datacenter-gpu-manager={LEGACY_DCGM}"}
    replaced = converge(two_hosts, "--limit", host.name, "-e", "dcgm_replace_legacy=true")
    _assert_converged(replaced, [host.name])
    version = pins["aidc_dcgm_version"]
    exporter = pins["aidc_dcgm_exporter_version"]
    assert _dcgm_installed(two_hosts, host) == {f"{name}={version}" for name in DCGM4} | {f"{EXPORTER}={exporter}"}
    held = set(two_hosts.ssh(host, "apt-mark showhold").stdout.split())
    assert {*DCGM4, EXPORTER} <= held, held


def test_efa_pin_goes_down_through_a_late_installer_failure(two_hosts, pins):
    """10. Host 1 carries the newer EFA from step 5. The pinned (older) version needs an uninstall
    first, or the installer would keep the newer parts. Its first try fails after writing the marker
    (as a failing initramfs update does); the next run must install again, not trust the marker."""
    host, pin = two_hosts.hosts[1], pins["aidc_efa_installer_version"]
    assert _efa_version(two_hosts, host) == NEWER_EFA
    two_hosts.ssh(host, "touch /etc/aidc-standin-efa-fail-late")
    try:
        failed = converge(two_hosts, "--limit", host.name, "--tags", "efa")
    finally:
        two_hosts.ssh(host, "rm -f /etc/aidc-standin-efa-fail-late")
    assert [t for t in failed_tasks(failed).get(host.name, []) if "efa_installer.sh" in t], failed_tasks(failed)
    assert _efa_version(two_hosts, host) == pin  # the marker already names the pin ...
    assert two_hosts.ssh(host, f"cat {EFA_RECORD}").stdout.strip() == f"aidc efa role installing {pin}"
    retried = converge(two_hosts, "--limit", host.name, "--tags", "efa")
    _assert_converged(retried, [host.name])
    assert "efa : Run efa_installer.sh" in changed_tasks(retried).get(host.name, [])  # ... yet it ran again
    assert two_hosts.ssh(host, f"cat {EFA_RECORD}").stdout.strip() == f"aidc efa role installed {pin}"
    libfabric = two_hosts.ssh(host, "cat /opt/amazon/efa/lib/libfabric.so.1").stdout
    assert f"(aidc stand-in {pin})" in libfabric, f"newer libfabric kept: {libfabric}"
    again = converge(two_hosts, "--limit", host.name, "--tags", "efa")
    _assert_converged(again, [host.name])
    assert again["stats"][host.name]["changed"] == 0, changed_tasks(again)


@pytest.mark.parametrize(("role", "pin"), [("nccl", "aidc_nccl_version=2.99.9-1+cuda12.8"),
                                            ("dcgm", "aidc_dcgm_version=1:4.99.9-1"),
                                            ("dcgm", "aidc_dcgm_exporter_version=4.99.9-1")])
def test_pin_missing_from_the_repository_names_the_way_out(two_hosts, role, pin):
    """11. Not apt's "no package matching": the pin, the repository and where to look."""
    host = two_hosts.hosts[0]
    report = converge(two_hosts, "--limit", host.name, "--tags", role, "-e", pin)
    failed = failed_tasks(report).get(host.name, [])
    assert len(failed) == 1 and "is in no configured APT repository" in failed[0], failed
    assert "apt-cache madison" in failed[0] and pin.split("=", 1)[1] in failed[0], failed
    assert report["stats"][host.name]["changed"] == 0, changed_tasks(report)

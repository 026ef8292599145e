"""Base tuning: limits, sysctls, time sync, unattended-upgrades kept off the GPU packages."""

from __future__ import annotations

import pytest

RLIMIT_NAMES = {"-l": ("Max locked memory", 1024), "-n": ("Max open files", 1)}
CAP_SYS_RESOURCE = 24


def _skip_if_limit_cannot_be_raised(host, flag: str, wanted: str) -> None:
    """Skip where no login can get ``wanted``: PID 1's hard limit is lower and root may not raise it.

    Some CI machines run the test hosts with a small inherited hard limit and without
    CAP_SYS_RESOURCE; pam_limits then logs "Operation not permitted". Real nodes have neither.
    """
    label, unit = RLIMIT_NAMES[flag]
    line = next(x for x in host.file("/proc/1/limits").content_string.splitlines() if x.startswith(label))
    hard = line[len(label):].split()[1]
    if hard == "unlimited" or (wanted != "unlimited" and int(hard) >= int(wanted) * unit):
        return
    cap_eff = next(x for x in host.file("/proc/self/status").content_string.splitlines() if x.startswith("CapEff"))
    if not int(cap_eff.split()[1], 16) >> CAP_SYS_RESOURCE & 1:
        pytest.skip(f"PID 1's hard limit ({label}) is {hard} and root lacks CAP_SYS_RESOURCE on this host "
                    f"(container): no login can get {wanted} here; the limits file is checked separately")


def test_limits_file_sets_training_user_limits(host, expect):
    user = expect["common_training_user"]
    lines = {tuple(x.split()) for x in host.file("/etc/security/limits.d/90-aidc.conf").content_string.splitlines()
             if x and not x.startswith("#")}
    for kind in ("soft", "hard"):
        assert (user, kind, "memlock", str(expect["common_memlock_limit"])) in lines
        assert (user, kind, "nofile", str(expect["common_nofile_limit"])) in lines


def _login_limit(host, user: str, flag: str) -> str:
    # runuser -l goes through PAM (pam_limits), like an SSH login of the training user.
    out = host.run(f"runuser -l {user} -s /bin/sh -c 'ulimit {flag}'")
    assert out.rc == 0, out.stderr
    return out.stdout.strip()


def test_training_user_memlock_is_unlimited(host, expect):
    _skip_if_limit_cannot_be_raised(host, "-l", str(expect["common_memlock_limit"]))
    assert _login_limit(host, expect["common_training_user"], "-l") == str(expect["common_memlock_limit"])


def test_training_user_nofile_limit(host, expect):
    _skip_if_limit_cannot_be_raised(host, "-n", str(expect["common_nofile_limit"]))
    assert _login_limit(host, expect["common_training_user"], "-n") == str(expect["common_nofile_limit"])


def test_services_get_the_memlock_limit_by_default(host, expect):
    out = host.check_output("systemctl show --property DefaultLimitMEMLOCK --value")
    limit = expect["common_memlock_limit"]
    assert out == ("infinity" if limit == "unlimited" else str(int(limit) * 1024))


def _sysctl_file(host, expect) -> dict[str, str]:
    content = host.file(expect["common_sysctl_file"]).content_string
    pairs = (line.split("=", 1) for line in content.splitlines() if "=" in line and not line.startswith("#"))
    return {k.strip(): " ".join(v.split()) for k, v in pairs}


def test_sysctl_file_holds_every_setting(host, expect):
    written = _sysctl_file(host, expect)
    wanted = {k: " ".join(str(v).split()) for k, v in expect["common_sysctls"].items()}
    assert {k: written.get(k) for k in wanted} == wanted


def test_sysctls_applied_to_running_kernel(host, expect):
    if not expect.flag("common_sysctl_apply_runtime"):
        pytest.skip("common_sysctl_apply_runtime is false for this host (container: /proc/sys read-only)")
    for key, value in expect["common_sysctls"].items():
        assert " ".join(host.check_output(f"sysctl -n {key}").split()) == " ".join(str(value).split()), key


def test_time_sync_enabled(host, expect):
    service = {"chrony": "chrony", "systemd-timesyncd": "systemd-timesyncd"}[expect["common_time_sync"]]
    assert host.package(expect["common_time_sync"]).is_installed
    assert host.service(service).is_enabled
    servers = expect["common_time_servers"]
    conf = "/etc/chrony/chrony.conf" if service == "chrony" else "/etc/systemd/timesyncd.conf.d/90-aidc.conf"
    assert all(s in host.file(conf).content_string for s in servers)


def test_time_sync_running(host, expect):
    if host.run("systemd-detect-virt --container").rc == 0:
        pytest.skip("container: the clock belongs to the machine, time sync daemons skip themselves")
    service = "chrony" if expect["common_time_sync"] == "chrony" else "systemd-timesyncd"
    assert host.service(service).is_running


def test_unattended_upgrades_blacklists_gpu_packages(host, expect):
    content = host.file("/etc/apt/apt.conf.d/51aidc-unattended-upgrades-blacklist").content_string
    assert "Unattended-Upgrade::Package-Blacklist" in content
    for pattern in expect["common_unattended_upgrades_blacklist"]:
        assert f'"{pattern}";' in content

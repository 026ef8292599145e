"""NCCL packages at the pinned version and held; the NCCL/EFA environment file and its export."""

from __future__ import annotations

import shlex

from nodecheck import held_packages

DISCOURAGED = ("FI_PROVIDER", "NCCL_PROTO")


def test_nccl_packages_pinned_and_held(host, expect):
    held = held_packages(host)
    for name in expect["nccl_packages"]:
        pkg = host.package(name)
        assert pkg.is_installed, name
        assert pkg.version == expect["nccl_version"], f"{name} {pkg.version}"
        assert name in held, f"{name} is not held"


def _env_file(host, expect) -> dict[str, str]:
    content = host.file(expect["nccl_env_file"]).content_string
    pairs = (line.split("=", 1) for line in content.splitlines() if "=" in line and not line.startswith("#"))
    return {k: shlex.split(v)[0] if v else "" for k, v in pairs}


def test_nccl_env_file_matches_settings(host, expect):
    assert _env_file(host, expect) == {k: str(v) for k, v in expect["nccl_env"].items()}


def test_no_discouraged_efa_settings_unless_asked(host, expect):
    written = _env_file(host, expect)
    for name in DISCOURAGED:
        assert (name in written) == (name in expect["nccl_env"]), name


def test_login_shell_of_training_user_exports_nccl_env(host, expect):
    user = expect["common_training_user"]
    for name, value in expect["nccl_env"].items():
        out = host.run(f"runuser -l {user} -c 'printf %s \"${name}\"'")
        assert out.rc == 0 and out.stdout == str(value), (name, out.stdout, out.stderr)

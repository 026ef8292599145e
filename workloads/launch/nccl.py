"""The NCCL/EFA environment for training processes, read from the nccl Ansible role.

One source of truth: ``ansible/roles/nccl/defaults/main.yml`` defines ``nccl_env`` (a dict); the
role exports it on hosts, and the launchers put the same variables into torchrun's environment and
the Kubernetes pod spec. Until that role exists the env is empty and :func:`nccl_env_source` says so.
"""

from __future__ import annotations

from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
NCCL_DEFAULTS = REPO_ROOT / "ansible" / "roles" / "nccl" / "defaults" / "main.yml"
NCCL_ENV_VAR = "nccl_env"


def load_nccl_env(path: Path = NCCL_DEFAULTS) -> dict[str, str]:
    """``nccl_env`` of the role defaults as strings; {} when the file does not exist yet.

    Values that are Jinja templates cannot be resolved outside Ansible and are rejected, so a
    launcher never exports a literal ``{{ ... }}``.
    """
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    env = data.get(NCCL_ENV_VAR, {})
    if not isinstance(env, dict):
        raise ValueError(f"{path}: {NCCL_ENV_VAR} must be a mapping of env var -> value, got {type(env).__name__}")
    out = {}
    for key, value in env.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if "{{" in text:
            raise ValueError(f"{path}: {NCCL_ENV_VAR}.{key}={text!r} is a template; launchers need literal values")
        out[str(key)] = text
    return out


def nccl_env_source(path: Path = NCCL_DEFAULTS) -> str:
    """Where the NCCL env came from, for logs and generated files."""
    shown = path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path
    if path.is_file():
        return f"{shown} ({NCCL_ENV_VAR})"
    return f"none: {shown} not found, NCCL env left to the image/host defaults"

"""The Pulumi program: the only place that reads ``pulumi.Config``.

Config mistakes surface as ``pulumi.RunError`` (a message, no traceback), raised before any
resource is declared.
"""

import pulumi

from infra.config import CONFIG_KEYS, NAMESPACE, ConfigError, load_stack_config
from infra.program import build


def _read_config() -> dict:
    config = pulumi.Config(NAMESPACE)
    raw = {}
    for key in CONFIG_KEYS:
        try:
            value = config.get_object(key)
        except pulumi.ConfigTypeError:  # not JSON (e.g. `aidc:cluster: dev`): validation names the key
            value = config.get(key)
        if value is not None:
            raw[key] = value
    # Unknown aidc:* keys are mistakes too (typos would otherwise be ignored silently).
    known = set(pulumi.runtime.config.CONFIG.get()) | set(pulumi.runtime.config.get_config_env())
    for full_key in sorted(known):
        ns, _, key = full_key.partition(":")
        if ns == NAMESPACE and key not in raw:
            raw[key] = config.get(key)
    return raw


def main() -> None:
    region = pulumi.Config("aws").get("region") or "us-east-1"
    try:
        cfg = load_stack_config(_read_config(), stack=pulumi.get_stack(), region=region)
        outputs = build(cfg)
    except ConfigError as exc:
        raise pulumi.RunError(str(exc)) from None
    for name, value in outputs.items():
        pulumi.export(name, value)


main()

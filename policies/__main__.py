"""Entry point the Pulumi CLI runs for ``--policy-pack policies/``: build the pack (starts the server)."""

import sys
from pathlib import Path

# The CLI runs this file with policies/ as sys.path[0]; the rules import as the ``policies`` package
# and use the pure ``infra`` modules, so the repository root must come first instead.
_ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _ROOT / "policies"]
sys.path.insert(0, str(_ROOT))

from pulumi_policy import PolicyPack  # noqa: E402

from policies import ALL_POLICIES  # noqa: E402

PolicyPack(
    name="aidc-policies",
    policies=ALL_POLICIES,
    description="AWS FSBP security controls and GPU-cluster (EFA, placement, capacity) validity rules.",
)

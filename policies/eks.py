"""EKS rules: envelope-encrypted secrets, no world-open API endpoint (FSBP EKS.1, EKS.3)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._model import MANDATORY, Rule, as_list, get, is_world_scale

CLUSTER = "aws:eks/cluster:Cluster"


def secrets_encryption_violations(
    resource_type: str, props: Mapping[str, Any], config: Mapping | None = None
) -> list[str]:
    """EKS.3: Kubernetes secrets are envelope-encrypted with a KMS key."""
    enc = get(props, "encryptionConfig")
    if "secrets" in as_list(get(enc, "resources")) and get(enc, "provider", "keyArn"):
        return []
    return ['EKS Cluster has no encryptionConfig for "secrets": set encryption_config={resources: ["secrets"], '
            "provider: {key_arn: key.arn}}."]


def endpoint_violations(resource_type: str, props: Mapping[str, Any], config: Mapping | None = None) -> list[str]:
    """EKS.1: the API endpoint is not reachable from the whole internet.

    A public endpoint (AWS default) is allowed only with ``publicAccessCidrs`` that exclude
    0.0.0.0/0 and ::/0; ``forbidPublicEndpoint`` makes any public endpoint a violation.
    """
    vpc = get(props, "vpcConfig")
    public = get(vpc, "endpointPublicAccess", default=True)
    if public is False or str(public).lower() == "false":
        return []
    if (config or {}).get("forbidPublicEndpoint", False):
        return ["EKS Cluster endpoint is public: set vpc_config.endpoint_public_access=False "
                "(endpoint_private_access=True)."]
    cidrs = as_list(get(vpc, "publicAccessCidrs"))
    if not cidrs or any(is_world_scale(c) for c in cidrs):
        return ["EKS Cluster endpoint is public to the world (publicAccessCidrs "
                f"{cidrs or 'unset = 0.0.0.0/0'}): turn public access off or restrict publicAccessCidrs."]
    return []


def audit_logging_violations(resource_type: str, props: Mapping[str, Any], config: Mapping | None = None):
    """EKS.8: control-plane audit logs are sent to CloudWatch Logs."""
    if "audit" in as_list(get(props, "enabledClusterLogTypes")):
        return []
    return ['EKS Cluster does not log "audit": set enabled_cluster_log_types=["api", "audit", "authenticator"].']


RULES = [
    Rule(name="eks-secrets-encryption", control="FSBP EKS.3", level=MANDATORY,
         description="EKS clusters envelope-encrypt Kubernetes secrets with KMS.",
         remediation='aws.eks.Cluster(encryption_config={"resources": ["secrets"], "provider": {"key_arn": k.arn}})',
         validator=secrets_encryption_violations, resource_types=(CLUSTER,)),
    Rule(name="eks-endpoint-not-public", control="FSBP EKS.1", level=MANDATORY,
         description="EKS API endpoints are private or restricted to known CIDRs.",
         remediation="vpc_config endpoint_public_access=False, endpoint_private_access=True (or narrow "
                     "public_access_cidrs)",
         validator=endpoint_violations, resource_types=(CLUSTER,),
         config={"forbidPublicEndpoint": {"type": "boolean", "default": False,
                                          "description": "Fail any public endpoint, even CIDR-restricted."}}),
    Rule(name="eks-audit-logging", control="FSBP EKS.8", level=MANDATORY,
         description="EKS clusters send control-plane audit logs to CloudWatch Logs.",
         remediation='aws.eks.Cluster(enabled_cluster_log_types=["api", "audit", "authenticator"])',
         validator=audit_logging_violations, resource_types=(CLUSTER,)),
]

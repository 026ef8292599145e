"""Launchers: one :class:`~workloads.launch.spec.JobSpec` → torchrun command lines per node, variables
for ``ansible/train.yml`` (transient systemd units), or Kubernetes Indexed Job + headless Service."""

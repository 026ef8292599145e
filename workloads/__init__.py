"""aidc workloads: distributed training (``train``), inference (``serve``) and launchers (``launch``).

Workloads read stack outputs and the instance catalog only; they never import Pulumi components.
"""

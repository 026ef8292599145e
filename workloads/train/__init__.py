"""Distributed training of a GPT-style decoder: ``python -m workloads.train`` / ``torchrun -m workloads.train``."""

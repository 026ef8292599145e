"""aidc infrastructure: the Pulumi program (``__main__``) and the pure modules it is built from.

Pure modules (``config``, ``catalog``, ``tags``, ``outputs``, ``network_plan``) import no Pulumi so
that policies, launchers and tests can use them without the Pulumi runtime.
"""

"""Operators of MambaIRv2 with interchangeable implementations (see ``selective_scan``)."""
from .selective_scan import (BACKENDS, current_backend, mamba_ssm_available, resolve_backend,
                             scan_backend, selective_scan)

__all__ = ["BACKENDS", "current_backend", "mamba_ssm_available", "resolve_backend", "scan_backend",
           "selective_scan"]

"""Operators of MambaIRv2 with interchangeable implementations (see ``selective_scan``)."""
from .scan_compiled import kernel_available, kernel_error
from .selective_scan import (BACKENDS, current_backend, mamba_ssm_available, resolve_backend,
                             scan_backend, selective_scan)

__all__ = ["BACKENDS", "current_backend", "kernel_available", "kernel_error", "mamba_ssm_available",
           "resolve_backend", "scan_backend",
           "selective_scan"]

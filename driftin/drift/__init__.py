"""Drifting field and loss; see field.py."""
from .field import (KERNEL_NORMS, TEMPERATURES, drift_field, drift_field_blocked, drift_field_reference,
                    drift_field_torch, drift_loss, feature_scale)

__all__ = ["KERNEL_NORMS", "TEMPERATURES", "drift_field", "drift_field_blocked", "drift_field_reference",
           "drift_field_torch", "drift_loss", "feature_scale"]

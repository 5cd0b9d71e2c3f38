"""Merging blockwise logsumexp partials: the one piece of math the torch and Triton field paths share.

Its own module so that field.py (which picks the Triton backend) and field_triton.py (which needs this merge)
do not import each other.
"""
from __future__ import annotations

import torch


def lse_merge(mx: torch.Tensor, sm: torch.Tensor) -> torch.Tensor:
    """logsumexp along dim 1 from (max, sum-exp) partials: partial i holds mx_i and sm_i = sum exp(v - mx_i)."""
    top = mx.amax(1, keepdim=True)
    return (top + (sm * (mx - top).exp()).sum(1, keepdim=True).log())[:, 0]

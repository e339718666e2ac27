"""Typed identifiers, so that a tenant id is never passed where a job id is expected."""

from __future__ import annotations

import secrets
from typing import NewType

TenantId = NewType("TenantId", str)
JobId = NewType("JobId", str)
KeyId = NewType("KeyId", str)
NodeId = NewType("NodeId", int)
ClusterName = NewType("ClusterName", str)
RegionName = NewType("RegionName", str)
ChipName = NewType("ChipName", str)
ChipFamily = NewType("ChipFamily", str)


def new_job_id() -> JobId:
    """A fresh, URL-safe job id such as ``job-3f9c1a2b7d4e``."""
    return JobId(f"job-{secrets.token_hex(6)}")


def new_key_id() -> KeyId:
    """A fresh API-key id (public; not the secret)."""
    return KeyId(f"key-{secrets.token_hex(6)}")

"""Typed changes to stored records: which fields to set, and to what.

Each kind of stored record that services update has one frozen change type beside it
(``JobChange`` and ``AttemptChange`` in :mod:`~suanwang.domain.records`, ``DeploymentChange``
and ``ReplicaChange`` in :mod:`~suanwang.domain.deployments`). A field left at
:data:`UNCHANGED` keeps its stored value; ``None`` is a value (a cleared field), never
"leave it as it is". Stores apply a change with :func:`changed_fields`.
"""

from __future__ import annotations

import enum
from dataclasses import fields
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


class Unchanged(enum.Enum):
    """The type of :data:`UNCHANGED` (an enum, so type checkers can narrow it away)."""

    UNCHANGED = "unchanged"


UNCHANGED: Final = Unchanged.UNCHANGED
"""The default of every field of a change: keep the stored value."""


def changed_fields(change: DataclassInstance) -> dict[str, Any]:
    """The fields ``change`` sets, by name (those not :data:`UNCHANGED`)."""
    return {
        f.name: value for f in fields(change) if (value := getattr(change, f.name)) is not UNCHANGED
    }

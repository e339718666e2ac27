"""One page of a listing: the items, the page number and whether another page follows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from suanwang.adapters.http.console.web import PAGE_SIZE

T = TypeVar("T")
MAX_PAGE_NUMBER = 100_000


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: Sequence[T]
    number: int
    has_next: bool

    @property
    def offset(self) -> int:
        return (self.number - 1) * PAGE_SIZE


def page_number(raw: str | None) -> int:
    """``?page=`` as a number from 1 (anything else: 1)."""
    try:
        number = int(raw or "1")
    except ValueError:
        return 1
    return min(max(number, 1), MAX_PAGE_NUMBER)


def page_of(fetched: Sequence[T], number: int) -> Page[T]:
    """A page from a fetch of PAGE_SIZE + 1 items starting at the page's offset."""
    return Page(fetched[:PAGE_SIZE], number, len(fetched) > PAGE_SIZE)


def slice_page(everything: Sequence[T], number: int) -> Page[T]:
    """A page of a list already in memory (small lists: tenants, keys, nodes)."""
    start = (number - 1) * PAGE_SIZE
    return page_of(everything[start : start + PAGE_SIZE + 1], number)

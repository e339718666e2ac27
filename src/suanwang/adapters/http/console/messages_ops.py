"""Labels of the operator pages (ops_pages.py): zh-CN and English, same keys in both."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

# fmt: off
MESSAGES: Final[Mapping[str, Mapping[str, str]]] = {
    "zh": {
    },
    "en": {
    },
}
# fmt: on

"""Labels of the apps pages and the chat playground (app_pages.py): zh-CN and English."""

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

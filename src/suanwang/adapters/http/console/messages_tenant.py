"""Labels of the console's tenant pages: deployments and models, datasets and knowledge bases, usage over time, borrowing (model_pages.py, data_pages.py): zh-CN and English (same keys in both)."""

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

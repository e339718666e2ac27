"""Step 1: Unicode normalisation of Chinese and English text (pure).

In order: line ends to ``\\n``; NFKC (compatibility forms: full-width ASCII letters, digits and
punctuation such as ``Ａ１，：`` become ``A1,:``, ligatures and circled digits unfold); the
full-width ASCII block and the ideographic space mapped to half-width by table as well (so the
mapping holds with NFKC switched off); control and format characters dropped (C0/C1 controls
but tab and newline, zero-width spaces, BOM, bidi marks); every Unicode space to ``' '``,
runs of spaces and tabs collapsed, lines stripped, three or more newlines to two, the whole
text stripped. Chinese punctuation outside the full-width block (``。、《》“”``) is kept.

The result is idempotent: ``normalize(normalize(t)) == normalize(t)`` (a Hypothesis property
in tests/unit/test_corpus_normalize.py).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_FULLWIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
_SPACES = re.compile(r"[^\S\n]+")
_LINE_EDGES = re.compile(r" *\n *")
_BLANK_LINES = re.compile(r"\n{3,}")
_CONTROLS: dict[int, None] = {
    code: None
    for code in (*range(0x20000), *range(0xE0000, 0xE0080))  # every Cc, Cf and Cs lies here
    if unicodedata.category(chr(code)) in ("Cc", "Cf", "Cs") and chr(code) not in "\n\t"
}
"""Code points dropped: C0/C1 controls but tab and newline, format characters, surrogates."""


@dataclass(frozen=True, slots=True)
class NormalizeConfig:
    """Which parts of the normalisation run (all on by default)."""

    nfkc: bool = True
    fullwidth: bool = True
    controls: bool = True
    whitespace: bool = True


def normalize(text: str, config: NormalizeConfig = NormalizeConfig()) -> str:
    """``text`` normalised as the module docstring says."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    for _ in range(3):  # NFKC may expose a control or space another pass removes
        before = text
        text = _once(text, config)
        if text == before:
            break
    return text


def _once(text: str, config: NormalizeConfig) -> str:
    if config.nfkc:
        text = unicodedata.normalize("NFKC", text)
    if config.fullwidth:
        text = text.translate(_FULLWIDTH)
    if config.controls:
        text = text.translate(_CONTROLS)
    if config.whitespace:
        text = _SPACES.sub(" ", text)
        text = _LINE_EDGES.sub("\n", text)
        text = _BLANK_LINES.sub("\n\n", text).strip()
    return text

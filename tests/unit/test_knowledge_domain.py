"""Chunking and rank fusion of knowledge bases (domain/knowledge.py)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.domain.errors import ValidationError
from suanwang.domain.knowledge import (
    ChunkSettings,
    chunk_text,
    fuse_rankings,
    media_type_of,
    split_sentences,
)

PIECES = st.sampled_from(
    [
        "北京大学成立于1898年。",
        "水库蓄水量为420万立方米！",
        "Is it? ",
        "The river flows north. ",
        "\n\n",
        "- item one\n",
        "很长的一句话没有标点" * 12,
        "word " * 30,
    ]
)


def test_chinese_sentences_split_without_spaces() -> None:
    assert split_sentences("第一句。第二句！第三句？第四句；end") == [
        "第一句。",
        "第二句！",
        "第三句？",
        "第四句；",
        "end",
    ]
    assert split_sentences("One. Two!Three") == ["One.", "Two!", "Three"]


@settings(max_examples=200, deadline=None)
@given(st.lists(PIECES, max_size=40), st.integers(50, 300), st.integers(0, 100))
def test_chunks_respect_size_and_keep_every_character(
    pieces: list[str], size: int, overlap: int
) -> None:
    overlap = min(overlap, size // 2)
    text = "".join(pieces)
    chunks = chunk_text(text, ChunkSettings(size, overlap))
    assert all(0 < len(c) <= size for c in chunks)
    squeezed = "".join(text.split())
    assert set(squeezed) <= set("".join("".join(chunks).split()))
    if squeezed:
        assert chunks


def test_overlap_repeats_the_previous_tail() -> None:
    text = "".join(f"第{i}句话在这里。" for i in range(40))
    chunks = chunk_text(text, ChunkSettings(60, 20))
    for before, after in itertools.pairwise(chunks):
        head = after[: after.index("。") + 1]
        assert head in before


def test_bad_settings_are_422() -> None:
    with pytest.raises(ValidationError):
        ChunkSettings(10, 0)
    with pytest.raises(ValidationError):
        ChunkSettings(100, 60)


def test_rrf_rewards_agreement() -> None:
    fused = fuse_rankings([["a", "b", "c"], ["b", "d"]])
    assert max(fused, key=fused.__getitem__) == "b"
    assert fused["a"] == pytest.approx(1 / 61)
    assert "d" in fused


def test_media_type_by_suffix() -> None:
    assert media_type_of("Report.PDF").value == "application/pdf"
    with pytest.raises(ValidationError) as caught:
        media_type_of("x.exe")
    assert caught.value.field == "file"

"""PII scrubbing (suanwang.corpus.pii): table cases and Hypothesis properties.

Valid numbers are built here with their own checksum code (not the module's), so a wrong
check in the module cannot make its own test pass.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanwang.corpus.pii import bank_card_valid, id_cn_valid, ipv4_valid, scrub

ID_WEIGHTS = [pow(2, 17 - i, 11) for i in range(17)]


def id_check(body: str) -> str:
    return "10X98765432"[sum(int(d) * w for d, w in zip(body, ID_WEIGHTS, strict=True)) % 11]


def luhn_digit(body: str) -> str:
    total = 0
    for i, c in enumerate(reversed(body)):
        d = int(c) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str((10 - total % 10) % 10)


VALID_ID = "11010519491231002" + id_check("11010519491231002")
VALID_CARD = "622202020000123" + luhn_digit("622202020000123")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"身份证号{VALID_ID}。", "身份证号[ID_CN]。"),
        (f"ID {VALID_ID[:-1]}{'0' if VALID_ID[-1] != '0' else '1'} stays", None),
        (f"卡号{VALID_CARD}", "卡号[BANK_CARD]"),
        (
            f"card {VALID_CARD[:4]} {VALID_CARD[4:8]} {VALID_CARD[8:12]} {VALID_CARD[12:]}.",
            "card [BANK_CARD].",
        ),
        ("电话13812345678。", "电话[PHONE_CN]。"),
        ("call +86 138 1234 5678 now", "call [PHONE_CN] now"),
        ("call 138-1234-5678", "call [PHONE_CN]"),
        ("编号1381234567（十位）", None),
        ("编号138123456789（十二位）", None),
        ("订单号20231381234567890", None),  # a phone-like run inside a longer number
        ("mail zhang.wei@example.com.", "mail [EMAIL]."),
        ("邮箱li_na88@mail.example.cn谢谢", "邮箱[EMAIL]谢谢"),
        ("host 192.168.1.20.", "host [IPV4]."),
        ("bad 999.1.1.1 and 256.1.1.1", None),
        ("version 1.2.3.4.5", None),
        ("v6 2001:db8::8a2e:370:7334 here", "v6 [IPV6] here"),
        ("time 12:30:45 is not an address", None),
        ("ratio 3:2 and :: alone", None),
    ],
)
def test_scrub_table(text: str, expected: str | None) -> None:
    out, counts = scrub(text)
    assert out == (text if expected is None else expected)
    assert (sum(counts.values()) == 0) == (expected is None)


def test_checksum_validators() -> None:
    assert id_cn_valid(VALID_ID)
    assert not id_cn_valid("110105194902300020")  # 30 February
    assert bank_card_valid(VALID_CARD)
    assert not bank_card_valid("1" + VALID_CARD[1:])  # no issuer prefix (and Luhn breaks)
    assert ipv4_valid("0.0.0.0")
    assert not ipv4_valid("01.2.3.4")


regions = st.sampled_from(
    ["110101", "310104", "440305", "510107", "620102", "650102", "230103", "350203"]
)
births = st.integers(0, 40000).map(lambda d: date(1900, 1, 1) + timedelta(days=d))


@st.composite
def resident_ids(draw: st.DrawFn) -> str:
    body = draw(regions) + draw(births).strftime("%Y%m%d") + f"{draw(st.integers(0, 999)):03d}"
    return body + id_check(body)


@st.composite
def cards(draw: st.DrawFn) -> str:
    prefix = draw(st.sampled_from(["62", "4", "51", "3528", "622"]))
    length = draw(st.integers(13, 19))
    rest = draw(
        st.text("0123456789", min_size=length - len(prefix) - 1, max_size=length - len(prefix) - 1)
    )
    return prefix + rest + luhn_digit(prefix + rest)


contexts = st.sampled_from([("身份证号", "。"), ("ID ", " ok"), ("", ""), ("编号：", "，谢谢")])


@given(resident_ids(), contexts)
def test_every_valid_id_is_scrubbed(number: str, context: tuple[str, str]) -> None:
    out, counts = scrub(context[0] + number + context[1])
    assert counts["ID_CN"] == 1
    assert out == f"{context[0]}[ID_CN]{context[1]}"


@given(resident_ids(), st.integers(0, 16), st.integers(1, 9))
def test_an_id_with_one_digit_changed_is_never_an_id(number: str, at: int, delta: int) -> None:
    digit = str((int(number[at]) + delta) % 10)
    mutated = number[:at] + digit + number[at + 1 :]
    out, counts = scrub(f"编号{mutated}。")
    assert counts["ID_CN"] == 0  # ISO 7064 MOD 11-2 catches every single-digit error
    if counts:  # only if the mutated digits happen to be a valid card number
        assert bank_card_valid(mutated)
        assert out == "编号[BANK_CARD]。"
    else:
        assert out == f"编号{mutated}。"


@given(cards(), st.booleans())
def test_every_valid_card_is_scrubbed(number: str, grouped: bool) -> None:
    written = " ".join(number[i : i + 4] for i in range(0, len(number), 4)) if grouped else number
    out, counts = scrub(f"卡号 {written} 。")
    assert sum(counts.values()) == 1
    assert out in ("卡号 [BANK_CARD] 。", "卡号 [ID_CN] 。")  # an 18-digit number can be both
    assert counts["BANK_CARD"] == 1 or id_cn_valid(number)


@given(cards(), st.data())
def test_a_card_with_one_digit_changed_stays(number: str, data: st.DataObject) -> None:
    at = data.draw(st.integers(0, len(number) - 1))
    digit = str((int(number[at]) + data.draw(st.integers(1, 9))) % 10)
    mutated = number[:at] + digit + number[at + 1 :]
    _out, counts = scrub(f"流水号{mutated}。")
    assert counts["BANK_CARD"] == 0  # Luhn catches every single-digit error
    assert counts["ID_CN"] == 0 or id_cn_valid(mutated)


@given(
    st.text("0123456789", min_size=1, max_size=4),
    resident_ids(),
    st.text("0123456789", min_size=1, max_size=4),
)
def test_no_id_is_found_inside_a_longer_digit_run(before: str, number: str, after: str) -> None:
    _, counts = scrub(before + number + after)
    assert counts["ID_CN"] == 0

"""Generate a labelled mixed Chinese/English corpus sample for the cleaning pipeline.

    python tests/data/corpus/make_corpus.py --seed 1 --out tests/data/corpus/tuning
    python tests/data/corpus/make_corpus.py --seed 2 --out tests/data/corpus/heldout

writes ``<out>.jsonl`` (records ``{"id", "text"}``) and ``<out>.labels.jsonl`` (one label per
record: ``kind`` and the planted facts). Deterministic by seed; no downloads: the text is built
from the templates and word lists of vocab.py. Kinds:

- ``clean``: 3-8 template sentences (title line, one to three paragraphs), zh or en;
- ``pii``: a clean document with 1-3 sentences carrying generated PII of valid checksums
  (``pii``: list of ``{type, value}``);
- ``decoy``: a clean document with look-alikes that are not PII (``decoys``): an ID number
  with a wrong check digit, a Luhn-failing card, 10/12-digit "phones", impossible IPv4s;
- ``exact_dup``/``near_dup`` of an earlier clean document (``of``): exact copies (some with
  full-width or whitespace variants that normalise to the same text) and near copies with
  realistic edits (``edits``): punctuation swaps, full/half-width swaps, inserted boilerplate,
  1-4 % of the characters changed;
- ``low_quality``: symbol soup, repeated lines, too short (``subtype``);
- ``foreign``: fr, de, es, ja, ru or ko (``lang``).

The checksums here are written independently of ``suanwang.corpus.pii`` (a grader must not
share the code it grades).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import string
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, ClassVar

import vocab

COUNTS = {
    "clean": 900,
    "pii": 260,
    "decoy": 130,
    "exact_dup": 80,
    "near_dup": 130,
    "low": 60,
    "foreign": 36,
}
REGIONS = [
    "110101",
    "110105",
    "310104",
    "310115",
    "440305",
    "440106",
    "510107",
    "330106",
    "420102",
    "610113",
    "320102",
    "500103",
    "120101",
    "370102",
    "350203",
    "620102",
    "650102",
    "210102",
    "230103",
    "530102",
    "450103",
    "460105",
    "640104",
    "150102",
]
ZH_FILLER = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处理府研质七".strip()


@dataclass
class Doc:
    id: str
    text: str
    label: dict[str, Any] = field(default_factory=dict)


class Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seed = seed

    # ---- clean text -------------------------------------------------------------------
    def fill(self, template: str, slots: dict[str, list[str]]) -> str:
        out = template
        for name, words in slots.items():
            while "{" + name + "}" in out:
                out = out.replace("{" + name + "}", self.rng.choice(words), 1)
        return out

    def clean_text(self, lang: str) -> str:
        rng = self.rng
        topics, slots, titles = (
            (vocab.ZH_TOPICS, vocab.ZH_SLOTS, vocab.ZH_TITLES)
            if lang == "zh"
            else (vocab.EN_TOPICS, vocab.EN_SLOTS, vocab.EN_TITLES)
        )
        openers = vocab.ZH_OPENERS if lang == "zh" else vocab.EN_OPENERS
        chosen = rng.sample(range(len(topics)), rng.choice([2, 2, 3]))
        pool = [t for i in chosen for t in topics[i]]
        sentences = [
            (rng.choice(openers) if rng.random() < 0.3 else "") + self.fill(t, slots)
            for t in rng.sample(pool, rng.randint(4, 8))
        ]
        joiner = "" if lang == "zh" else " "
        cut = sorted(
            rng.sample(range(1, len(sentences)), min(len(sentences) - 1, rng.randint(0, 2)))
        )
        paragraphs, start = [], 0
        for end in [*cut, len(sentences)]:
            paragraphs.append(joiner.join(sentences[start:end]))
            start = end
        title = self.fill(rng.choice(titles), slots)
        return "\n".join([title, *paragraphs])

    # ---- PII and decoys -----------------------------------------------------------------
    def id_number(self, valid: bool) -> str:
        rng = self.rng
        born = date(1950, 1, 1) + timedelta(days=rng.randrange(20000))
        body = rng.choice(REGIONS) + born.strftime("%Y%m%d") + f"{rng.randrange(1000):03d}"
        weights = [2 ** (17 - i) % 11 for i in range(17)]
        check = "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]
        if valid:
            return body + check
        wrong = [c for c in "0123456789X" if c != check and not (c != "X" and _card_like(body + c))]
        return body + rng.choice(wrong)

    def card_number(self, valid: bool) -> str:
        rng = self.rng
        prefix, length = rng.choice([("62", 16), ("62", 19), ("4", 16), ("51", 16), ("622", 16)])
        body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
        good = _luhn_digit(body)
        last = good if valid else rng.choice([d for d in string.digits if d != good])
        number = body + last
        if rng.random() < 0.4:
            number = " ".join(number[i : i + 4] for i in range(0, len(number), 4))
        return number

    def phone(self) -> str:
        rng = self.rng
        digits = "1" + rng.choice("3456789") + "".join(rng.choice(string.digits) for _ in range(9))
        style = rng.randrange(4)
        if style == 1:
            return f"+86 {digits[:3]} {digits[3:7]} {digits[7:]}"
        if style == 2:
            return f"{digits[:3]}-{digits[3:7]}-{digits[7:]}"
        if style == 3:
            return "+86" + digits
        return digits

    def bad_phone(self) -> str:
        rng = self.rng
        length = rng.choice([10, 12])
        return (
            "1"
            + rng.choice("3456789")
            + "".join(rng.choice(string.digits) for _ in range(length - 2))
        )

    def email(self) -> str:
        rng = self.rng
        user = rng.choice(
            [
                "zhang.wei",
                "li_na",
                "wang.fang88",
                "j.smith",
                "maria.lopez",
                "chen2020",
                "kevin.o",
                "xiaoming",
                "liu.yang",
                "sarah_k",
            ]
        )
        domain = rng.choice(
            [
                "example.com",
                "mail.example.cn",
                "qq-mail.example.org",
                "corp.example.net",
                "163.example.com",
            ]
        )
        return f"{user}{rng.randrange(100)}@{domain}"

    def ipv4(self) -> str:
        return ".".join(str(self.rng.randrange(1, 255)) for _ in range(4))

    def bad_ipv4(self) -> str:
        rng = self.rng
        octets = [str(rng.randrange(1, 255)) for _ in range(4)]
        octets[rng.randrange(4)] = str(rng.choice([256, 300, 999, 512]))
        return ".".join(octets)

    def ipv6(self) -> str:
        groups = [self.rng.randrange(0, 65536) if self.rng.random() > 0.3 else 0 for _ in range(6)]
        address = ipaddress.IPv6Address(":".join(["2001", "db8", *(f"{g:x}" for g in groups)]))
        return address.compressed

    PII_ZH: ClassVar[dict[str, list[str]]] = {
        "ID_CN": ["身份证号码：{v}，请妥善保管。", "申请人身份证号{v}已登记。"],
        "BANK_CARD": ["请将款项汇入账户{v}。", "退款将返回尾号所在的银行卡{v}。"],
        "PHONE_CN": ["如有疑问请拨打{v}联系客服。", "联系人手机：{v}。"],
        "EMAIL": ["简历请发送至{v}，邮件标题注明岗位。", "投稿邮箱{v}。"],
        "IPV4": ["服务器地址为{v}，请勿对外公开。", "异常登录来自{v}。"],
        "IPV6": ["新机房分配的IPv6地址为{v}。", "网关地址{v}已生效。"],
    }
    PII_EN: ClassVar[dict[str, list[str]]] = {
        "ID_CN": ["My resident ID number is {v}.", "The form lists ID {v} for the applicant."],
        "BANK_CARD": ["Please charge card {v} for the deposit.", "Refunds go back to card {v}."],
        "PHONE_CN": ["You can reach the Shanghai office at {v}.", "Call {v} for directions."],
        "EMAIL": ["Send questions to {v} before Friday.", "Contact: {v}"],
        "IPV4": [
            "The login came from {v} at midnight.",
            "The printer is at {v} on the office network.",
        ],
        "IPV6": ["The new server answers at {v}.", "Traffic was routed through {v}."],
    }
    DECOY_ZH: ClassVar[dict[str, str]] = {
        "ID_CN": "档案编号{v}（非身份证）。",
        "BANK_CARD": "流水号{v}，仅供对账。",
        "PHONE": "客服热线{v}暂停使用。",
        "IPV4": "版本号{v}已发布。",
    }
    DECOY_EN: ClassVar[dict[str, str]] = {
        "ID_CN": "Tracking code {v} is not an ID.",
        "BANK_CARD": "Reference number {v} appears on the receipt.",
        "PHONE": "The old extension {v} no longer works.",
        "IPV4": "Firmware build {v} fixed the bug.",
    }

    def pii_value(self, kind: str) -> str:
        return {
            "ID_CN": lambda: self.id_number(True),
            "BANK_CARD": lambda: self.card_number(True),
            "PHONE_CN": self.phone,
            "EMAIL": self.email,
            "IPV4": self.ipv4,
            "IPV6": self.ipv6,
        }[kind]()

    def decoy_value(self, kind: str) -> str:
        return {
            "ID_CN": lambda: self.id_number(False),
            "BANK_CARD": lambda: self.card_number(False),
            "PHONE": self.bad_phone,
            "IPV4": self.bad_ipv4,
        }[kind]()

    def with_sentences(self, text: str, sentences: list[str], lang: str) -> str:
        lines = text.split("\n")
        for sentence in sentences:
            at = self.rng.randrange(1, len(lines))
            joiner = "" if lang == "zh" else " "
            lines[at] = lines[at] + joiner + sentence
        return "\n".join(lines)

    def pii_doc(self, lang: str) -> tuple[str, list[dict[str, str]]]:
        templates = self.PII_ZH if lang == "zh" else self.PII_EN
        kinds = self.rng.sample(sorted(templates), self.rng.randint(1, 3))
        planted = [{"type": k, "value": self.pii_value(k)} for k in kinds]
        sentences = [self.rng.choice(templates[p["type"]]).format(v=p["value"]) for p in planted]
        return self.with_sentences(self.clean_text(lang), sentences, lang), planted

    def decoy_doc(self, lang: str) -> tuple[str, list[dict[str, str]]]:
        templates = self.DECOY_ZH if lang == "zh" else self.DECOY_EN
        kinds = self.rng.sample(sorted(templates), self.rng.randint(1, 2))
        planted = [{"type": k, "value": self.decoy_value(k)} for k in kinds]
        sentences = [templates[p["type"]].format(v=p["value"]) for p in planted]
        return self.with_sentences(self.clean_text(lang), sentences, lang), planted

    # ---- duplicates ---------------------------------------------------------------------
    def exact_copy(self, text: str) -> tuple[str, list[str]]:
        choice = self.rng.randrange(3)
        if choice == 1:  # trailing spaces and a CRLF: normalises to the same text
            return text.replace("\n", "  \r\n") + " ", ["whitespace"]
        if choice == 2:
            return _to_fullwidth(text, self.rng, 1.0), ["fullwidth"]
        return text, []

    def near_copy(self, text: str, lang: str) -> tuple[str, list[str]]:
        rng = self.rng
        edits = rng.sample(["punctuation", "width", "boilerplate", "chars"], rng.randint(2, 3))
        if "chars" not in edits and rng.random() < 0.6:
            edits.append("chars")
        for edit in edits:
            if edit == "punctuation":
                text = _swap_punctuation(text, rng)
            elif edit == "width":
                text = _to_fullwidth(text, rng, 0.5)
            elif edit == "boilerplate":
                pool = vocab.ZH_BOILERPLATE if lang == "zh" else vocab.EN_BOILERPLATE
                line = rng.choice(pool)
                text = f"{line}\n{text}" if rng.random() < 0.5 else f"{text}\n{line}"
            else:
                text = self.change_chars(text, lang, rng.uniform(0.01, 0.04))
        return text, edits

    def change_chars(self, text: str, lang: str, share: float) -> str:
        chars = list(text)
        letters = [i for i, c in enumerate(chars) if c.isalpha()]
        for i in self.rng.sample(letters, max(1, int(len(letters) * share))):
            chars[i] = (
                self.rng.choice(ZH_FILLER)
                if lang == "zh"
                else self.rng.choice(string.ascii_lowercase)
            )
        return "".join(chars)

    # ---- low quality and foreign -------------------------------------------------------
    def low_doc(self) -> tuple[str, str]:
        rng = self.rng
        subtype = rng.choice(["symbols", "repeated_lines", "short"])
        if subtype == "symbols":
            pool = "!@#$%^&*()_+=-[]{}|;:<>?/~`★☆■□◆▲→←↑↓" + "ab中文12"
            text = "".join(rng.choice(pool) for _ in range(rng.randint(80, 300)))
        elif subtype == "repeated_lines":
            lang = rng.choice(["zh", "en"])
            line = self.clean_text(lang).split("\n")[1][:80]
            text = "\n".join([line] * rng.randint(6, 15))
        else:
            text = rng.choice(
                [
                    "好的。",
                    "谢谢！",
                    "收到",
                    "ok thanks",
                    "See you.",
                    "顶一下",
                    "沙发",
                    "+1",
                    "lol",
                    "已阅",
                ]
            ) + rng.choice(["", "!", "。"]) * rng.randint(0, 2)
        return text, subtype

    def foreign_doc(self) -> tuple[str, str]:
        lang = self.rng.choice(sorted(vocab.FOREIGN))
        sentences = self.rng.sample(vocab.FOREIGN[lang], self.rng.randint(3, 5))
        return ("" if lang in ("ja",) else " ").join(sentences), lang


def _luhn_digit(body: str) -> str:
    total = 0
    for i, c in enumerate(reversed(body)):
        d = int(c)
        if i % 2 == 0:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def _card_like(number: str) -> bool:
    """Whether a decoy ID would also pass as a bank card (Luhn + issuer prefix)."""
    issuer = number[0] in "3456" or "22" <= number[:2] <= "27"
    return issuer and _luhn_digit(number[:-1]) == number[-1]


def _to_fullwidth(text: str, rng: random.Random, share: float) -> str:
    return "".join(
        chr(ord(c) + 0xFEE0) if "!" <= c <= "~" and c != " " and rng.random() < share else c
        for c in text
    )


def _swap_punctuation(text: str, rng: random.Random) -> str:
    swaps = {"，": ",", "。": ".", "：": ":", ",": "，", ".": "。", "、": ","}
    return "".join(swaps[c] if c in swaps and rng.random() < 0.7 else c for c in text)


def generate(seed: int) -> list[Doc]:
    gen, rng = Generator(seed), random.Random(seed * 7919)
    keyed: list[tuple[float, Doc]] = []
    clean: list[tuple[float, Doc, str]] = []
    serial = iter(range(1, 10**6))

    def add(text: str, label: dict[str, Any], key: float | None = None) -> Doc:
        doc = Doc(f"s{seed}-{next(serial):05d}", text, label)
        keyed.append((rng.random() if key is None else key, doc))
        return doc

    def lang() -> str:
        return "zh" if rng.random() < 0.6 else "en"

    for _ in range(COUNTS["clean"]):
        language = lang()
        doc = add(gen.clean_text(language), {"kind": "clean", "lang": language})
        clean.append((keyed[-1][0], doc, language))
    for _ in range(COUNTS["pii"]):
        language = lang()
        text, planted = gen.pii_doc(language)
        add(text, {"kind": "pii", "lang": language, "pii": planted})
    for _ in range(COUNTS["decoy"]):
        language = lang()
        text, planted = gen.decoy_doc(language)
        add(text, {"kind": "decoy", "lang": language, "decoys": planted})
    originals = rng.sample(clean, COUNTS["exact_dup"] + COUNTS["near_dup"])
    for i, (key, original, language) in enumerate(originals):
        later = key + rng.random() * (1 - key)
        if i < COUNTS["exact_dup"]:
            text, edits = gen.exact_copy(original.text)
            add(
                text,
                {"kind": "exact_dup", "lang": language, "of": original.id, "edits": edits},
                later,
            )
        else:
            text, edits = gen.near_copy(original.text, language)
            add(
                text,
                {"kind": "near_dup", "lang": language, "of": original.id, "edits": edits},
                later,
            )
    for _ in range(COUNTS["low"]):
        text, subtype = gen.low_doc()
        add(text, {"kind": "low_quality", "subtype": subtype})
    for _ in range(COUNTS["foreign"]):
        text, language = gen.foreign_doc()
        add(text, {"kind": "foreign", "lang": language})
    return [doc for _, doc in sorted(keyed, key=lambda pair: pair[0])]


def write(docs: list[Doc], out: Path) -> None:
    with out.with_suffix(".jsonl").open("w", encoding="utf-8") as data:
        for doc in docs:
            data.write(json.dumps({"id": doc.id, "text": doc.text}, ensure_ascii=False) + "\n")
    with Path(f"{out}.labels.jsonl").open("w", encoding="utf-8") as labels:
        for doc in docs:
            labels.write(json.dumps({"id": doc.id, **doc.label}, ensure_ascii=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument(
        "--out", type=Path, required=True, help="path prefix, e.g. tests/data/corpus/tuning"
    )
    args = parser.parse_args()
    write(generate(args.seed), args.out)


if __name__ == "__main__":
    main()

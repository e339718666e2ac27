"""Which language identifier for the corpus pipeline: langid vs lingua on short zh/en text.

    PYTHONPATH=src python benchmarks/corpus_langid.py

Hand-written sentences (not from the generator's templates): Chinese and English, plus
Japanese, Korean, French, German, Spanish, Russian, Portuguese, Italian and Vietnamese
distractors. Each is classified whole, cut short (first 8 characters of zh/ja/ko, 24 of the
others) and shorter (4 and 12). Scored as the pipeline uses it: is it zh, is it en, is it
neither (a distractor must not come out as zh or en). Also load time and per-text time.
lingua (``lingua-language-detector``, 96 MB wheel) is measured when installed; it is not a
dependency. Results: benchmarks/results/corpus_langid.{json,md}.
"""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Callable
from pathlib import Path

from suanwang.corpus.language import LanguageConfig, LanguageFilter

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"

ZH = [
    "我今天早上去菜市场买了两斤西红柿。",
    "这家餐厅的红烧肉做得特别地道。",
    "请问去火车站怎么走？",
    "孩子们在操场上踢足球，玩得很开心。",
    "明天有雨，出门记得带伞。",
    "他把手机忘在出租车上了。",
    "这本书我看了三遍，每次都有新的体会。",
    "公司决定下个月开始实行弹性工作制。",
    "奶奶每天傍晚都会去公园跳广场舞。",
    "新开的地铁线路让通勤时间缩短了一半。",
    "你周末有空吗？我们一起去爬山吧。",
    "这款软件的界面设计得很简洁。",
    "医生说他需要多休息，少熬夜。",
    "今年的春节联欢晚会节目很精彩。",
    "小区门口新开了一家便利店。",
    "考试成绩明天上午公布。",
    "我们用Python写了一个数据清洗脚本。",
    "这个问题需要从长计议，不能操之过急。",
    "他在GitHub上开源了自己的项目。",
    "研究表明，适量运动有助于改善睡眠质量。",
    "快递员说包裹下午三点前送到。",
    "图书馆周一闭馆，其他时间正常开放。",
    "这里的房租比去年涨了不少。",
    "老师让我们每天背二十个英语单词。",
    "春天来了，路边的樱花都开了。",
]
EN = [
    "I left my keys on the kitchen table again.",
    "The meeting has been moved to Thursday afternoon.",
    "Could you send me the report by tomorrow?",
    "Our team won the match in the final minute.",
    "The bakery on the corner sells fresh bread every morning.",
    "She has been learning to play the piano for two years.",
    "Traffic was terrible because of the accident on the bridge.",
    "Please remember to water the plants while I'm away.",
    "The new policy takes effect at the start of next month.",
    "We watched the sunset from the top of the hill.",
    "He fixed the bug by rewriting the parser from scratch.",
    "The museum is free on the first Sunday of each month.",
    "My grandmother makes the best apple pie in town.",
    "The flight was delayed by three hours due to fog.",
    "Scientists found a new species of frog in the rainforest.",
    "Let's grab coffee after the lecture.",
    "The library extended its opening hours during exams.",
    "Rents in the city center rose sharply last year.",
    "The kids built a sandcastle on the beach.",
    "Turn left at the second traffic light.",
    "This laptop battery lasts about ten hours.",
    "The chef recommended the grilled salmon.",
    "Voters will choose a new mayor in November.",
    "I prefer tea to coffee in the evening.",
    "The concert tickets sold out in minutes.",
]
OTHER = {
    "ja": [
        "今日はとても暑いですね。",
        "駅までどうやって行きますか。",
        "昨日、友達と映画を見に行きました。",
    ],
    "ko": ["오늘 날씨가 정말 좋네요.", "지하철역이 어디에 있어요?", "어제 친구와 영화를 봤어요."],
    "fr": [
        "Je voudrais un café, s'il vous plaît.",
        "Le train part à huit heures du matin.",
        "Nous avons visité le musée hier.",
    ],
    "de": [
        "Ich habe meinen Schlüssel vergessen.",
        "Der Zug fährt um acht Uhr ab.",
        "Wir gehen heute Abend ins Kino.",
    ],
    "es": [
        "¿Dónde está la estación de tren?",
        "Mañana vamos a la playa con los niños.",
        "El restaurante abre a las nueve.",
    ],
    "ru": ["Я забыл ключи дома.", "Поезд отправляется в восемь утра.", "Мы ходили в музей вчера."],
    "pt": [
        "Eu gosto muito de café pela manhã.",
        "O ônibus chega às sete horas.",
        "Vamos ao cinema no sábado.",
    ],
    "it": [
        "Vorrei un bicchiere d'acqua, per favore.",
        "Il treno parte alle otto.",
        "Abbiamo visitato il museo ieri.",
    ],
    "vi": ["Hôm nay trời rất đẹp.", "Ga tàu ở đâu vậy?", "Chúng tôi đi xem phim hôm qua."],
}
CJK = ("zh", "ja", "ko")


def cases() -> list[tuple[str, str, str]]:
    """(expected class, cut, text): expected is zh, en or other."""
    rows: list[tuple[str, str, str]] = []
    groups = [("zh", "zh", ZH), ("en", "en", EN)]
    groups += [("other", code, texts) for code, texts in OTHER.items()]
    for expected, code, texts in groups:
        shorter, short = (4, 8) if code in CJK else (12, 24)
        for text in texts:
            rows += [(expected, "1 whole", text)]
            rows += [(expected, "2 short", text[:short])]
            rows += [(expected, "3 shorter", text[:shorter])]
    return rows


def score(detect: Callable[[str], str]) -> dict[str, object]:
    rows = cases()
    started = time.perf_counter()
    answers = [detect(text) for _, _, text in rows]
    per_text_ms = (time.perf_counter() - started) / len(rows) * 1000
    table: dict[str, dict[str, float]] = {}
    for expected in ("zh", "en", "other"):
        for cut in sorted({c for e, c, _ in rows if e == expected}):
            picked = [
                (answer if answer in ("zh", "en") else "other") == expected
                for (e, c, _), answer in zip(rows, answers, strict=True)
                if e == expected and c == cut
            ]
            table.setdefault(expected, {})[cut] = round(sum(picked) / len(picked), 3)
    overall = sum(
        (a if a in ("zh", "en") else "other") == e
        for (e, _, _), a in zip(rows, answers, strict=True)
    ) / len(rows)
    return {"accuracy": table, "overall": round(overall, 3), "ms_per_text": round(per_text_ms, 3)}


def main() -> None:
    result: dict[str, object] = {}
    started = time.perf_counter()
    ours = LanguageFilter(LanguageConfig())
    result["langid"] = {
        "load_s": round(time.perf_counter() - started, 2),
        **score(lambda t: ours.detect(t)[0]),
    }
    if importlib.util.find_spec("lingua") is not None:
        from lingua import LanguageDetectorBuilder

        started = time.perf_counter()
        detector = (
            LanguageDetectorBuilder.from_all_languages().with_preloaded_language_models().build()
        )
        load_s = round(time.perf_counter() - started, 2)

        def lingua_detect(text: str) -> str:
            found = detector.detect_language_of(text)
            return found.iso_code_639_1.name.lower() if found is not None else "und"

        result["lingua"] = {"load_s": load_s, **score(lingua_detect)}
    else:
        result["lingua"] = "not installed"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "corpus_langid.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Language identifier choice (benchmarks/corpus_langid.py)", ""]
    lines += [
        "| identifier | load s | ms/text | overall | zh whole/short/shorter | en (same) | other |"
    ]
    lines += ["|---|---:|---:|---:|---|---|---|"]
    for name, row in result.items():
        if not isinstance(row, dict):
            lines.append(f"| {name} | {row} | | | | | |")
            continue
        acc = row["accuracy"]
        cells = [
            " / ".join(str(v) for k, v in sorted(acc[c].items())) for c in ("zh", "en", "other")
        ]
        lines.append(
            f"| {name} | {row['load_s']} | {row['ms_per_text']} | {row['overall']} | "
            + " | ".join(cells)
            + " |"
        )
    lines += [
        "",
        f"{len(cases())} texts: 25 zh, 25 en and 27 other sentences (nine languages), each whole,"
        " cut short and shorter; 'other' right = not taken for zh or en.",
        "",
    ]
    (RESULTS / "corpus_langid.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""The job program end to end in-process: JSONL/Parquet in and out, report, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import suanwang.corpus
from suanwang.corpus.command import main

ZH = "上个月，成都市统计局启动了五十余家智慧停车场项目。据交通运输局介绍，停车场的使用人数稳步增长，群众满意度也随之提高。"
ZH2 = "昨天下午，杭州图书馆举办了一场围棋比赛，吸引了一千多名棋迷参加。王先生每天坚持练习围棋，已经坚持了好几年，他说下棋让人平静。"
EN = "Earlier this month, the transit authority in Denver opened the new light rail line. According to Maria Lopez, ridership has steadily increased since it began."
FR = (
    "La mairie a annoncé l'ouverture d'une nouvelle bibliothèque dans le quartier nord de la ville."
)


def write_jsonl(path: Path, records: list[object]) -> Path:
    path.write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n", encoding="utf-8"
    )
    return path


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_clean_jsonl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_jsonl(
        tmp_path / "in.jsonl",
        [
            {"id": "a", "text": ZH + "联系电话13812345678。", "source": "web"},
            {"id": "b", "text": "ＡＢＣ " + EN},
            {"id": "c", "text": ZH + "联系电话13812345678。"},
            {"text": FR},
            {"id": "e", "text": "好的"},
            {"id": "f", "text": ZH2},
        ],
    )
    out = tmp_path / "out"
    assert main(["clean", "--input", str(source), "--output", str(out)]) == 0
    assert "read 6, wrote 3, removed 3" in capsys.readouterr().out
    cleaned = lines(out / "cleaned.jsonl")
    assert [r["id"] for r in cleaned] == ["a", "b", "f"]
    zh = ZH.replace("，", ",")  # NFKC: the full-width comma is the ASCII one
    assert cleaned[0] == {"id": "a", "text": zh + "联系电话[PHONE_CN]。", "source": "web"}
    assert cleaned[1]["text"] == "ABC " + EN
    removed = {r["id"]: (r["step"], r["reason"]) for r in lines(out / "removed.jsonl")}
    assert removed == {
        "c": ("exact_dedup", "exact_duplicate"),
        "in.jsonl:4": ("language", "language_fr"),
        "e": ("quality", "too_short"),
    }
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    steps = {s["step"]: s for s in report["steps"]}
    assert list(steps) == ["normalize", "exact_dedup", "near_dedup", "language", "pii", "quality"]
    assert (report["docs_read"], report["docs_written"], report["docs_removed"]) == (6, 3, 3)
    assert steps["exact_dedup"]["removed"] == 1
    assert steps["exact_dedup"]["in"] == 6
    assert steps["pii"]["changes"] == {"PHONE_CN": 1}
    assert steps["pii"]["modified"] == 1
    example = steps["exact_dedup"]["examples"][0]
    assert "[PHONE_CN]" in example["excerpt"]
    assert "13812345678" not in json.dumps(report)
    assert "| quality | 4 | 1 | 3 |" in (out / "report.md").read_text(encoding="utf-8")


def test_parquet_in_and_out_with_a_config_file(tmp_path: Path) -> None:
    source = tmp_path / "in.parquet"
    table = pa.table({"doc": [1, 2, 3], "content": [ZH, EN, ZH]})
    pq.write_table(table, source)
    config = tmp_path / "clean.toml"
    config.write_text(
        'text_field = "content"\nid_field = "doc"\noutput_format = "parquet"\n'
        '[language]\nkeep = ["zh"]\n[near_dedup]\nenabled = false\n',
        encoding="utf-8",
    )
    out = tmp_path / "out"
    assert (
        main(["clean", "--input", str(source), "--output", str(out), "--config", str(config)]) == 0
    )
    result = pq.read_table(out / "cleaned.parquet").to_pylist()
    assert result == [{"doc": 1, "content": ZH.replace("，", ",")}]
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert [s["step"] for s in report["steps"]] == [
        "normalize",
        "exact_dedup",
        "language",
        "pii",
        "quality",
    ]


def test_several_inputs_and_empty_output(tmp_path: Path) -> None:
    one = write_jsonl(tmp_path / "one.jsonl", [{"text": "!!!"}])
    two = write_jsonl(tmp_path / "two.jsonl", [{"text": "???"}])
    out = tmp_path / "out"
    assert main(["clean", "--input", str(one), "--input", str(two), "--output", str(out)]) == 0
    assert (out / "cleaned.jsonl").read_text() == ""
    assert len(lines(out / "removed.jsonl")) == 2


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ('{"text": "ok"}\nnot json\n', "in.jsonl:2: not JSON"),
        ('{"body": "no text field"}\n', "in.jsonl:1: no string field 'text'"),
        ('["a list"]\n', "in.jsonl:1: not a JSON object"),
    ],
)
def test_bad_records_fail_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], records: str, message: str
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(records, encoding="utf-8")
    out = tmp_path / "out"
    assert main(["clean", "--input", str(source), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert message in err
    assert err.count("\n") == 1
    assert sorted(p.name for p in out.iterdir()) == []  # no complete-looking (or partial) output


def test_bad_records_can_be_skipped_and_counted(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(f'{{"text": "{ZH2}"}}\nnot json\n{{"x": 1}}\n', encoding="utf-8")
    config = write_jsonl(tmp_path / "c.json", [{"on_bad_record": "skip"}])
    out = tmp_path / "out"
    assert (
        main(["clean", "--input", str(source), "--output", str(out), "--config", str(config)]) == 0
    )
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert (report["docs_read"], report["bad_records_skipped"], report["docs_written"]) == (1, 2, 1)


@pytest.mark.parametrize(
    ("args", "config", "message"),
    [
        (["--input", "missing.jsonl"], None, "missing.jsonl: no such file"),
        ([], '{"near_dedup": {"treshold": 0.5}}', "near_dedup.treshold: Extra inputs"),
        ([], '{"quality": {"disabled": ["nope"]}}', "quality.disabled"),
        ([], '{"near_dedup": {"threshold": 2}}', "near_dedup.threshold"),
        ([], "{not json", "cannot read it"),
        (["--score-with-model", "m"], None, "LLM scoring needs OPENAI_BASE_URL"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    config: str | None,
    message: str,
) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": EN}])
    argv = ["clean", "--output", str(tmp_path / "out"), *args]
    if "--input" not in args:
        argv += ["--input", str(source)]
    if config is not None:
        (tmp_path / "c.json").write_text(config, encoding="utf-8")
        argv += ["--config", str(tmp_path / "c.json")]
    assert main(argv, env={}) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1


def test_public_surface() -> None:
    assert sorted(suanwang.corpus.__all__) == [
        "CleanConfig",
        "CorpusInputError",
        "Pipeline",
        "load",
        "normalize",
        "scrub",
    ]


def test_cli_builds_the_job_command() -> None:
    from suanwang.cli.client import CliError
    from suanwang.cli.corpus import cleaner_command

    argv = cleaner_command(["a.jsonl", "sub/b.parquet"], "out/x", "clean.toml", "m")
    assert argv == [
        *("python", "-m", "suanwang.corpus", "clean"),
        *("--input", "/data/input/a.jsonl", "--input", "/data/input/sub/b.parquet"),
        *("--output", "/job/out/x", "--config", "/data/input/clean.toml"),
        *("--score-with-model", "m"),
    ]
    for bad in ("/etc/passwd", "../x", "a/../../x", ""):
        with pytest.raises(CliError):
            cleaner_command([bad], "out", None, None)
    with pytest.raises(CliError):
        cleaner_command(["a.jsonl"], "../escape", None, None)


def test_records_are_read_lazily(tmp_path: Path) -> None:
    """The reader streams: documents before a bad line arrive before the error does."""
    from suanwang.corpus.records import CorpusInputError, RecordFormat, read_docs

    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "one"}\n{"text": "two"}\nbroken\n', encoding="utf-8")
    items = read_docs([source], RecordFormat())
    assert [next(items).doc.text, next(items).doc.text] == ["one", "two"]  # type: ignore[union-attr]
    with pytest.raises(CorpusInputError, match=r"in\.jsonl:3"):
        next(items)


def test_an_unwritable_output_exits_1_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": EN}])
    blocker = tmp_path / "out"
    blocker.write_text("a file where the output directory should be")
    assert main(["clean", "--input", str(source), "--output", str(blocker)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: writing {blocker} failed")
    assert err.count("\n") == 1

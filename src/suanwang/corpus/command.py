"""The command line of the job program (argument parsing, environment, exit codes).

The LLM step reads the gateway's base URL from ``$OPENAI_BASE_URL`` (else
``$SUANWANG_GATEWAY_URL``, which the platform sets in ``network: gateway`` jobs) and the key
from ``$OPENAI_API_KEY``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from suanwang.corpus.config import CleanConfig, load
from suanwang.corpus.pipeline import Pipeline
from suanwang.corpus.records import CorpusInputError
from suanwang.corpus.scoring import LlmScorer, ScoringConfig

log = logging.getLogger("suanwang.corpus")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m suanwang.corpus")
    commands = top.add_subparsers(dest="command", required=True)
    clean = commands.add_parser("clean", help="clean JSONL/Parquet text into DIR")
    clean.add_argument("--input", action="extend", nargs="+", type=Path, required=True)
    clean.add_argument("--output", type=Path, required=True)
    clean.add_argument("--config", type=Path, default=None)
    clean.add_argument("--score-with-model", default=None, metavar="MODEL")
    return top


def scoring_config(config: CleanConfig, env: Mapping[str, str]) -> ScoringConfig | None:
    """The LLM step's settings, or None when it is off; CorpusInputError if env is missing."""
    section = config.llm_score
    if section is None or section.model is None:
        return None
    base_url = env.get("OPENAI_BASE_URL") or env.get("SUANWANG_GATEWAY_URL")
    api_key = env.get("OPENAI_API_KEY")
    if not base_url or not api_key:
        raise CorpusInputError(
            "LLM scoring needs OPENAI_BASE_URL (or SUANWANG_GATEWAY_URL) and OPENAI_API_KEY; "
            "submit the job with --network gateway -e OPENAI_API_KEY=<tenant key>"
        )
    return ScoringConfig(
        base_url=base_url,
        api_key=api_key,
        model=section.model,
        threshold=section.threshold,
        max_concurrency=section.max_concurrency,
        timeout_s=section.timeout_s,
        max_chars=section.max_chars,
        on_failure=section.on_failure,
        structured=section.structured,
    )


def main(argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    """Run the command; the process exit code."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parser().parse_args(argv)
    try:
        config = load(args.config, args.score_with_model)
        scoring = scoring_config(config, os.environ if env is None else env)
    except CorpusInputError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    scorer = LlmScorer(scoring) if scoring is not None else None
    try:
        report = Pipeline(config, scorer).run(list(args.input), args.output)
    except CorpusInputError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except OSError as exc:
        sys.stderr.write(f"error: writing {args.output} failed: {exc}\n")
        return 1
    finally:
        if scorer is not None:
            scorer.close()
    sys.stdout.write(
        f"read {report['docs_read']}, wrote {report['docs_written']}, removed "
        f"{report['docs_removed']}; report in {args.output / 'report.md'}\n"
    )
    return 0

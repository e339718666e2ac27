"""``python -m suanwang.corpus clean --input PATH... --output DIR [--config FILE]
[--score-with-model MODEL]``: the job program of the cleaning pipeline.

Exit 0 when the run completed (report in the output directory); 2 with one line on stderr for
bad input or configuration; 1 with one line when writing failed (e.g. the disk is full).
"""

from __future__ import annotations

import sys

from suanwang.corpus.command import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

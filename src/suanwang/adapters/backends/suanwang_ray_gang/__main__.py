"""``python -m suanwang_ray_gang ...`` on a Ray node (see the package docstring)."""

import sys

from . import main

sys.exit(main())

"""suanwang (算网): one control plane for heterogeneous AI compute.

The public surface of the package is small: the CLI (``suanwang``), the HTTP API built by
:func:`suanwang.bootstrap.build_app`, and the pure ``domain`` and ``scheduler`` packages.
"""

__version__ = "0.1.0"

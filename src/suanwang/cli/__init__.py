"""The ``suanwang`` command line: a thin Typer + Rich client of the REST API.

Every command except ``server`` and ``init`` talks to a running server over HTTP;
expected errors end the command with one ``error: …`` line on stderr and exit code 1.
"""

"""The programs behind the `aioecho` subcommands, one module each.

Each module has one entry point that takes its config (from config.py) and runs the program to
its end, raising AioechoError for what the user can act on. Nothing here parses arguments or
picks exit codes: cli.py does, and only cli.py. A new subcommand gets a module here.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from .errors import AioechoError, describe_os_error


@contextlib.contextmanager
def writing_stdout() -> Iterator[None]:
    """Turn a failed write to standard output (its reader went away: `| head`) into the
    one-line error every other failure gets, instead of a traceback. Standard output is then
    pointed at /dev/null, so that the interpreter's flush at exit has nothing to complain of."""
    try:
        yield
    except OSError as err:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
        raise AioechoError(f"cannot write to standard output: {describe_os_error(err)}") from None

"""Where the programs' output goes: standard output, whose reader may go away (`| head`), and
the report files (--json-file, --csv-file, --junit-file, --html-file), checked before a run and
whose write errors are one line naming the option, as every other failure."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO, cast

from .errors import AioechoError, ConfigError, describe_os_error


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


def check_writable(option: str, path: str) -> None:
    """Refuse, before a run, a report file that could not be written after it."""
    where = Path(path)
    parent = where.parent
    if where.is_dir():
        raise ConfigError(f"{option} {path}: is a directory")
    if not parent.is_dir():
        raise ConfigError(f"{option} {path}: no such directory {str(parent)!r}")
    if not os.access(where if where.exists() else parent, os.W_OK):
        raise ConfigError(f"{option} {path}: permission denied")


class _ReportFile(io.TextIOBase):
    """A report file written line by line: a failed write (a full disk) is one line naming its
    option, not a traceback, nor a failure of standard output."""

    def __init__(self, option: str, path: str) -> None:
        self._name = f"{option} {path}"
        try:
            self._file = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed by close())
        except OSError as err:
            raise AioechoError(f"{self._name}: {describe_os_error(err)}") from None

    def write(self, text: str) -> int:
        try:
            return self._file.write(text)
        except OSError as err:
            raise AioechoError(f"{self._name}: {describe_os_error(err)}") from None

    def flush(self) -> None:
        if self._file.closed:  # IOBase.close() flushes: after ours, nothing is left
            return
        try:
            self._file.flush()
        except OSError as err:
            raise AioechoError(f"{self._name}: {describe_os_error(err)}") from None

    def close(self) -> None:
        if not self.closed:
            try:
                self._file.close()
            except OSError as err:
                raise AioechoError(f"{self._name}: {describe_os_error(err)}") from None
            finally:
                super().close()


def report_file(option: str, path: str) -> TextIO:
    """path open for a report written as it goes (ping's lines), its errors said as one line."""
    check_writable(option, path)
    return cast(TextIO, _ReportFile(option, path))

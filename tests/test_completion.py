"""`aioecho completion bash|zsh`: scripts generated from the parser (shtab) that complete
subcommands and options."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from support import WAIT, run_cli


def complete_in_bash(script: str, line: str) -> list[str]:
    words = line.split(" ")
    program = (
        f"{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; COMP_LINE='{line}'; "
        'COMP_POINT=${#COMP_LINE}; _shtab_aioecho; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    result = subprocess.run(
        ["bash", "-c", program], capture_output=True, text=True, timeout=WAIT, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_bash_completes_subcommands_and_options() -> None:
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    result = run_cli("completion", "bash")
    assert result.returncode == 0
    script = result.stdout.decode()
    assert complete_in_bash(script, "aioecho ch") == ["check"]
    assert complete_in_bash(script, "aioecho server --max-b") == ["--max-buffer"]
    assert "--proxy-protocol" in complete_in_bash(script, "aioecho server --pro")


def test_zsh_script_names_its_command() -> None:
    result = run_cli("completion", "zsh")
    assert result.returncode == 0
    script = result.stdout.decode()
    assert script.startswith("#compdef aioecho")
    assert "--max-buffer" in script
    if shutil.which("zsh") is not None:
        check = subprocess.run(["zsh", "-n"], input=script, text=True, check=False)
        assert check.returncode == 0


def test_an_unknown_shell_is_a_usage_error() -> None:
    result = run_cli("completion", "fish")
    assert result.returncode == 2

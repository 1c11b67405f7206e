"""Command outputs printed in the docs, kept equal to what the commands print.

A page marks a command whose output it shows::

    <!-- output: gcpo signals --input examples/groups.jsonl --signals se,cd,bot,eig -->
    ```
    $ gcpo signals --input examples/groups.jsonl --signals se,cd,bot,eig
    ... what the command printed ...
    ```
    <!-- /output -->

``tests/test_doc_outputs.py`` runs every marked command from the repository root and compares
its standard output with the block. After a change that moves the numbers, regenerate every
block with one command::

    python tests/doc_outputs.py            # rewrite the blocks from the commands' output
    python tests/doc_outputs.py --check    # exit 1 and show the first difference, write nothing

Lines that hold wall times (``time: ...``) are left out: they differ on every run.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
BLOCK = re.compile(
    r"<!-- output: (?P<command>.+?) -->\n```\n(?P<body>.*?)```\n<!-- /output -->", re.S
)
_VARIES = re.compile(r"^time: ")


@dataclass
class Block:
    page: Path
    command: str
    documented: str


def blocks() -> list[Block]:
    found = []
    for page in PAGES:
        for m in BLOCK.finditer(page.read_text(encoding="utf-8")):
            found.append(Block(page, m["command"], m["body"]))
    return found


def run(command: str) -> str:
    """The block a command's output makes: ``$ command``, then its stdout without wall times."""
    argv = shlex.split(command)
    if argv[0] != "gcpo":
        raise ValueError(f"{command!r}: only gcpo commands are run")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "gcpo", *argv[1:]],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"{command!r} exited with {proc.returncode}: {proc.stderr[-2000:]}")
    lines = [line.rstrip() for line in proc.stdout.splitlines() if not _VARIES.match(line)]
    while lines and not lines[-1]:
        lines.pop()
    return f"$ {command}\n" + "\n".join(lines) + "\n"


def update(check: bool = False) -> int:
    stale = 0
    outputs = {b.command: run(b.command) for b in blocks()}
    for page in PAGES:
        text = page.read_text(encoding="utf-8")

        def replace(m: re.Match[str]) -> str:
            return f"<!-- output: {m['command']} -->\n```\n{outputs[m['command']]}```\n<!-- /output -->"

        new = BLOCK.sub(replace, text)
        if new != text:
            stale += 1
            print(f"{page.relative_to(ROOT)}: {'differs' if check else 'updated'}")
            if not check:
                page.write_text(new, encoding="utf-8")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(update(check="--check" in sys.argv[1:]))

"""The docs point at tests and commands that exist."""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_test_named_in_the_docs_exists():
    refs = set()
    for doc in [REPO / "README.md", *(REPO / "docs").glob("*.md")]:
        text = doc.read_text()
        for m in re.finditer(r"`(test_[a-z0-9_]+\.py)::(test_[a-z0-9_]+)`((?:, `::test_[a-z0-9_]+`)*)", text):
            refs.add((doc.name, m.group(1), m.group(2)))
            refs.update((doc.name, m.group(1), extra) for extra in re.findall(r"`::(test_[a-z0-9_]+)`", m.group(3)))
    missing = [r for r in sorted(refs) if f"def {r[2]}(" not in (REPO / "tests" / r[1]).read_text()]
    assert refs and not missing, missing


def _subcommands(parser) -> dict:
    """{name: {sub-action names}} of an argparse parser's subcommands (one level of nesting)."""
    import argparse

    out = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out[name] = set(_subcommands(sub))
    return out


def _doc_commands(text: str) -> list[str]:
    """``bigntk ...`` command lines of a markdown text: lines of its bash blocks and inline code spans."""
    lines = [ln.split(" # ")[0].strip() for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, re.S)
             for ln in block.splitlines()]
    lines += re.findall(r"`(bigntk [^`]+)`", text)
    return [ln for ln in lines if ln.startswith("bigntk ")]


def test_every_bigntk_command_in_the_docs_exists():
    """Every ``bigntk SUB [ACTION]`` the README or the docs show in code is a subcommand of
    ``python -m bigntk --help`` (and ACTION one of its actions, for ``kernel``, ``cache`` and ``cmap``)."""
    from bigntk.cli import build_parser

    subs = _subcommands(build_parser())
    seen, wrong = 0, []
    for doc in [REPO / "README.md", *(REPO / "docs").glob("*.md")]:
        for cmd in _doc_commands(doc.read_text()):
            words = cmd.split()
            sub = words[1]
            seen += 1
            if sub not in subs:
                wrong.append(f"{doc.name}: {cmd}")
                continue
            actions = {a for w in words[2:3] for a in w.split("|")} - {"..."}  # `bigntk cache list|clean`
            if subs[sub] and actions and not any(a.startswith("-") for a in actions) and not actions <= subs[sub]:
                wrong.append(f"{doc.name}: {cmd}")
    assert seen and not wrong, wrong


def test_readme_commands_parse():
    """The command lines of the README's bash blocks parse with the CLI's parser (nothing is run)."""
    import shlex

    from bigntk.cli import build_parser

    parser = build_parser()
    text = (REPO / "README.md").read_text()
    lines = [ln.split("#")[0].strip() for block in re.findall(r"```bash\n(.*?)```", text, re.S)
             for ln in block.splitlines()]
    commands = [ln for ln in lines if ln.startswith("bigntk ")]
    assert commands
    for cmd in commands:
        try:
            parser.parse_args(shlex.split(cmd)[1:])
        except SystemExit as exc:  # argparse reports a bad command line by exiting
            raise AssertionError(f"README command does not parse: {cmd}") from exc


def test_readme_python_snippets_run(tmp_path):
    """Each ```python block of the README is a complete example: it runs as written, in a fresh process
    (the kernel cache in a temporary folder)."""
    import os
    import subprocess
    import sys

    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert len(blocks) >= 2
    env = {**os.environ, "BIGNTK_KERNEL_CACHE": str(tmp_path / "kernels"), "BIGNTK_PROGRESS": "0",
           "PYTHONPATH": str(REPO)}
    for i, code in enumerate(blocks):
        out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert out.returncode == 0, f"README snippet {i + 1} fails:\n{out.stderr[-2000:]}"

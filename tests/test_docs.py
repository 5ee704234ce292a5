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

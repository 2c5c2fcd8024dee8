"""Writes one section of docs/benchmarks.md, keeping the others: each bench/ script owns
the section that starts with its heading."""
from pathlib import Path

HEADER = (
    "# Benchmarks\n\nEach section is written by its script in `bench/`; numbers come from one run "
    "on this machine, with the peer measured in the same run.\n\n"
)


def replace_section(doc: Path, heading: str, section: str) -> None:
    text = doc.read_text() if doc.exists() else HEADER
    start = text.find(heading)
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + (text[end + 1 :] if end >= 0 else "")
    else:
        text = text.rstrip() + "\n\n" + section
    doc.write_text(text)

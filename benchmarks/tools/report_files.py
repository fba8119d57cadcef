"""Where a benchmark tool's report goes: `<stem>.json` (the data) and `<stem>.md` (the table) in one folder."""

from __future__ import annotations

import json
from pathlib import Path


def write_report(out: Path, stem: str, report: dict, text: str) -> Path:
    """Writes report as out/stem.json and text as out/stem.md, prints the text; returns the .md path."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / f"{stem}.md").write_text(text)
    print(text)
    return out / f"{stem}.md"

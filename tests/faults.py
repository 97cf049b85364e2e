"""Faults injected into a model directory, as an operator's mistakes or a failing volume make them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def make_unreadable(path: Path) -> None:
    """Leave `path` a regular file whose read fails with an OSError.

    chmod 000 is enough for an ordinary user; root reads through it, so as root the file is
    replaced by a link to /proc/self/mem, a regular file whose first page no process maps: every
    read of it fails with EIO, as a failing disk would."""
    path.chmod(0)
    try:
        with path.open("rb") as fh:
            fh.read(1)
    except OSError:
        return
    path.unlink()
    path.symlink_to("/proc/self/mem")


def break_card_encoding(version_dir: Path) -> None:
    """One byte that is not UTF-8 (Latin-1 'é') in the model card."""
    card = version_dir / "MODEL_CARD.md"
    card.write_bytes(card.read_bytes() + b"Valid\xe9 on site.\n")


def edit_manifest(version_dir: Path, **changes: Any) -> None:
    path = version_dir / "manifest.json"
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.write_text(json.dumps(doc, indent=2))


def passed_validation(n: int = 400, events: int = 60) -> dict[str, Any]:
    """The site_validation block `ecmo-validate` writes when the local cohort passed."""
    return {
        "status": "passed",
        "cohort_sha256": "0" * 64,
        "n": n,
        "events": events,
        "date": "2026-11-30",
    }


def half_copied(source: Path, target: Path, fraction: float = 0.5) -> None:
    """`cp -r source target` caught in the middle: every file present, the artifact truncated."""
    target.mkdir()
    for item in sorted(source.iterdir()):
        data = item.read_bytes()
        if item.name == "model.joblib":
            data = data[: int(len(data) * fraction)]
        (target / item.name).write_bytes(data)

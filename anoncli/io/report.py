"""What happened to each file, as a JSON report for pipelines and a one-line summary for people."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from anoncli import __version__
from anoncli.io.sink import write_atomically

OK, SKIPPED, FAILED = "ok", "skipped", "failed"


@dataclass
class FileResult:
    path: str
    status: str
    output: str | None = None
    faces: int = 0
    frames: int = 1
    fallback_faces: int = 0  # faces covered by a solid mask because the method failed on them
    error: str | None = None
    # Detections not confirmed as faces (a closer look or the score said no): covered all the same, blurred by a
    # generative method rather than redrawn as a face.
    unconfirmed_faces: int = 0
    notes: list[str] = field(default_factory=list)
    video: dict | None = None  # videos only: tracks, frame rates, durations, bitrates in and out


@dataclass
class Report:
    command: str
    settings: dict
    files: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0

    def totals(self) -> dict:
        statuses = Counter(result.status for result in self.files)
        return {
            "files": len(self.files),
            OK: statuses[OK],
            SKIPPED: statuses[SKIPPED],
            FAILED: statuses[FAILED],
            "faces": sum(result.faces for result in self.files),
            "fallback_faces": sum(result.fallback_faces for result in self.files),
            "unconfirmed_faces": sum(result.unconfirmed_faces for result in self.files),
            "seconds": round(self.seconds, 3),
        }

    @property
    def exit_code(self) -> int:
        return 1 if any(result.status == FAILED for result in self.files) else 0

    def summary(self, unit: str = "images") -> str:
        totals = self.totals()
        parts = [
            f"{totals[OK]} written",
            f"{totals[SKIPPED]} skipped (already done)",
            f"{totals[FAILED]} failed",
            f"{totals['faces']} faces",
        ]
        if totals["fallback_faces"]:
            parts.append(f"{totals['fallback_faces']} faces masked solid after a method failure")
        rate = totals["files"] / self.seconds if self.seconds > 0 else 0.0
        return f"anoncli {self.command}: " + ", ".join(parts) + f" in {self.seconds:.1f} s ({rate:.1f} {unit}/s)"

    def to_json(self) -> dict:
        return {
            "anoncli_version": __version__,
            "command": self.command,
            "settings": self.settings,
            "totals": self.totals(),
            "files": [asdict(result) for result in self.files],
        }

    def write(self, path: Path) -> None:
        write_atomically(path, (json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n").encode())

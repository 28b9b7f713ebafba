"""What happened to each file, as a JSON report for pipelines and a one-line summary for people."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from anoncli import __version__
from anoncli.io.sink import write_atomically

OK, SKIPPED, FAILED = "ok", "skipped", "failed"
INTERRUPTED_EXIT_CODE = 130  # as a shell reports a command ended by SIGINT


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
    # Faces the method could not draw its own way and drew by its fallback (ksame: deepprivacy where FaceMesh
    # fits no mesh); covered all the same.
    stand_in_faces: int = 0
    notes: list[str] = field(default_factory=list)
    video: dict | None = None  # videos only: tracks, frame rates, durations, bitrates in and out


@dataclass
class Report:
    command: str
    settings: dict
    files: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0
    planned: int | None = None  # files the run set out to do; None when read from a list as it went
    interrupted: bool = False  # stopped by SIGINT or SIGTERM before every planned file was done

    @property
    def left(self) -> int | None:
        """Files not done, when the run was interrupted and knew how many it had planned."""
        return None if self.planned is None else self.planned - len(self.files)

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
            "stand_in_faces": sum(result.stand_in_faces for result in self.files),
            "seconds": round(self.seconds, 3),
            "interrupted": self.interrupted,
            "left": self.left if self.interrupted else 0,
        }

    def collect(
        self, results: Iterable[FileResult], on_result: Callable[[FileResult], None] = lambda result: None
    ) -> Report:
        """Add each result as it comes (and pass it to `on_result`), and the time taken, also when interrupted."""
        started = time.perf_counter()
        try:
            for result in results:
                self.files.append(result)
                on_result(result)
        finally:
            self.seconds = time.perf_counter() - started
        return self

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return INTERRUPTED_EXIT_CODE
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
        if totals["stand_in_faces"]:
            parts.append(f"{totals['stand_in_faces']} faces drawn by the method's fallback")
        files = totals["files"]
        # A file that takes longer than a second (a video) reads better as seconds per file than as "0.0 videos/s".
        if files and self.seconds > files:
            pace = f"{self.seconds / files:.1f} s per {unit.removesuffix('s')}"
        else:
            pace = f"{files / self.seconds if self.seconds > 0 else 0.0:.1f} {unit}/s"
        line = f"anoncli {self.command}: " + ", ".join(parts) + f" in {self.seconds:.1f} s ({pace})"
        if self.interrupted:
            left = "the rest of the list not read" if self.left is None else f"{self.left} {unit} left"
            line = f"{line}; interrupted, {left} (a re-run goes on from here)"
        return line

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

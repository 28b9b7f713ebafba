"""The HTML page of `anoncli evaluate --report DIR`: figures, contact sheets, worst cases and plots.

People look at this page before they trust a method, so it shows the faces themselves: before and after
for a sample of faces, and the faces each method left most re-identifiable (smallest identity distance).
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
from PIL import Image

from anoncli.evaluation.faces import Evaluation

SHEET_FACES = 12
WORST_FACES = 6
PLOTTED = [
    ("recall_at_1", "re-identification Recall@1 (lower is more private)"),
    ("mean_distance", "mean dlib distance to the original (higher is more private)"),
    ("mean_cosine_distance", "mean cosine distance of the dlib embeddings to the original's (higher is more private)"),
    ("still_detected", "still found by a second detector (higher is more useful)"),
    ("still_detected_of_seen", "still found, of the faces the second detector finds in the originals"),
    ("c2st_auc", "realism: AUC of a classifier telling these faces from real ones (0.5: cannot tell)"),
    ("fd_dlib", "FD-dlib to the originals (lower is closer)"),
    ("fd_dlib_vs_strangers", "FD-dlib over real strangers' (1 = as close as real faces of other people)"),
    ("background_ssim", "background SSIM (higher is better kept)"),
    ("detail_ratio", "face detail vs the original's (1 = as sharp)"),
    ("seam_ratio", "edges on the paste ring vs the original's (1 = no seam)"),
    ("emotion_agreement", "expression kept (higher is more useful)"),
]


def contact_sheet(pairs: list[tuple[np.ndarray, np.ndarray]], columns: int = 6) -> Image.Image:
    """Before/after tiles: each cell is the original above its anonymized copy."""
    side = pairs[0][0].shape[0] if pairs else 96
    rows = max(1, math.ceil(len(pairs) / columns))
    sheet = Image.new("RGB", (columns * (side + 4), rows * (2 * side + 8)), "white")
    for index, (before, after) in enumerate(pairs):
        x, y = (index % columns) * (side + 4), (index // columns) * (2 * side + 8)
        sheet.paste(Image.fromarray(before), (x, y))
        sheet.paste(Image.fromarray(after), (x, y + side + 2))
    return sheet


def _plots(summaries: list[dict], folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    names = []
    methods = [s["method"] for s in summaries]
    for key, title in PLOTTED:
        values = [s[key] if isinstance(s[key], float) and math.isfinite(s[key]) else 0.0 for s in summaries]
        figure, axis = pyplot.subplots(figsize=(5, 2.6), dpi=100)
        axis.bar(methods, values, color="#4a7ab5")
        axis.set_title(title, fontsize=9)
        axis.tick_params(labelsize=8)
        figure.tight_layout()
        name = f"plot_{key}.png"
        figure.savefig(folder / name)
        pyplot.close(figure)
        names.append(name)
    return names


def write_report(folder: Path, title: str, evaluations: list[Evaluation], summaries: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    keys = [k for k in summaries[0] if k not in ("missing",)] if summaries else []
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(s[k]))}</td>" for k in keys) + "</tr>" for s in summaries)
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        "<table><tr>" + "".join(f"<th>{html.escape(k)}</th>" for k in keys) + f"</tr>{rows}</table>",
        "<p>FD-dlib is a Fréchet distance over dlib face embeddings, not FID. fd_dlib_vs_strangers divides a "
        "method's FD-dlib on halves of the originals by the FD-dlib between the halves' real faces. "
        "verification_rate counts a face when it is unchanged, or found again by the reference detector and within "
        "its reid_threshold of the original (median shown): the least of dlib's 0.6, the distance to another person "
        "in the photo and to a blank patch of the face's size; blank_within_dlib is the share of faces a blank patch "
        "lies within 0.6 of.</p>",
    ]
    for evaluation in evaluations:
        records = [r for r in evaluation.records if r.thumbnails is not None]
        if not records:
            continue
        name = evaluation.name
        contact_sheet([r.thumbnails for r in records[:SHEET_FACES]]).save(folder / f"sheet_{name}.png")
        worst = sorted(records, key=lambda r: r.distance)[:WORST_FACES]
        contact_sheet([r.thumbnails for r in worst]).save(folder / f"worst_{name}.png")
        captions = ", ".join(f"{html.escape(r.path)} ({r.distance:.2f})" for r in worst)
        parts += [
            f"<h2>{html.escape(name)}</h2>",
            f"<p>Before (top) and after (bottom):</p><img src='sheet_{name}.png'>",
            f"<p>Most re-identifiable faces (smallest dlib distance): {captions}</p><img src='worst_{name}.png'>",
        ]
    parts += ["<h2>Plots</h2>"] + [f"<img src='{name}'>" for name in _plots(summaries, folder)]
    page = folder / "index.html"
    style = "body{font-family:sans-serif;margin:2em}td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}"
    page.write_text(
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style>"
        + "\n".join(parts),
        encoding="utf-8",
    )
    return page


def _fmt(value: object) -> str:
    if isinstance(value, dict):  # attribute agreement: per estimator, per attribute
        return "; ".join(f"{key}: {_fmt(inner)}" for key, inner in value.items())
    return f"{value:.4g}" if isinstance(value, float) else str(value)

"""The figures each method's paper reported, measured here and printed beside what the paper published.

The papers measured on other data with other models (CelebA, Facenet512, dlib's detector, SSH); the published
values say what a method was built to do, not a score this data should reach.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.table import Table


@dataclass(frozen=True)
class PaperFigure:
    title: str
    key: str  # of an `evaluate` summary (`attribute_agreement` ones are "gender" and "age_group")
    pattern: str


@dataclass(frozen=True)
class Published:
    source: str  # the research seed and where in it
    figures: dict[str, str]  # PaperFigure key → the published value, as the paper gave it


PAPER_FIGURES = (
    PaperFigure("still a face", "still_detected", "{:.1%}"),
    PaperFigure("re-id R@1", "recall_at_1", "{:.1%}"),
    PaperFigure("cos dist", "mean_cosine_distance", "{:.3f}"),
    PaperFigure("expression Δ", "emotion_change", "{:.2f}"),
    PaperFigure("gender kept", "gender", "{:.0%}"),
    PaperFigure("age kept", "age_group", "{:.0%}"),
)

PUBLISHED = {
    "blur": Published("001 Table 4.1, 004 Table 1", {"recall_at_1": "73 % (9×9)", "mean_cosine_distance": "0.0102"}),
    "pixelate": Published("004 Table 1", {"mean_cosine_distance": "0.8791 (8×8)"}),
    "deepprivacy": Published(
        "004 Table 1 (DeepPrivacy2), 003 §4.1",
        {"mean_cosine_distance": "0.8119", "gender": "77.50 %", "age_group": "42.25 %"},
    ),
    "deepprivacy+age+gender": Published("003 §4.1 (DP-ATT)", {"gender": "89.00 %", "age_group": "79.78 %"}),
    "ganonymization": Published("004 §4, Table 1", {"mean_cosine_distance": "0.7145", "emotion_change": "0.09–0.15"}),
    "ciagan": Published(
        "001 Table 4.1, 004 Table 1",
        {"still_detected": "99.73 % (dlib)", "recall_at_1": "2.94 %", "mean_cosine_distance": "0.9280"},
    ),
    "shape": Published("001 Table 4.1", {"still_detected": "99.80 % (dlib)", "recall_at_1": "1.20 %"}),
    "stargan": Published("000 §6.1", {"recall_at_1": "not identifiable by eye after four flips at once (no figure)"}),
}

# tOF on video, 001 Table 4.1 (CIAGAN); the thesis gives shape as worse than CIAGAN without a figure here.
PUBLISHED_TOF = {"ciagan": "0.22"}


def measured(summary: dict, key: str, judge: str | None) -> float:
    if key in ("gender", "age_group"):
        return summary["attribute_agreement"].get(judge, {}).get(key, float("nan")) if judge else float("nan")
    return summary[key]


def papers_table(title: str, summaries: list[dict], judge: str | None) -> Table:
    """Per method, the papers' figures measured here, and the values its paper published (gender and age kept
    as `judge` estimates them)."""
    table = Table(title=title, caption="published: on the paper's data and models, for orientation only")
    table.add_column("method", no_wrap=True)
    for figure in PAPER_FIGURES:
        table.add_column(figure.title, justify="right", no_wrap=True)
    table.add_column("published (source)")
    for summary in summaries:
        published = PUBLISHED.get(summary["method"])
        cells = [figure.pattern.format(measured(summary, figure.key, judge)) for figure in PAPER_FIGURES]
        if published is None:
            said = ""
        else:
            titles = {figure.key: figure.title for figure in PAPER_FIGURES}
            values = "; ".join(f"{titles[key]} {value}" for key, value in published.figures.items())
            said = f"{values} ({published.source})"
        table.add_row(summary["method"], *cells, said)
    return table

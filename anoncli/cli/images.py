"""`anoncli detect` and `anoncli anonymize`: faces found in, and anonymized out of, image files."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from anoncli.api import face_finder
from anoncli.attributes import DEFAULT_ESTIMATOR
from anoncli.cli import options as o
from anoncli.detectors.plans import DEFAULT_COVERAGE
from anoncli.io.images import DEFAULT_MAX_MEGAPIXELS, IMAGE_EXTENSIONS
from anoncli.io.objects import ObjectTask, object_url, plan_objects
from anoncli.io.records import csv_rows, csv_writer, write_jsonl
from anoncli.io.report import FileResult, Report
from anoncli.io.sources import Task, UsageError, is_stream, iter_outputs, plan_inputs, plan_outputs
from anoncli.pipeline.images import ImageSettings, detection_records
from anoncli.pipeline.on_ray import detection_records_on_ray


class OutputFormat(StrEnum):
    jsonl = "jsonl"
    csv = "csv"


def detect(
    inputs: o.InputsArgument = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="jsonl: one record per image; csv: one row per face.")
    ] = OutputFormat.jsonl,
    files_from: o.FilesFromOption = None,
    null: o.NullOption = False,
    coverage: o.CoverageOption = "fast",
    detector: o.DetectorOption = None,
    threshold: o.ThresholdOption = None,
    device: o.DeviceOption = "auto",
    max_megapixels: o.MegapixelOption = DEFAULT_MAX_MEGAPIXELS,
    backend: o.BackendOption = "local",
    address: o.AddressOption = None,
    workers: o.WorkersOption = None,
    gpus_per_worker: o.GpusPerWorkerOption = 0.0,
    quiet: o.QuietOption = False,
) -> None:
    """Find faces and write their boxes, scores and 5 landmarks.

    JSON lines: {"path", "width", "height", "faces": [{"box": [x1, y1, x2, y2], "score", "landmarks": [[x, y] x5]}]},
    in the upright image (EXIF orientation applied). Animated images get one record per frame with "frame".
    A detection a closer look did not confirm as a face has "confirmed": false. By default RetinaFace alone
    (`--coverage fast`); `--coverage strict` finds what `anonymize` covers by default. The output can be fed
    back with `anoncli anonymize --detections`.

    Examples:

        anoncli detect photos/ > faces.jsonl
        curl -s https://example.org/a.jpg | anoncli detect -
        find /data -name '*.jpg' -print0 | anoncli detect --files-from - --null --format csv -o faces.csv
    """
    try:
        _need_inputs(inputs, files_from)
        o.one_reader_of_stdin(inputs, files_from)
        on_ray = o.ray_backend(backend, address, workers, gpus_per_worker)
        if on_ray is not None and any(map(is_stream, inputs or [])):
            raise UsageError("--backend ray works on files: give file or folder inputs")
        tasks = plan_inputs(inputs or [], IMAGE_EXTENSIONS, o.listed_inputs(files_from, null))
        finder_settings = (detector, threshold, device, False, coverage)
        finder = face_finder(*finder_settings)  # a bad detector name or threshold fails here, before any work
        stream = o.text_output(output, inputs)
    except (UsageError, ValueError) as error:
        o.fail_usage(str(error))
    report = Report("detect", {"detector": detector, "threshold": threshold})
    settings = ImageSettings(max_megapixels=max_megapixels)
    if on_ray is not None:
        found = detection_records_on_ray(tasks, finder_settings, settings, report, on_ray)
    else:
        found = detection_records(tasks, finder, settings)
    with o.stdout_for_data(), stream as out, o.progress(None, quiet, "detecting") as advance:
        writer = csv_writer(out) if output_format is OutputFormat.csv else None
        try:
            for result, records in found:
                advance()
                report.files.append(result)
                o.report_failure(result)
                if writer is None:
                    write_jsonl(records, out)
                else:
                    for record in records:
                        writer.writerows(csv_rows(record))
        except UsageError as error:
            o.fail_usage(str(error))
    if not quiet:
        totals = report.totals()
        o.say(f"anoncli detect: {totals['files']} images, {totals['faces']} faces, {totals['failed']} failed")
    raise typer.Exit(report.exit_code)


def anonymize(
    inputs: o.InputsArgument = None,
    output: o.OutputOption = None,
    method: o.MethodOption = None,
    preserve: o.PreserveOption = None,
    keep: o.KeepOption = None,
    flip: o.FlipOption = None,
    identity: o.IdentityOption = None,
    weights: o.WeightsOption = None,
    files_from: o.FilesFromOption = None,
    null: o.NullOption = False,
    jsonl: o.JsonlOption = False,
    mask_scale: o.MaskScaleOption = None,
    coverage: o.CoverageOption = DEFAULT_COVERAGE,
    detector: o.DetectorOption = None,
    threshold: o.ThresholdOption = None,
    detections: Annotated[
        Optional[Path],
        typer.Option(
            "--detections", help="Use these faces (JSON lines as `anoncli detect` writes) instead of a detector."
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Images whose faces go to the method together.")
    ] = 8,
    device: o.DeviceOption = "auto",
    report_path: o.ReportOption = None,
    keep_metadata: Annotated[
        bool, typer.Option("--keep-metadata", help="Keep EXIF (never GPS location). Default: strip EXIF, XMP and GPS.")
    ] = False,
    overwrite: o.OverwriteOption = False,
    max_megapixels: o.MegapixelOption = DEFAULT_MAX_MEGAPIXELS,
    skin_tone: o.SkinToneOption = "keep",
    attribute_model: o.AttributeModelOption = DEFAULT_ESTIMATOR,
    backend: o.BackendOption = "local",
    address: o.AddressOption = None,
    workers: o.WorkersOption = None,
    gpus_per_worker: o.GpusPerWorkerOption = 0.0,
    quiet: o.QuietOption = False,
) -> None:
    """Anonymize every face in images.

    Inputs are never modified. Without -o, a folder is written beside itself (photos/ → photos_anonymized/,
    its tree mirrored) and a file as NAME_anonymized.EXT. Outputs keep name and format (JPEG at the source's
    quality), are written atomically, and existing ones are skipped, so an interrupted run resumes. A face the
    method fails on is covered by a solid mask and the report says so. Exit code: 0 all files done, 1 some
    failed, 2 usage error.

    Examples:

        anoncli anonymize ./photos --method deepprivacy
        anoncli anonymize ./photos --method ksame --preserve age,gender
        anoncli anonymize ./photos --method shape --keep eyes,mouth
        anoncli anonymize /data/photos -o /data/public --backend ray --address auto
        anoncli anonymize s3://bucket/photos -o s3://bucket/public --backend ray
        anoncli anonymize in.jpg -o - | convert - -resize 50% small.jpg
        curl -s https://example.org/a.jpg | anoncli anonymize - > a_anonymized.jpg
        find /data -name '*.jpg' -newer stamp -print0 | anoncli anonymize --files-from - --null -o out/ --jsonl
    """
    try:
        _need_inputs(inputs, files_from)
        image_to_stdout = is_stream(output) or (output is None and any(map(is_stream, inputs or [])))
        o.one_kind_of_data_on_stdout(image_to_stdout, jsonl, report_path)
        o.one_reader_of_stdin(inputs, files_from)
        on_ray = o.ray_backend(backend, address, workers, gpus_per_worker)
        if on_ray is not None and (image_to_stdout or any(map(is_stream, inputs or []))):
            raise UsageError("--backend ray works on files: give file or folder inputs and an output folder")
        urls = o.object_inputs(inputs, files_from, output)
        if urls is not None:
            tasks: Iterable[Task] | list[ObjectTask] = plan_objects(urls, object_url(output), IMAGE_EXTENSIONS)
        elif files_from is None:
            tasks = plan_outputs(inputs or [], output, IMAGE_EXTENSIONS)
        else:
            tasks = iter_outputs(inputs or [], output, IMAGE_EXTENSIONS, o.listed_inputs(files_from, null))
        anonymizer = o.build_anonymizer(
            method,
            preserve,
            skin_tone,
            detector,
            threshold,
            device,
            attribute_model,
            mask_scale,
            coverage,
            detections,
            keep=keep,
            flip=flip,
            identity=identity,
            weights=weights,
        )
        if not quiet:
            o.announce(method, anonymizer, output, inputs, files_from is not None)
    except (UsageError, ValueError) as error:
        o.fail_usage(str(error))
    if urls is None:
        o.remove_leftovers(inputs, output, IMAGE_EXTENSIONS, quiet)
    settings = {**anonymizer.report_settings(), "keep_metadata": keep_metadata}
    report = Report("anonymize", settings, planned=len(tasks) if isinstance(tasks, list) else None)
    with o.stdout_for_data(), o.progress(None, quiet, "anonymizing") as advance:

        def on_result(result: FileResult) -> None:
            advance()
            o.report_failure(result)
            if jsonl:
                print(o.jsonl_line(result), flush=True)

        try:
            if urls is not None:
                image_settings = ImageSettings(
                    batch_size=batch_size,
                    keep_metadata=keep_metadata,
                    overwrite=overwrite,
                    max_megapixels=max_megapixels,
                )
                anonymizer.anonymize_objects(tasks, report, image_settings, on_result=on_result, backend=on_ray)
            else:
                anonymizer.anonymize_files(
                    tasks,
                    report,
                    batch_size=batch_size,
                    keep_metadata=keep_metadata,
                    overwrite=overwrite,
                    max_megapixels=max_megapixels,
                    on_result=on_result,
                    backend=on_ray,
                )
        except UsageError as error:
            o.fail_usage(str(error))
        except KeyboardInterrupt:
            report.interrupted = True
    if on_ray is not None and urls is None:
        # A worker that died mid-write left its temporary file.
        o.remove_leftovers(inputs, output, IMAGE_EXTENSIONS, quiet)
    finish(report, report_path, quiet)


def finish(report: Report, report_path: Path | None, quiet: bool, unit: str = "images") -> None:
    """Write the report, print the summary, and exit with the report's code."""
    if report_path is not None:
        with o.stdout_for_data():
            report.write(report_path)
    if not quiet:
        o.say(escape(report.summary(unit)))
    raise typer.Exit(report.exit_code)


def _need_inputs(inputs: list[Path] | None, files_from: Path | None) -> None:
    if not inputs and files_from is None:
        raise UsageError("give input files or folders, `-` for stdin, or --files-from")

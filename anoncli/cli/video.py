"""`anoncli video` and `anoncli track`: faces anonymized in, and tracked through, video files."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import ExitStack
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from anoncli.api import face_finder
from anoncli.attributes import DEFAULT_ESTIMATOR
from anoncli.cli import options as o
from anoncli.cli.images import finish
from anoncli.detectors.plans import DEFAULT_COVERAGE
from anoncli.io.objects import ObjectTask, object_url, plan_objects
from anoncli.io.records import load_tracks, mot_rows, track_record
from anoncli.io.report import FileResult, Report
from anoncli.io.sources import Task, UsageError, is_stream, plan_outputs
from anoncli.io.video import DEFAULT_CODEC, VIDEO_EXTENSIONS, EncoderSettings, VideoReadError, probe_video
from anoncli.pipeline.video import DecodedSpan, VideoSettings, track_video


class TrackFormat(StrEnum):
    jsonl = "jsonl"
    mot = "mot"


def video(
    inputs: o.VideoInputsArgument = None,
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
    detect_every: o.DetectEveryOption = 1,
    identity_lock: Annotated[
        bool,
        typer.Option(
            "--identity-lock/--no-identity-lock", help="One fake face per tracked person (generative methods)."
        ),
    ] = True,
    tracks_file: Annotated[
        Optional[Path],
        typer.Option("--tracks", help="Use the faces of this `anoncli track` output (one video) instead of detecting."),
    ] = None,
    codec: Annotated[str, typer.Option("--codec", help="Video encoder (FFmpeg name).")] = DEFAULT_CODEC,
    bitrate: Annotated[
        Optional[str],
        typer.Option("--bitrate", help="Video bitrate such as 2M or 800k [default: the source's].", show_default=False),
    ] = None,
    crf: Annotated[
        Optional[float],
        typer.Option(
            "--crf", help="Constant quality instead of a bitrate (x264: 0–51, lower is better).", show_default=False
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Frames whose faces go to the method together.")
    ] = 8,
    device: o.DeviceOption = "auto",
    report_path: o.ReportOption = None,
    keep_metadata: Annotated[
        bool,
        typer.Option("--keep-metadata", help="Keep all container metadata (default: drop location and device tags)."),
    ] = False,
    overwrite: o.OverwriteOption = False,
    allow_truncated: Annotated[
        bool,
        typer.Option(
            "--allow-truncated",
            help="Write the frames that decode of a video shorter than its container says (flagged in the "
            "report) instead of failing it.",
        ),
    ] = False,
    skin_tone: o.SkinToneOption = "keep",
    attribute_model: o.AttributeModelOption = DEFAULT_ESTIMATOR,
    backend: o.BackendOption = "local",
    address: o.AddressOption = None,
    workers: o.WorkersOption = None,
    gpus_per_worker: o.GpusPerWorkerOption = 0.0,
    quiet: o.QuietOption = False,
) -> None:
    """Anonymize every face in every frame of videos, keeping frame rate, timestamps, bitrate and audio.

    Without -o, in.mp4 is written as in_anonymized.mp4 and a folder beside itself (clips/ → clips_anonymized/);
    -o names an output folder, or for one video its output file.
    Faces are tracked: a face the detector misses for up to a second keeps its mask, and a face is also
    covered in the half second before it is first detected. Audio is copied unchanged. Exit code: 0 all
    done, 1 some failed, 2 usage error.

    Examples:

        anoncli video in.mp4 --preserve age,gender
        anoncli video in.mp4 -o public.mp4 --method deepprivacy
        anoncli video footage/ -o public/ --method mask --report report.json
        anoncli track in.mp4 -o tracks.jsonl && anoncli video in.mp4 --tracks tracks.jsonl
    """
    try:
        if not inputs and files_from is None:
            raise UsageError("give video files or folders, or --files-from")
        if is_stream(output) or any(map(is_stream, inputs or [])):
            raise UsageError("videos are read from and written to files, not stdin or stdout")
        o.one_kind_of_data_on_stdout(False, jsonl, report_path)
        on_ray = o.ray_backend(backend, address, workers, gpus_per_worker)
        urls = o.object_inputs(inputs, files_from, output)
        if urls is not None:
            tasks: list[Task] | list[ObjectTask] = plan_objects(urls, object_url(output), VIDEO_EXTENSIONS)
            if tracks_file:
                raise UsageError("--tracks goes with one local video, not with s3:// inputs")
        else:
            tasks = plan_outputs(inputs or [], output, VIDEO_EXTENSIONS, o.listed_inputs(files_from, null))
        supplied = load_tracks(tracks_file) if tracks_file else None
        if supplied is not None and len(tasks) != 1:
            raise UsageError("--tracks describes one video; give exactly one video with it")
        target = o.parse_bitrate(bitrate) if bitrate else None
        encoder = EncoderSettings(codec=codec, bitrate=target, crf=crf, keep_metadata=keep_metadata)
        anonymizer = o.build_anonymizer(
            method, preserve, skin_tone, detector, threshold, device, attribute_model, mask_scale, coverage,
            keep=keep, flip=flip, identity=identity, weights=weights,
        )  # fmt: skip
    except (UsageError, ValueError) as error:
        o.fail_usage(str(error))
    if not quiet:
        o.announce(method, anonymizer, output, inputs, files_from is not None)
    if urls is None:
        o.remove_leftovers(inputs, output, VIDEO_EXTENSIONS, quiet)
    settings = VideoSettings(
        batch_size=batch_size,
        detect_every=detect_every,
        identity_lock=identity_lock,
        overwrite=overwrite,
        allow_truncated=allow_truncated,
        encoder=encoder,
    )
    report_settings = {
        **anonymizer.report_settings(),
        "detect_every": detect_every,
        "identity_lock": identity_lock,
        "codec": codec,
        "bitrate": target,
        "crf": crf,
        "keep_metadata": keep_metadata,
    }
    report = Report("video", report_settings)
    bar = ExitStack()  # the progress bar of the video in work

    def on_start(task: Task) -> Callable[[int, int], None]:
        bar.close()
        return bar.enter_context(o.progress(0, quiet, task.source.name, unit="frames")).set

    def on_result(result: FileResult) -> None:
        bar.close()
        o.report_failure(result)
        if result.video and result.video["truncated"]:
            o.say(f"[yellow]warning:[/] {escape(result.path)}: {escape(result.notes[0])}")
        if jsonl:
            print(o.jsonl_line(result), flush=True)

    report.planned = len(tasks)
    with o.stdout_for_data(), bar:
        try:
            if urls is not None:
                anonymizer.anonymize_objects(tasks, report, settings, on_result=on_result, backend=on_ray)
            else:
                anonymizer.anonymize_videos(
                    tasks, report, settings, on_result=on_result, on_start=on_start, tracks=supplied, backend=on_ray
                )
        except KeyboardInterrupt:
            report.interrupted = True
    if on_ray is not None and urls is None:
        # A worker that died mid-write left its temporary file.
        o.remove_leftovers(inputs, output, VIDEO_EXTENSIONS, quiet)
    finish(report, report_path, quiet, "videos")


def track(
    source: Annotated[Path, typer.Argument(help="A video file.", show_default=False)],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
    output_format: Annotated[
        TrackFormat, typer.Option("--format", help="jsonl: one record per frame; mot: MOTChallenge CSV.")
    ] = TrackFormat.jsonl,
    coverage: o.CoverageOption = DEFAULT_COVERAGE,
    detector: o.DetectorOption = None,
    threshold: o.ThresholdOption = None,
    detect_every: o.DetectEveryOption = 1,
    device: o.DeviceOption = "auto",
) -> None:
    """Track faces through a video: per frame its index, time and every tracked box with its track id and
    whether it was detected or predicted (upright-frame coordinates).

    Examples:

        anoncli track in.mp4 > tracks.jsonl
        anoncli track in.mp4 --format mot -o in.mot.csv
    """
    try:
        finder = face_finder(detector, threshold, device, video=True, coverage=coverage)
        info = probe_video(source)
        stream = o.text_output(output, [source])
    except (UsageError, ValueError) as error:
        o.fail_usage(str(error))
    except VideoReadError as error:
        o.say(f"[red]error:[/] {escape(str(source))}: {escape(str(error))}")
        raise typer.Exit(1) from None
    decoded_span = DecodedSpan()
    with o.stdout_for_data(), stream as out:
        for tracked in track_video(source, info, finder, VideoSettings(detect_every=detect_every)):
            decoded = tracked.payload.decoded
            decoded_span.add(decoded)
            faces = [(entry.track_id, entry.face, entry.detected) for entry in tracked.faces.values()]
            if output_format is TrackFormat.mot:
                out.writelines(mot_rows(tracked.index, faces))
            else:
                seconds = float(decoded.frame.time) if decoded.frame.time is not None else None
                out.write(json.dumps(track_record(tracked.index, seconds, faces)) + "\n")
    if truncation := decoded_span.shortfall(info):
        o.say(f"[red]error:[/] {escape(str(source))}: {escape(truncation)} (the records cover those)")
        raise typer.Exit(1)

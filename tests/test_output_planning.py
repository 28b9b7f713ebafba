"""Where each input is written (`plan_outputs`): folders mirrored, files beside themselves, `-o` naming a folder
or, for one file, the output file itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from anoncli.io.images import IMAGE_EXTENSIONS
from anoncli.io.sources import UsageError, output_places, plan_outputs
from anoncli.io.video import VIDEO_EXTENSIONS


@pytest.fixture
def inputs(tmp_path) -> Path:
    for name in ("a.jpg", "b.jpg", "clip.mp4", "photos/c.jpg", "photos/trip/d.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"not read while planning")
    return tmp_path


def targets(inputs: list[Path], output: Path | None, extensions=IMAGE_EXTENSIONS) -> dict[str, tuple[Path, str]]:
    return {str(task.source): (task.output, task.relative) for task in plan_outputs(inputs, output, extensions)}


def test_one_file_and_an_output_file_of_its_format_is_written_there(inputs):
    planned = targets([inputs / "a.jpg"], inputs / "public.jpg")
    assert planned == {str(inputs / "a.jpg"): (inputs / "public.jpg", "a.jpg")}  # the seed still follows a.jpg
    (video,) = plan_outputs([inputs / "clip.mp4"], inputs / "out.MP4", VIDEO_EXTENSIONS)
    assert video.output == inputs / "out.MP4"
    assert output_places([inputs / "a.jpg"], inputs / "public.jpg", IMAGE_EXTENSIONS) == {inputs: {"public.jpg"}}


def test_an_output_file_of_another_format_is_refused_another_name_of_its_format_is_not(inputs):
    with pytest.raises(UsageError, match=r"name its output public\.jpg"):
        plan_outputs([inputs / "a.jpg"], inputs / "public.png", IMAGE_EXTENSIONS)
    assert targets([inputs / "a.jpg"], inputs / "public.JPEG")[str(inputs / "a.jpg")][0] == inputs / "public.JPEG"


def test_with_more_inputs_listed_or_an_input_of_no_known_kind_the_output_is_a_folder(inputs):
    listed = plan_outputs([inputs / "a.jpg"], inputs / "out.jpg", IMAGE_EXTENSIONS, [inputs / "b.jpg"])
    assert len(listed) == 2 and all(task.output.is_relative_to(inputs / "out.jpg") for task in listed)
    (inputs / "raw").write_bytes(b"an image without a suffix")
    assert targets([inputs / "raw"], inputs / "out.jpg")[str(inputs / "raw")][0] == inputs / "out.jpg" / "raw"


def test_an_output_without_a_media_suffix_or_that_is_a_folder_is_a_folder(inputs):
    assert targets([inputs / "a.jpg"], inputs / "out")[str(inputs / "a.jpg")][0] == inputs / "out" / "a.jpg"
    (inputs / "made.jpg").mkdir()
    assert targets([inputs / "a.jpg"], inputs / "made.jpg")[str(inputs / "a.jpg")][0] == inputs / "made.jpg" / "a.jpg"
    assert output_places([inputs / "a.jpg"], inputs / "out", IMAGE_EXTENSIONS) == {inputs / "out": None}


def test_several_inputs_go_into_the_output_folder_under_their_names(inputs):
    planned = targets([inputs / "a.jpg", inputs / "b.jpg"], inputs / "out.jpg")
    assert {target for target, _ in planned.values()} == {inputs / "out.jpg" / "a.jpg", inputs / "out.jpg" / "b.jpg"}
    folder = targets([inputs / "photos"], inputs / "public")
    assert {relative: target for target, relative in folder.values()} == {
        "c.jpg": inputs / "public" / "c.jpg",
        "trip/d.png": inputs / "public" / "trip" / "d.png",
    }


def test_without_output_files_and_folders_are_written_beside_themselves(inputs):
    planned = targets([inputs / "a.jpg", inputs / "photos"], None)
    assert planned[str(inputs / "a.jpg")][0] == inputs / "a_anonymized.jpg"
    assert planned[str(inputs / "photos" / "c.jpg")][0] == inputs / "photos_anonymized" / "c.jpg"


def test_an_output_that_is_its_own_input_is_refused(inputs):
    with pytest.raises(UsageError, match="would overwrite its input"):
        plan_outputs([inputs / "a.jpg"], inputs / "a.jpg", IMAGE_EXTENSIONS)

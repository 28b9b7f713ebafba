"""The layout's promises: deterministic outputs pinned on real photos, no import cycles, and an import that
changes nothing in the process."""

from __future__ import annotations

import ast
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ANNOTATED, ROOT, SAMPLE_DATA

# sha256 of the files `anoncli anonymize PHOTOS -o OUT -m METHOD --coverage fast` writes (RetinaFace alone,
# which was the only plan then), recorded before the code was reorganised into its pipeline layout and
# unchanged since: a refactor must not change a deterministic output.
PINNED = {
    "blur": {
        "astronaut.jpg": "365e86936e9c5ced6c0185d8b0bee9e15fe19c7cb9d895f7c88430daff73715b",
        "groups/2008_002470.jpg": "d94bfa22716c83754eb4e583f097a871f97ba3408a2659d90385e3973e9aa711",
        "groups/2008_004176.jpg": "46b65edfedebf735bfdb26762cc8a140b978d12c5e68e9b0fb4064f865caaba5",
        "scenes/crowd.jpg": "a53923d87a31aed7b761bccf42a5daab19d652ff48c3f77c8c33e3ed61bf2f2c",
        "scenes/phone_rotated.jpg": "26f43811c172b08e234561a2c4a4468f639f4d54c5925d39ec6e3327416eb0fe",
    },
    "pixelate": {
        "astronaut.jpg": "b8ba95c55820d902ab65edc91b41f5a4aef7faafe3d2e1d54fdc974be43994f2",
        "groups/2008_002470.jpg": "dc999235fbf96f7ebe183bf4361fb1e6d1f81db9d79238787820e269736b8d74",
        "groups/2008_004176.jpg": "e5167316458a9519ef75d31321e8f46b3a39d52b989b69780968ae8282f6185c",
        "scenes/crowd.jpg": "08de294fc46209a77dc1a024e8a9af3b3983c89ad5a3c997f74f0f7737a90a06",
        "scenes/phone_rotated.jpg": "6e054184e1b5361292379e032d6904fd017157e52d6ae6dc5361ffab1954da82",
    },
    "mask": {
        "astronaut.jpg": "5f61af8379e5149bbfbfa6a0d5e28da09bc2e9771768cdfe97f9ad1e3c538e60",
        "groups/2008_002470.jpg": "e0f271abda12ee3f3b1105a48a9283c6339526bd500d8480945f3ff06535ed7b",
        "groups/2008_004176.jpg": "c8bfe766cb8bedfe579210a05fda78fb99c471e48d1961ca01a1f2218b92d7c3",
        "scenes/crowd.jpg": "fb1979b2c39fbab022f68969058759a13b3ce081d21cff6c20624a05c5d8d78f",
        "scenes/phone_rotated.jpg": "cd222ecddb719b0e17b48c63da2ccae78c9d251f070feabaf2992244254c9bb6",
    },
}


@pytest.fixture(scope="module")
def pinned_photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pinned") / "photos"
    (folder / "groups").mkdir(parents=True)
    shutil.copy(SAMPLE_DATA / "astronaut.jpg", folder)
    shutil.copytree(SAMPLE_DATA / "scenes", folder / "scenes")
    for name in ("2008_002470.jpg", "2008_004176.jpg"):
        shutil.copy(ANNOTATED / name, folder / "groups")
    return folder


@pytest.mark.parametrize("method", sorted(PINNED))
def test_deterministic_outputs_are_byte_identical(pinned_photos, tmp_path, cli, method):
    assert cli("anonymize", pinned_photos, "-o", tmp_path, "-m", method, "--coverage", "fast", "-q").exit_code == 0
    written = {
        path.relative_to(tmp_path).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in tmp_path.rglob("*.jpg")
    }
    assert written == PINNED[method]


def module_imports(path: Path, package: Path) -> set[str]:
    """The anoncli modules a module imports when it is loaded (imports inside functions run later)."""
    name = ".".join(path.relative_to(package.parent).with_suffix("").parts).removesuffix(".__init__")
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If):  # `if TYPE_CHECKING:` blocks do not run
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("anoncli"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                is_module = (package.parent / candidate.replace(".", "/")).with_suffix(".py").exists() or (
                    package.parent / candidate.replace(".", "/") / "__init__.py"
                ).exists()
                found.add(candidate if is_module else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("anoncli"))
    found.discard(name)
    return found


def test_no_import_cycles():
    package = ROOT / "anoncli"
    graph = {}
    for path in package.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        graph[name] = module_imports(path, package)
    cycles: list[str] = []
    state: dict[str, str] = {}  # "open" while on the current path, "done" after

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                cycles.append(" → ".join([*trail[trail.index(target) :], target]))
            elif target not in state:
                visit(target, [*trail, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles


def test_importing_anoncli_changes_nothing_global():
    script = """
import os, sys
import PIL.Image
import cv2  # OpenCV sets LD_LIBRARY_PATH when it loads: its doing, not anoncli's
limit, environment = PIL.Image.MAX_IMAGE_PIXELS, dict(os.environ)
import anoncli, anoncli.api, anoncli.cli.main
assert PIL.Image.MAX_IMAGE_PIXELS == limit, PIL.Image.MAX_IMAGE_PIXELS
assert dict(os.environ) == environment, set(os.environ.items()) ^ set(environment.items())
import numpy as np
anoncli.anonymize_image(np.zeros((64, 64, 3), np.uint8), method="blur")
assert PIL.Image.MAX_IMAGE_PIXELS == limit
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_import_anoncli_is_light():
    script = "import sys, anoncli; print(sorted(m for m in ('torch', 'cv2', 'numpy', 'typer') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"

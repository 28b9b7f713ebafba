"""How a training run is set up from the command line's choices: which faces (prepared once, cached) and,
for a resumed deepprivacy run, the settings it was trained with unless told otherwise."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from anoncli.detectors import DEFAULT_DETECTOR, create_detector
from anoncli.generative.conditioning import ERASED_LANDMARKS, FACE_PIXELS, MESH_POINTS_ONLY
from anoncli.generative.weights import load_checked, read_manifest
from anoncli.io.sources import UsageError
from anoncli.training.dataset import HELD_OUT_PERCENT, PREPARED_RESOLUTION, FaceDataset, prepare_faces
from anoncli.training.deepprivacy import REFINE_L1_FACE, TrainConfig
from anoncli.training.widening import repeats

DEFAULT_RUNS = Path("runs")
CIAGAN_IDENTITIES = 100  # pseudo-identities (clusters of dlib embeddings) a ciagan generator draws


def prepared_faces(
    data: Path,
    prepared: Path | None,
    device: str,
    on_progress: Callable[[int, int], None],
    size: int | None = None,
) -> tuple[FaceDataset, dict]:
    """The prepared face cache of `data` at `size` (built on first use) and a description of it for manifests."""
    size = size or PREPARED_RESOLUTION
    if not data.is_dir():
        raise UsageError(f"--data {data} is not a folder")
    name = data.resolve().name + ("" if size == PREPARED_RESOLUTION else f"-{size}")
    dataset = prepare_faces(
        data,
        prepared or DEFAULT_RUNS / "prepared" / name,
        create_detector(DEFAULT_DETECTOR, device=device),
        on_progress=on_progress,
        size=size,
    )
    description = {
        "folder": data.name,
        "faces": len(dataset.files),
        "held_out_percent": HELD_OUT_PERCENT,
        "licence": "UTKFace: non-commercial research only" if "utk" in data.name.lower() else "as given by the user",
    }
    return dataset, description


def existing_training(out: Path, work_dir: Path, resume: bool) -> bool:
    """Whether a run of `out` has state to resume; UsageError when it has and `resume` was not asked for."""
    exists = (work_dir / "checkpoint.pt").exists() or out.with_suffix(".train.pt").exists()
    if exists and not resume:
        raise UsageError(f"training state exists for {out}; pass --resume to continue it, or choose another --out")
    return exists


def deepprivacy_config(
    out: Path,
    work_dir: Path,
    steps: int,
    batch_size: int,
    device: str,
    resume: bool,
    channels: tuple[int, ...] | None = None,
    diversity: float | None = None,
    projected: float | None = None,
    widen_from: Path | None = None,
    refine_from: Path | None = None,
) -> TrainConfig:
    """The run's settings; UsageError when the choices contradict the state already trained."""
    # A resumed run goes on as it was trained unless told otherwise.
    manifest = out.with_suffix(".json")
    trained = json.loads(manifest.read_text()) if resume and manifest.exists() else {}
    training = trained.get("training", {})
    trained_with = training.get("hyperparameters", {})
    config = TrainConfig(
        weights=out,
        work_dir=work_dir,
        steps=steps,
        batch_size=batch_size,
        diversity=diversity if diversity is not None else trained_with.get("diversity", 0.0),
        projected=projected if projected is not None else trained_with.get("projected", 0.0),
        device=device,
    )
    if channels is not None:
        config.channels = channels
    elif trained:
        config.channels = tuple(trained["architecture"]["channels"])
    if trained and widen_from is None and list(config.channels) != trained["architecture"]["channels"]:
        # Loading a narrower state into more channels would leave the new ones at zero, where they never learn.
        raise UsageError(
            f"{out} was trained with channels {trained['architecture']['channels']}; to widen it, start a new "
            "--out with --widen-from"
        )
    if widen_from is not None:
        if refine_from is not None or channels is None:
            raise UsageError("--widen-from needs --channels and cannot be combined with --refine-from")
        repeats(tuple(read_manifest(widen_from)["architecture"]["channels"]), config.channels)
        config.widen_from = widen_from
    if refine_from is not None:
        _, base_manifest = load_checked(refine_from)
        config.refine_from, config.resolution = refine_from, 2 * base_manifest["architecture"]["resolution"]
        # The head cannot know the real face's detail, only its kind: a strong L1 pull would average it away.
        config.l1_face = REFINE_L1_FACE
    trainer_exists = existing_training(out, work_dir, resume)
    grown_from = training.get("refines", {}).get("file")  # the generator a 128² head grows
    if trainer_exists and grown_from and refine_from is None:
        raise UsageError(f"{out} grows {grown_from}; pass --refine-from with it again to resume")
    return config


# The mesh-framed methods' settings (see `mesh_method_config`).
MESH_METHODS: dict[str, dict] = {
    # pix2pix's pull towards the real face (L1 and feature matching) with the adversarial loss, two noise draws
    # pushed apart, and no attribute asked for: the points carry pose and expression only, and the paper's
    # method drops the rest.
    "ganonymization": {
        "conditioning": MESH_POINTS_ONLY.name,
        "l1_context": 0.0,
        "attribute_loss": 0.0,
        "attribute_dropout": 1.0,
        "diversity": 2.0,
    },
    # CIAGAN: the erased face drawn from the context and the nose, mouth and jaw points as the fake identity
    # asked for: the frozen identity judge pulls it towards that identity's centre and pushes it from the real
    # face; no L1 towards the real face, whose identity is what must go.
    "ciagan": {
        "conditioning": ERASED_LANDMARKS.name,
        "l1_face": 0.0,
        "feature_matching": 1.0,
        "attribute_loss": 0.0,
        "attribute_dropout": 1.0,
        "identities": CIAGAN_IDENTITIES,
        "identity_loss": 0.25,
        "identity_push": 0.3,
        # dlib's embeddings lie in a narrow cone (two random UTKFace faces: cosine 0.82), and the judge reads the
        # whole frame, whose context the new face shares with its source: a new face reaches about 0.94. Pushed
        # below 0.85 at full weight, the generator drew stripes that fool the judge; it is pushed below 0.92.
        "identity_margin": 0.92,
    },
    # StarGAN: the face translated to attributes drawn at random, judged by the frozen classifier and a
    # discriminator that sees the face alone (with the attribute projection), and translated back to its own
    # attributes to come out as it was (cycle, StarGAN's weight 10); nothing else pulls it towards the face.
    # The classifier asks for 60 % sureness at half weight: asked for 80 % at full weight, the translator drew
    # horizontal stripes into faces made older (texture that reads as age to the classifier).
    "stargan": {
        "conditioning": FACE_PIXELS.name,
        "l1_context": 0.0,
        "l1_face": 0.0,
        "feature_matching": 0.0,
        "attribute_targets": "random",
        "attribute_dropout": 0.0,
        "attribute_loss": 0.5,
        "attribute_margin": 0.51,
        "cycle": 10.0,
    },
}


def mesh_method_config(
    method: str,
    out: Path,
    work_dir: Path,
    steps: int,
    batch_size: int,
    device: str,
    resume: bool,
    start_from: Path | None,
    identity_judge: Path | None = None,
) -> TrainConfig:
    """The settings of a generator in the mesh's frame (MESH_METHODS); a new run starts from `start_from`."""
    trainer_exists = existing_training(out, work_dir, resume)
    config = TrainConfig(
        weights=out,
        work_dir=work_dir,
        steps=steps,
        batch_size=batch_size,
        device=device,
        method=method,
        start_from=None if trainer_exists else start_from,
        identity_judge=identity_judge,
        **MESH_METHODS[method],
    )
    if config.start_from is not None:
        check_start(config.start_from, config)
    return config


def check_start(weights: Path, config: TrainConfig) -> None:
    """UsageError unless `weights` can start this run: a generator of its resolution and channels, neither grown
    nor from before attribute inputs, with its training state (.train.pt) beside it."""
    architecture = read_manifest(weights)["architecture"]
    fits = (
        "base_resolution" not in architecture
        and "attributes" in architecture
        and architecture["resolution"] == config.resolution
        and tuple(architecture["channels"]) == tuple(config.channels)
    )
    if not fits:
        raise UsageError(
            f"--start-from {weights}: a run of resolution {config.resolution} and channels {config.channels} starts "
            "only from an ungrown generator of the same size with attribute inputs (weights/deepprivacy64.pt)"
        )
    if not weights.with_suffix(".train.pt").exists():
        raise UsageError(
            f"--start-from {weights}: its training state {weights.with_suffix('.train.pt').name} is missing"
        )

"""Training the `deepprivacy` inpainting GAN: resumable, logged, with sample grids a person can look at.

Losses: non-saturating GAN with lazy R1 on real images; for the generator, feature matching against the
discriminator's features of the paired real face (offline stand-in for a perceptual loss), L1 on the known
context (so the output continues the surroundings without a seam), a small L1 inside the face, and an
attribute loss: the frozen attribute classifier must read the asked-for gender and age group in the result.
Attributes come from the data's labels, each dropped at random so the network also learns to draw a face
with no attribute asked for. With `diversity`, a mode-seeking loss draws each face twice and pushes the two
drawings apart (`face_spread`). The generator's weights are averaged (EMA); the average is what ships.

With `refine_from`, a trained generator is grown to twice its resolution (`Refiner`): it stays fixed, and only
the new full-resolution head and a discriminator at that resolution train, with the same losses. Resumed, it
grows the generator in `refine_from` as it is now.

With `widen_from`, a trained generator starts a run with more channels (`channels`, whole multiples of its
own): it draws exactly what it drew, and the extra channels give it room to learn more (see `widening`).

Other generative methods are configurations of this loop: their `conditioning` (what the generator is shown),
the `sampler` that cuts their training faces, and the losses they weight. With `start_from`, a run begins from
another method's trained generator and discriminator, their input layers regrouped for its conditioning. A
translator (`stargan`) is asked for attributes drawn at random and translated back by a cycle loss; a generator
of fake identities (`ciagan`) is asked for one at random and judged by a frozen identity embedder
(`training.identities`), which pulls the new face towards that identity and pushes it from the real face.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from anoncli.attributes import AGE_GROUPS, GENDERS
from anoncli.attributes.base import ATTRIBUTE_SIZE
from anoncli.attributes.classifier import DEFAULT_WEIGHTS as CLASSIFIER_WEIGHTS
from anoncli.attributes.classifier import attribute_cross_entropy, attribute_loss, load_classifier
from anoncli.faces import Box, cut_square
from anoncli.generative.conditioning import ERASED_CONTEXT, conditioning_named, regrouped
from anoncli.generative.geometry import build_input, erase_ellipse
from anoncli.generative.networks import LATENT_SIZE, Discriminator, Generator, Refiner
from anoncli.generative.sampling import generate, one_hot_identities, to_tensors
from anoncli.generative.weights import load_checked, load_generator, load_grown, manifest_path, save_generator
from anoncli.io.images import LUMA_WEIGHTS
from anoncli.training.dataset import FaceDataset
from anoncli.training.identities import load_judge
from anoncli.training.projected import ProjectedDiscriminator, augment, projected_loss
from anoncli.training.widening import widen_generator_state

FLIPPED_LANDMARKS = [1, 0, 2, 4, 3]  # left/right swap when an image is mirrored
CLASSIFIER_RESOLUTION = 64  # the attribute classifier's input side
REFINE_L1_FACE = 0.25  # L1 weight inside the face when growing a generator (see `refine_from`)
SPREAD_SIDE = 16  # two drawings of a face are compared at this side (see `face_spread`)
# RetinaFace's boxes on whole photos reach from the hairline to the chin; on UTKFace's chips, which cut the
# forehead off, they are tighter and lower. Measured on the 159 faces of celebs13 and the group photos
# (quartiles): the larger of the eye distance and the eye-to-mouth distance is 0.34-0.36 of the box height
# (chips: 0.40-0.43), the box centre lies 0.06-0.085 box heights above the landmarks' mean (chips: 0.00-0.03)
# and width / height is 0.68-0.79 (chips: 0.82-0.94). Faces trained with such boxes are framed and erased the
# way inference frames and erases faces in photos.
PHOTO_BOX_SCALE = (0.33, 0.37)
PHOTO_BOX_RISE = (0.055, 0.09)
PHOTO_BOX_ASPECT = (0.68, 0.79)


@dataclass
class TrainConfig:
    weights: Path  # where the inference weights (EMA, fp16) and manifest go
    work_dir: Path  # full checkpoints, logs and sample grids (not committed)
    steps: int = 1000  # train this many more steps
    batch_size: int = 32
    resolution: int = 64
    channels: tuple[int, ...] = (16, 32, 64, 128, 128)
    # Kept apart from the generator's: a wider generator does not need a wider discriminator.
    discriminator_channels: tuple[int, ...] = (16, 32, 64, 128)
    lr: float = 2e-4
    d_lr_multiplier: float = 2.0  # the discriminator learns faster, so it keeps up (TTUR)
    betas: tuple[float, float] = (0.5, 0.99)
    r1_gamma: float = 1.0
    r1_every: int = 4
    feature_matching: float = 2.0
    l1_context: float = 2.0
    l1_face: float = 1.0
    attribute_loss: float = 1.0
    attribute_margin: float = 0.22  # no push beyond 80 % for the asked attribute, nor beyond the real face
    attribute_dropout: float = 0.25  # chance that each attribute is not asked for, per face
    diversity: float = 0.0  # weight of the mode-seeking loss (see `face_spread`)
    diversity_target: float = 0.1  # face spread (in [-1, 1] units) beyond which two drawings are not pushed apart
    projected: float = 0.0  # weight of a second, projected discriminator on RetinaFace's features (see `projected`)
    attribute_classifier: Path = CLASSIFIER_WEIGHTS
    refine_from: Path | None = None  # trained weights to grow to `resolution` (twice theirs)
    widen_from: Path | None = None  # trained weights (and their .train.pt) to widen to `channels`
    detail_sigma: float = 2.0  # a grown generator's head adds only detail finer than this (see `Refiner`)
    ema_beta: float = 0.999
    mask_scales: tuple[float, float] = (1.0, 1.2)
    photo_boxes: float = 0.75  # share of faces framed and erased with a box drawn as in photos (PHOTO_BOX_*)
    method: str = "deepprivacy"  # the method the weights are for, as the manifest names it
    conditioning: str = ERASED_CONTEXT.name
    start_from: Path | None = None  # another method's trained weights (and .train.pt) to begin from
    # Whose attributes the generator is asked for: "labels", the face's own (each dropped at random, see
    # `attribute_dropout`); "random", any (a translator: `cycle` brings the face back to its own).
    attribute_targets: str = "labels"
    cycle: float = 0.0  # L1 of the face translated back to its own attributes against the face (StarGAN)
    identities: int = 0  # fake identities the generator draws, one-hot at its bottleneck (CIAGAN)
    identity_judge: Path | None = None  # the frozen embedder and identity centres (`training.identities`)
    identity_loss: float = 0.0  # pull: the new face read as its asked identity among all (cross-entropy)
    identity_push: float = 0.0  # push: away from the real face's own embedding, beyond `identity_margin`
    identity_margin: float = 0.5
    checkpoint_every: int = 250
    sample_every: int = 250
    device: str = "cpu"
    seed: int = 0
    data_description: dict = field(default_factory=dict)


@dataclass
class TrainState:
    step: int = 0
    images_seen: int = 0
    wall_seconds: float = 0.0


def photo_box(landmarks: np.ndarray, rng: np.random.Generator) -> Box:
    """A face box around `landmarks` as RetinaFace draws it on a whole photo (see PHOTO_BOX_*)."""
    eyes, mouth = landmarks[:2].mean(axis=0), landmarks[3:5].mean(axis=0)
    feature_size = max(np.linalg.norm(landmarks[0] - landmarks[1]), np.linalg.norm(eyes - mouth))
    height = feature_size / rng.uniform(*PHOTO_BOX_SCALE)
    width = height * rng.uniform(*PHOTO_BOX_ASPECT)
    centre_x, centre_y = landmarks.mean(axis=0)
    centre_y -= height * rng.uniform(*PHOTO_BOX_RISE)
    return (centre_x - width / 2, centre_y - height / 2, centre_x + width / 2, centre_y + height / 2)


def stretched_edges(crop: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """`crop` with the pixels off the photo (a rectangle of valid ones) filled by stretching its edge rows and
    columns outwards."""
    rows, columns = np.flatnonzero(valid.any(axis=1)), np.flatnonzero(valid.any(axis=0))
    if not len(rows):
        return crop
    top, bottom, left, right = rows[0], rows[-1] + 1, columns[0], columns[-1] + 1
    height, width = valid.shape
    return cv2.copyMakeBorder(
        np.ascontiguousarray(crop[top:bottom, left:right]),
        top,
        height - bottom,
        left,
        width - right,
        cv2.BORDER_REPLICATE,
    )


def sample_batch(
    dataset: FaceDataset, indices: np.ndarray, config: TrainConfig, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Condition, erased map, known map, real image (in [-1, 1]) and inside-square map for random faces.

    Each face is cut exactly as inference cuts it (`build_input`), from the wider cached square. A face box
    drawn as in photos reaches past the chip's top into the hairline; there the chip's edge rows, stretched
    outwards, are the target (the generator learns to continue forehead and hair, not to draw black), while
    the context it is shown stays on the chip. Pixels beyond the cached square count nowhere (inside-square map).
    """
    inputs, reals, in_square = [], [], []
    size = config.resolution
    for index in indices:
        crop, valid = np.asarray(dataset.crops[index]), np.asarray(dataset.valid[index])
        box, points = np.asarray(dataset.boxes[index]).copy(), np.asarray(dataset.landmarks[index]).copy()
        if rng.random() < 0.5:
            width = crop.shape[1]
            crop, valid = crop[:, ::-1].copy(), valid[:, ::-1].copy()
            box = np.array([width - box[2], box[1], width - box[0], box[3]], np.float32)
            points = points[FLIPPED_LANDMARKS] * [-1, 1] + [width, 0]
        box = photo_box(points, rng) if rng.random() < config.photo_boxes else tuple(box.tolist())
        erase = erase_ellipse(crop.shape[:2], box, rng.uniform(*config.mask_scales))
        crop = stretched_edges(crop, valid)
        generator_input, square, _ = build_input(crop, valid, erase, box, points, size)
        inputs.append(generator_input)
        real, inside = cut_square(crop, square)
        reals.append(cv2.resize(real, (size, size), interpolation=cv2.INTER_AREA))
        in_square.append(cv2.resize(inside.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA))
    condition, erased, known = to_tensors(inputs, config.device)
    real = torch.from_numpy(np.stack(reals)).permute(0, 3, 1, 2).float().to(config.device) / 127.5 - 1
    inside_square = (torch.from_numpy(np.stack(in_square))[:, None] > 0.999).float().to(config.device)
    return condition, erased, known, real * inside_square, inside_square


def sample_attributes(
    labels: np.ndarray, indices: np.ndarray, dropout: float, rng: np.random.Generator, device: str
) -> torch.Tensor:
    """The faces' label vectors with gender and age group each forgotten at random (`dropout`)."""
    vectors = labels[indices].copy()
    keep_gender = rng.random(len(indices)) >= dropout
    keep_age = rng.random(len(indices)) >= dropout
    vectors[:, : len(GENDERS)] *= keep_gender[:, None]
    vectors[:, len(GENDERS) :] *= keep_age[:, None]
    return torch.from_numpy(vectors).to(device)


def random_attributes(count: int, rng: np.random.Generator, device: str) -> torch.Tensor:
    """A gender and an age group drawn at random for each of `count` faces, as one-hot vectors."""
    vectors = np.zeros((count, ATTRIBUTE_SIZE), np.float32)
    vectors[np.arange(count), rng.integers(0, len(GENDERS), count)] = 1
    vectors[np.arange(count), len(GENDERS) + rng.integers(0, len(AGE_GROUPS), count)] = 1
    return torch.from_numpy(vectors).to(device)


def in_grey(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) images as their BT.601 luma, repeated over the three channels.

    The attribute loss judges faces so, where colour speckle cannot carry an attribute: the generator of step
    23000 had the classifier read the age group asked for in 86-94 % of its faces in colour, 41-50 % in grey,
    real faces 41 % / 37 % (`scripts/attributes_in_colour.py`).
    """
    luma = torch.from_numpy(LUMA_WEIGHTS).to(images)[:, None, None]
    return (images * luma).sum(dim=1, keepdim=True).expand(-1, 3, -1, -1)


def classifier_view(images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """What the frozen classifier judges: the batch in grey, shifted a few pixels and, half the time, at half
    resolution. Fine pixel patterns that fool one exact view do not survive these, and colour cannot carry an
    attribute at all, so the generator has to change the face itself to show one."""
    size = images.shape[-1]
    images = in_grey(images)
    dx, dy = rng.integers(0, 7, 2).tolist()
    images = F.pad(images, (3, 3, 3, 3), mode="replicate")[:, :, dy : dy + size, dx : dx + size]
    if rng.random() < 0.5:
        images = F.interpolate(F.avg_pool2d(images, 2), size=(size, size), mode="bilinear", align_corners=False)
    return F.avg_pool2d(images, size // CLASSIFIER_RESOLUTION) if size > CLASSIFIER_RESOLUTION else images


def attribute_shortfall(
    classifier: torch.nn.Module,
    fake: torch.Tensor,
    real: torch.Tensor,
    attributes: torch.Tensor,
    margin: float,
    rng: np.random.Generator,
    own: bool = True,
) -> torch.Tensor:
    """The attribute loss: how much less surely the frozen classifier reads the asked-for attributes in the
    new faces than in the real faces they replace, both seen in one `classifier_view`. A new face is asked for
    its attributes no more surely than its real face shows them, nor beyond `margin`: past that, only patterns
    that fool the classifier could give more. Asked for `margin` alone (80 %), which the classifier reaches on
    28 % of real faces' age groups in training's framing, the generator painted stripes that fool it: in
    colour, and in grey once it was judged in grey. Attributes that are not the real face's own (`own` False:
    a translator's targets) have no real face to go by: they are asked for to `margin`."""
    if not own:
        return attribute_loss(classifier(classifier_view(fake, rng)), attributes, margin)
    fake_view, real_view = classifier_view(torch.cat([fake, real]), rng).chunk(2)
    with torch.no_grad():
        real_margin = attribute_cross_entropy(classifier(real_view), attributes)
    return attribute_loss(classifier(fake_view), attributes, real_margin.clamp(min=margin))


def face_spread(first: torch.Tensor, second: torch.Tensor, erased: torch.Tensor) -> torch.Tensor:
    """Per face: the mean absolute difference of two drawings inside the erased region, at SPREAD_SIDE pixels
    and each taken relative to its own mean colour there, so that a new face counts, and neither speckle nor a
    lighter or darker copy of the same face does."""
    factor = max(first.shape[-1] // SPREAD_SIDE, 1)
    first, second, erased = (F.avg_pool2d(x, factor) for x in (first, second, erased))
    area = erased.sum(dim=(2, 3), keepdim=True).clamp(min=1e-3)

    def centred(image: torch.Tensor) -> torch.Tensor:
        return image - (image * erased).sum(dim=(2, 3), keepdim=True) / area

    difference = torch.abs(centred(first) - centred(second)) * erased
    return difference.sum(dim=(1, 2, 3)) / area.flatten() / first.shape[1]


def composite(fake: torch.Tensor, real: torch.Tensor, erased: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """What gets pasted: generated pixels in the erased face, the real context around it; nothing (as in the
    real image) where there is no truth to compare with."""
    return (fake * erased + real * (1 - erased)) * inside


def losses_in_use(config: TrainConfig) -> str:
    """The losses a run trains with, as its manifest names them (those weighted zero left out)."""
    judge = "patch D with attribute projection" if config.attribute_dropout < 1 else "patch D"
    terms = [f"non-saturating GAN ({judge}) + lazy R1"]
    terms += ["paired D feature matching"] if config.feature_matching else []
    l1 = [name for name, weight in (("context", config.l1_context), ("face", config.l1_face)) if weight]
    terms += [f"L1 {' + '.join(l1)}"] if l1 else []
    if config.attribute_loss and config.attribute_targets == "labels":
        terms.append("attribute cross-entropy from the frozen classifier (in grey) beyond the real face's")
    elif config.attribute_loss:
        terms.append("attribute cross-entropy from the frozen classifier (in grey) for random target attributes")
    if config.diversity:
        terms.append("mode seeking (face spread of two noise draws, hinge)")
    if config.projected:
        terms.append("projected discriminator on RetinaFace's backbone features")
    if config.cycle:
        terms.append("cycle L1 (translated back to its own attributes)")
    if config.identity_loss or config.identity_push:
        terms.append("identity cross-entropy for the asked pseudo-identity and push from the source (frozen embedder)")
    return ", ".join(terms)


CURVE_KEYS = (
    "l1_face", "g_feature_matching", "face_spread", "d_real", "d_fake", "attribute", "cycle", "identity_pull",
    "identity_push",
)  # fmt: skip


def training_curve(log: Path, every: int) -> list[dict]:
    """The training log's losses averaged over each stretch of `every` steps: how the run went, for its manifest."""
    if not log.exists():
        return []
    stretches: dict[int, list[dict]] = {}
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        stretches.setdefault((record["step"] - 1) // every, []).append(record)
    return [
        {
            "steps": records[-1]["step"],
            **{
                key: round(float(np.mean([r[key] for r in records])), 4)
                for key in CURVE_KEYS
                if all(key in r for r in records)
            },
        }
        for _, records in sorted(stretches.items())
    ]


def snapshot_path(work_dir: Path, weights: Path, step: int) -> Path:
    """Where a run keeps the weights it exported at `step`."""
    return work_dir / "snapshots" / f"{weights.stem}-step{step:07d}{weights.suffix}"


def merged_curve(earlier: list[dict], latest: list[dict]) -> list[dict]:
    """A manifest's curve with the latest log's stretches in it: a run resumed into a fresh work folder keeps the
    stretches it no longer has the log of."""
    return sorted({entry["steps"]: entry for entry in [*earlier, *latest]}.values(), key=lambda entry: entry["steps"])


def drop_records_after(log: Path, step: int) -> None:
    """Keep the training log's records up to `step`: a run killed after its last checkpoint trains the steps it
    logged since then again (a record torn by the kill goes too)."""
    if not log.exists():
        return
    lines = log.read_text(encoding="utf-8").splitlines()
    kept = []
    for line in lines:
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError):
            pass
    if len(kept) < len(lines):
        temporary = log.with_suffix(".tmp")
        temporary.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        temporary.replace(log)


def _in_half(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.half() for name, tensor in state.items()}


class TrainingFaces(Protocol):
    """What the loop needs of a set of prepared faces; its sampler knows the rest."""

    @property
    def train_indices(self) -> np.ndarray: ...

    @property
    def preview_indices(self) -> np.ndarray: ...


Sampler = Callable[
    [TrainingFaces, np.ndarray, TrainConfig, np.random.Generator],
    tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
]


class Trainer:
    def __init__(
        self, config: TrainConfig, dataset: TrainingFaces, labels: np.ndarray, sampler: Sampler = sample_batch
    ) -> None:
        """`sampler(dataset, indices, config, rng)` gives condition, generated region, known map, real image and
        inside-square map for the faces `indices` of `dataset` (`sample_batch` for deepprivacy's faces)."""
        self.config = config
        self.dataset = dataset
        self.sampler = sampler
        self.conditioning = conditioning_named(config.conditioning)
        self.labels = labels.astype(np.float32)
        self.classifier, self.classifier_manifest = load_classifier(config.attribute_classifier, config.device)
        self.judge = None if config.identity_judge is None else load_judge(config.identity_judge, config.device)
        if self.judge is not None and self.judge.identities != config.identities:
            raise ValueError(
                f"{config.identity_judge} holds {self.judge.identities} identities, not {config.identities}"
            )
        torch.manual_seed(config.seed)
        if config.refine_from is None:
            self.generator = Generator(config.resolution, config.channels, self.conditioning, config.identities).to(
                config.device
            )
            self.base_manifest = None
        else:
            base, self.base_manifest = load_generator(config.refine_from, "cpu")
            self.generator = Refiner(base, detail_sigma=config.detail_sigma).to(config.device)
        self.discriminator = Discriminator(config.resolution, config.discriminator_channels, self.conditioning).to(
            config.device
        )
        self.ema = copy.deepcopy(self.generator).eval().requires_grad_(False)
        trained = [parameter for parameter in self.generator.parameters() if parameter.requires_grad]
        self.g_optimizer = torch.optim.Adam(trained, config.lr, betas=config.betas)
        self.d_optimizer = torch.optim.Adam(
            self.discriminator.parameters(), config.lr * config.d_lr_multiplier, betas=config.betas
        )
        self.projected: ProjectedDiscriminator | None = None
        if config.projected:
            self.projected = ProjectedDiscriminator().to(config.device)
            self.p_optimizer = torch.optim.Adam(
                self.projected.heads.parameters(), config.lr * config.d_lr_multiplier, betas=config.betas
            )
            self.augmentation = torch.Generator().manual_seed(config.seed)
        self.state = TrainState()
        self.widens: dict | None = None  # the generator this run widened, for the manifest
        self.starts_from: dict | None = None  # the trained weights this run began from, for the manifest
        self.train_indices = dataset.train_indices
        self.preview_indices = dataset.preview_indices
        self.rng = np.random.default_rng(config.seed)

    # -- checkpoints -------------------------------------------------------------------------------------

    @property
    def checkpoint_path(self) -> Path:
        return self.config.work_dir / "checkpoint.pt"

    @property
    def seed_state_path(self) -> Path:
        """Small resumable state committed beside the weights: G and D in fp16, no optimizer moments (the
        weight average is the shipped inference file itself)."""
        return self.config.weights.with_suffix(".train.pt")

    def resume(self) -> str:
        if self.config.refine_from is None:
            return self._resume_state()
        # The generator grown is the one named now (it may have trained on since): its weights replace the
        # copy saved with the head, so the manifest's `refines` tells the truth.
        named = copy.deepcopy(self.generator.base.state_dict())
        message = self._resume_state()
        for refiner in (self.generator, self.ema):
            refiner.base.load_state_dict(named)
        return message

    def _resume_state(self) -> str:
        if self.checkpoint_path.exists():
            saved = torch.load(self.checkpoint_path, map_location=self.config.device, weights_only=True)
            self.generator.load_state_dict(saved["generator"])
            self.discriminator.load_state_dict(saved["discriminator"])
            self.ema.load_state_dict(saved["ema"])
            self.g_optimizer.load_state_dict(saved["g_optimizer"])
            self.d_optimizer.load_state_dict(saved["d_optimizer"])
            started_projected = self._resume_projected(saved, with_moments=True)
            self.state = TrainState(**saved["state"])
            self.rng = np.random.default_rng(self.config.seed + self.state.step)
            return f"resumed from {self.checkpoint_path} at step {self.state.step}" + started_projected
        if self.seed_state_path.exists():
            saved = torch.load(self.seed_state_path, map_location="cpu", weights_only=True)
            head_input = saved["generator"].get("head.0.0.weight")
            if head_input is not None and head_input.shape != self.generator.head[0][0].weight.shape:
                # The head reads the base's last features between the image and the conditioning: its trained
                # weights cannot be lined up with a base of another width by padding.
                raise ValueError(
                    f"{self.seed_state_path.name} holds a head for a generator of another width than "
                    f"{self.config.refine_from}; grow that generator into a new --out"
                )
            grown = load_grown(self.generator, saved["generator"])
            grown += load_grown(self.discriminator, saved["discriminator"])
            # The average itself ships as the inference weights; no need to keep a second copy.
            shipped, _ = load_checked(self.config.weights)
            load_grown(self.ema, shipped)
            started_projected = self._resume_projected(saved, with_moments=False)
            self.state = TrainState(**saved["state"])
            self.rng = np.random.default_rng(self.config.seed + self.state.step)
            message = f"resumed from {self.seed_state_path} at step {self.state.step} (fresh optimizer moments)"
            return message + (f"; grown: {', '.join(grown)}" if grown else "") + started_projected
        if self.config.widen_from is not None:
            return self._widen(self.config.widen_from)
        if self.config.start_from is not None:
            return self._start_from(self.config.start_from)
        return "started from scratch"

    def _start_from(self, weights: Path) -> str:
        """Begin with the generator (its weight average) and discriminator trained in `weights` (and the
        .train.pt beside them), their input layers regrouped for this run's conditioning; fresh optimizers."""
        shipped, manifest = load_checked(weights)
        saved = torch.load(weights.with_suffix(".train.pt"), map_location="cpu", weights_only=True)
        source = conditioning_named(manifest["architecture"].get("conditioning", ERASED_CONTEXT.name))
        after = 1 + ATTRIBUTE_SIZE  # the generator's noise and attribute planes follow its conditioning
        identity_weights = self.generator.latent.weight[:, LATENT_SIZE + ATTRIBUTE_SIZE :].detach().clone()
        for target, state in ((self.generator, saved["generator"]), (self.ema, shipped)):
            state = {name: tensor.float() for name, tensor in state.items()}
            state["stem.0.weight"] = regrouped(state["stem.0.weight"], source, self.conditioning, 0, after)
            load_grown(target, state)
            # Identity inputs start as initialised, not at zero: from zero the identity loss moved them too
            # slowly to matter (its cross-entropy stayed at chance for 150 steps).
            with torch.no_grad():
                target.latent.weight[:, LATENT_SIZE + ATTRIBUTE_SIZE :] = identity_weights
        state = {name: tensor.float() for name, tensor in saved["discriminator"].items()}
        judged = self.conditioning.judged_groups
        state["stem.0.weight"] = regrouped(state["stem.0.weight"], source.judged_groups, judged, 3, 0)
        self.discriminator.load_state_dict(state)
        self.starts_from = {"file": weights.name, "sha256": manifest["sha256"], "step": saved["state"]["step"]}
        return f"started from {weights} (step {saved['state']['step']}), inputs regrouped for {self.conditioning.name}"

    def _resume_projected(self, saved: dict, with_moments: bool) -> str:
        """Load the projected discriminator's heads from a saved state; a run that turns it on starts it fresh."""
        if self.projected is None:
            return ""
        if "projected" not in saved:
            return "; projected discriminator started fresh"
        self.projected.load_trained_state(saved["projected"])
        if with_moments:
            self.p_optimizer.load_state_dict(saved["p_optimizer"])
        return ""

    def _widen(self, weights: Path) -> str:
        """Start from the generator in `weights` (its training state beside it), widened to `channels`."""
        shipped, manifest = load_checked(weights)
        saved = torch.load(weights.with_suffix(".train.pt"), map_location="cpu", weights_only=True)
        narrow, wide = tuple(manifest["architecture"]["channels"]), tuple(self.config.channels)
        trained = {name: tensor.float() for name, tensor in saved["generator"].items()}
        # The same random shares for both, so the weight average starts as the split of the average.
        for target, state in ((self.generator, trained), (self.ema, shipped)):
            shares = torch.Generator().manual_seed(self.config.seed)
            target.load_state_dict(widen_generator_state(state, narrow, wide, shares))
        self.discriminator.load_state_dict({name: tensor.float() for name, tensor in saved["discriminator"].items()})
        self.state = TrainState(**saved["state"])
        self.rng = np.random.default_rng(self.config.seed + self.state.step)
        self.widens = {"file": weights.name, "sha256": manifest["sha256"], "channels": list(narrow)}
        message = f"widened {weights} (step {self.state.step}) from channels {narrow} to {wide}"
        return message + self._resume_projected(saved, with_moments=False)

    def save_checkpoint(self) -> None:
        self.config.work_dir.mkdir(parents=True, exist_ok=True)
        temporary = self.checkpoint_path.with_suffix(".tmp")
        checkpoint = {
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "ema": self.ema.state_dict(),
            "g_optimizer": self.g_optimizer.state_dict(),
            "d_optimizer": self.d_optimizer.state_dict(),
            "state": asdict(self.state),
        }
        if self.projected is not None:
            checkpoint["projected"] = self.projected.trained_state()
            checkpoint["p_optimizer"] = self.p_optimizer.state_dict()
        torch.save(checkpoint, temporary)
        temporary.replace(self.checkpoint_path)

    def export(self) -> None:
        """Write the shipped weights (EMA, fp16), their manifest, the resumable seed state and a sample grid.

        Quality figures measured earlier, the record of what each training lever bought, the inference settings
        chosen by measurement and notes are kept in the manifest; each figure says at which step it was measured.
        """
        config = self.config
        previous = manifest_path(config.weights)
        earlier = json.loads(previous.read_text()) if previous.exists() else {}
        widens = self.widens or earlier.get("training", {}).get("widens")
        starts_from = self.starts_from or earlier.get("training", {}).get("starts_from")
        manifest = {
            "method": config.method,
            "training": {
                "steps": self.state.step,
                "images_seen": self.state.images_seen,
                "wall_seconds": round(self.state.wall_seconds),
                "batch_size": config.batch_size,
                "losses": losses_in_use(config),
                "attribute_classifier": {
                    "file": config.attribute_classifier.name,
                    "sha256": self.classifier_manifest["sha256"],
                },
                "hyperparameters": {
                    k: v
                    for k, v in asdict(config).items()
                    if k
                    not in (
                        "weights",
                        "work_dir",
                        "data_description",
                        "device",
                        "attribute_classifier",
                        "refine_from",
                        "widen_from",
                        "start_from",
                        "identity_judge",
                    )
                },
                **(
                    {}
                    if self.base_manifest is None
                    else {"refines": {"file": config.refine_from.name, "sha256": self.base_manifest["sha256"]}}
                ),
                **({"widens": widens} if widens else {}),
                **({"starts_from": starts_from} if starts_from else {}),
                **(
                    {}
                    if self.judge is None
                    else {
                        "identity_judge": {"file": config.identity_judge.name, "sha256": self.judge.manifest["sha256"]}
                    }
                ),
            },
            "geometry": self.conditioning.framing,
            "curve": merged_curve(
                earlier.get("curve", []), training_curve(config.work_dir / "log.jsonl", config.checkpoint_every)
            ),
            "data": config.data_description,
            "metrics": earlier.get("metrics", {}),
            "levers": earlier.get("levers", []),
            **{key: earlier[key] for key in ("inference", "notes") if key in earlier},
        }
        save_generator(self.ema, config.weights, manifest)
        # Every export kept, so that a paper's figure can be measured along the run (bench/paper_curve.py).
        save_generator(self.ema, snapshot_path(config.work_dir, config.weights, self.state.step), manifest)
        seed_state = {
            "generator": _in_half(self.generator.state_dict()),
            "discriminator": _in_half(self.discriminator.state_dict()),
            "state": asdict(self.state),
        }
        if self.projected is not None:
            seed_state["projected"] = _in_half(self.projected.trained_state())
        temporary = self.seed_state_path.with_suffix(".tmp")
        torch.save(seed_state, temporary)
        temporary.replace(self.seed_state_path)
        self.sample_grid(config.weights.with_name(config.weights.stem + "_samples.png"))

    # -- training ----------------------------------------------------------------------------------------

    def step(self) -> dict:
        config = self.config
        indices = self.rng.choice(self.train_indices, config.batch_size)
        condition, erased, known, real, inside_square = self.sampler(self.dataset, indices, config, self.rng)
        # What the real faces show, and what the generator is asked for: the same unless it translates.
        attributes = sample_attributes(self.labels, indices, config.attribute_dropout, self.rng, config.device)
        asked = attributes
        if config.attribute_targets == "random":
            asked = random_attributes(config.batch_size, self.rng, config.device)
        identity = None
        if config.identities:
            identity = one_hot_identities(
                self.rng.integers(0, config.identities, config.batch_size).tolist(), config.identities, config.device
            )
        seeds = self.rng.integers(0, 2**31, config.batch_size).tolist()
        # Drawn once for both players: the discriminator's update leaves the generator as it was.
        raw = generate(self.generator, condition, erased, seeds, asked, identity)
        fake = composite(raw, real, erased, inside_square)

        # Discriminator: real vs composite, R1 on reals every few steps.
        real_logits, _ = self.discriminator(real, condition, attributes)
        fake_logits, _ = self.discriminator(fake.detach(), condition, asked)
        d_loss = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
        r1 = torch.zeros(())
        if self.state.step % config.r1_every == 0:
            real_r1 = real.detach().requires_grad_(True)
            logits, _ = self.discriminator(real_r1, condition, attributes)
            (gradient,) = torch.autograd.grad(logits.sum(), real_r1, create_graph=True)
            r1 = gradient.pow(2).sum(dim=(1, 2, 3)).mean()
            d_loss = d_loss + config.r1_gamma / 2 * r1 * config.r1_every
        self.d_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        self.d_optimizer.step()
        if self.projected is not None:
            real_scales = self.projected(augment(real, self.augmentation))
            fake_scales = self.projected(augment(fake.detach(), self.augmentation))
            p_loss = projected_loss(real_scales, real=True) + projected_loss(fake_scales, real=False)
            self.p_optimizer.zero_grad(set_to_none=True)
            p_loss.backward()
            self.p_optimizer.step()
            p_real = torch.cat([torch.sigmoid(scale).flatten() for scale in real_scales]).mean()
            p_fake = torch.cat([torch.sigmoid(scale).flatten() for scale in fake_scales]).mean()

        # Generator: fool D, match D's features of the paired real face, keep the context, stay near the face,
        # show the asked-for attributes.
        logits, fake_features = self.discriminator(fake, condition, asked)
        with torch.no_grad():
            _, real_features = self.discriminator(real, condition, attributes)
        adversarial = F.softplus(-logits).mean()
        matching = sum(F.l1_loss(f, r) for f, r in zip(fake_features, real_features)) / len(fake_features)
        context = (torch.abs(raw - real) * known).sum() / known.sum().clamp(min=1) / 3
        truth = erased * inside_square
        face = (torch.abs(raw - real) * truth).sum() / truth.sum().clamp(min=1) / 3
        attribute = torch.zeros(())
        if config.attribute_loss:
            own = config.attribute_targets == "labels"
            attribute = attribute_shortfall(self.classifier, fake, real, asked, config.attribute_margin, self.rng, own)
        g_loss = (
            adversarial
            + config.feature_matching * matching
            + config.l1_context * context
            + config.l1_face * face
            + config.attribute_loss * attribute
        )
        cycle = pull = push = torch.zeros(())
        if config.cycle:
            # The translated face, as the translator's input, asked back for its own attributes.
            back = generate(self.generator, fake, erased, seeds, attributes)
            cycle = (torch.abs(back - real) * inside_square).sum() / inside_square.sum().clamp(min=1) / 3
            g_loss = g_loss + config.cycle * cycle
        if self.judge is not None:
            pull, push = self.judge.loss(fake, real, identity, config.identity_margin)
            g_loss = g_loss + config.identity_loss * pull + config.identity_push * push
        if self.projected is not None:
            projected_adversarial = projected_loss(self.projected(augment(fake, self.augmentation)), real=True)
            g_loss = g_loss + config.projected * projected_adversarial
        spread = torch.zeros(1)
        if config.diversity:
            # Mode seeking: the pulls towards the paired real face teach the generator to ignore its noise, so
            # a second draw for the same faces has to come out a different face.
            other_seeds = self.rng.integers(0, 2**31, config.batch_size).tolist()
            other = generate(self.generator, condition, erased, other_seeds, attributes)
            spread = face_spread(raw, other, erased * inside_square)
            g_loss = g_loss + config.diversity * F.relu(config.diversity_target - spread).mean()
        self.g_optimizer.zero_grad(set_to_none=True)
        g_loss.backward()
        self.g_optimizer.step()
        self._update_ema()

        self.state.step += 1
        self.state.images_seen += config.batch_size
        record = {
            "step": self.state.step,
            "d_loss": round(d_loss.item(), 4),
            "r1": round(r1.item(), 4),
            "g_adversarial": round(adversarial.item(), 4),
            "g_feature_matching": round(matching.item(), 4),
            "l1_context": round(context.item(), 4),
            "l1_face": round(face.item(), 4),
            "attribute": round(attribute.item(), 4),
            "face_spread": round(spread.mean().item(), 4),
            "cycle": round(cycle.item(), 4),
            "identity_pull": round(pull.item(), 4),
            "identity_push": round(push.item(), 4),
            "d_real": round(torch.sigmoid(real_logits).mean().item(), 3),
            "d_fake": round(torch.sigmoid(fake_logits).mean().item(), 3),
        }
        if self.projected is not None:
            record["g_projected"] = round(projected_adversarial.item(), 4)
            record["p_real"] = round(p_real.item(), 3)
            record["p_fake"] = round(p_fake.item(), 3)
        return record

    @torch.no_grad()
    def _update_ema(self) -> None:
        beta = min(self.config.ema_beta, (1 + self.state.step) / (10 + self.state.step))
        for average, current in zip(self.ema.parameters(), self.generator.parameters()):
            average.lerp_(current, 1 - beta)

    @torch.no_grad()
    def sample_grid(self, path: Path) -> None:
        """Rows of held-out faces: conditioning | no attribute asked (two seeds), male, female, each 0-19 and
        40+ (one seed) | real; for a generator of fake identities, six identities in place of the attributes."""
        config = self.config
        rng = np.random.default_rng(0)
        condition, erased, _, real, inside_square = self.sampler(self.dataset, self.preview_indices, config, rng)
        seeds = list(range(len(self.preview_indices)))
        # The conditioning as a picture: the masked photo, or the first channel in grey where no photo is shown.
        if self.conditioning.groups[0].name == "pixels":
            columns = [condition[:, :3]]
        else:
            columns = [condition[:, :1].expand(-1, 3, -1, -1) * 2 - 1]
        if config.identities:
            # A generator of fake identities: each column one identity, the same in every row.
            for column in range(6):
                chosen = [column * config.identities // 6] * len(seeds)
                identity = one_hot_identities(chosen, config.identities, config.device)
                generated = generate(self.ema, condition, erased, seeds, None, identity)
                columns.append(composite(generated, real, erased, inside_square))
        else:
            self._attribute_columns(condition, erased, real, inside_square, seeds, columns)
        columns.append(real)
        grid = torch.cat([torch.cat([column[i] for column in columns], dim=2) for i in range(len(seeds))], dim=1)
        image = ((grid.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).resize((image.shape[1] * 2, image.shape[0] * 2), Image.NEAREST).save(path)

    def _attribute_columns(
        self,
        condition: torch.Tensor,
        erased: torch.Tensor,
        real: torch.Tensor,
        inside_square: torch.Tensor,
        seeds: list[int],
        columns: list[torch.Tensor],
    ) -> None:
        """No attribute asked (two seeds), then male and female, each 0-19 and 40+ (one seed)."""
        config = self.config
        for seed_offset in (0, 1000):
            generated = generate(self.ema, condition, erased, [s + seed_offset for s in seeds])
            columns.append(composite(generated, real, erased, inside_square))
        for gender in GENDERS:
            for age_group in (AGE_GROUPS[0], AGE_GROUPS[-1]):
                vector = np.zeros(len(GENDERS) + len(AGE_GROUPS), np.float32)
                vector[GENDERS.index(gender)] = vector[len(GENDERS) + AGE_GROUPS.index(age_group)] = 1
                attributes = torch.from_numpy(np.tile(vector, (len(seeds), 1))).to(config.device)
                generated = generate(self.ema, condition, erased, seeds, attributes)
                columns.append(composite(generated, real, erased, inside_square))

    def train(self, on_step: Callable[[dict], None] = lambda record: None) -> None:
        config = self.config
        config.work_dir.mkdir(parents=True, exist_ok=True)
        target = self.state.step + config.steps
        log_path = config.work_dir / "log.jsonl"
        drop_records_after(log_path, self.state.step)
        log = log_path.open("a", encoding="utf-8")
        started = last = time.perf_counter()
        try:
            while self.state.step < target:
                record = self.step()
                now = time.perf_counter()
                self.state.wall_seconds += now - last
                last = now
                record["images_per_second"] = round(
                    config.batch_size * (record["step"] - (target - config.steps)) / (now - started), 2
                )
                log.write(json.dumps(record) + "\n")
                log.flush()
                on_step(record)
                if not math.isfinite(record["d_loss"]):
                    raise FloatingPointError(f"training diverged at step {record['step']}")
                if self.state.step % config.sample_every == 0:
                    self.sample_grid(config.work_dir / "samples" / f"step_{self.state.step:07d}.png")
                if self.state.step % config.checkpoint_every == 0:
                    self.save_checkpoint()
                    self.export()
        finally:
            log.close()
            self.save_checkpoint()
            self.export()

"""`anoncli train`: train the project's models (the generative method, the attribute classifier) on faces."""

from __future__ import annotations

import functools
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.markup import escape
from tqdm import tqdm

from anoncli.cli import options as o
from anoncli.device import resolve_device
from anoncli.io.sources import UsageError

if TYPE_CHECKING:
    from anoncli.training.deepprivacy import Trainer
    from anoncli.training.ksame import DonorSurvey
    from anoncli.training.mesh_faces import MeshFaces

train_app = typer.Typer(
    help="Train the project's models (the generative method, the attribute classifier) on face images.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

DataOption = Annotated[Path, typer.Option("--data", help="Folder of face photos (e.g. ../shared/data/utkface).")]
GeneratorOutOption = Annotated[
    Path,
    typer.Option("--out", help="Inference weights to write (a manifest .json and a resumable .train.pt go beside)."),
]
StepsOption = Annotated[int, typer.Option("--steps", min=1, help="Train this many more steps.")]
BatchSizeOption = Annotated[int, typer.Option("--batch-size", min=2, help="Faces per step (use more on a GPU).")]
ResumeOption = Annotated[
    bool, typer.Option("--resume", help="Continue from the last checkpoint or the committed training state.")
]
PreparedOption = Annotated[
    Optional[Path],
    typer.Option("--prepared", help="Cache of prepared faces [default: runs/prepared/<data name>[-<side>]]."),
]


def _progress_printer(
    quiet: bool, description: str = "preparing faces", unit: str = "faces"
) -> Callable[[int, int], None]:
    """Progress of a long step (preparing the faces: minutes on a large folder), as a tqdm bar on stderr."""
    bar = tqdm(desc=description, unit=unit, disable=quiet, file=sys.stderr, mininterval=1.0, delay=2.0)

    def advance(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return advance


@train_app.command("deepprivacy")
def train_deepprivacy(
    data: DataOption,
    out: GeneratorOutOption = Path("weights/deepprivacy64.pt"),
    steps: StepsOption = 1000,
    batch_size: BatchSizeOption = 32,
    resume: ResumeOption = False,
    work_dir: Annotated[Path, typer.Option("--work-dir", help="Checkpoints, logs and sample grids.")] = Path(
        "runs/deepprivacy"
    ),
    refine_from: Annotated[
        Optional[Path],
        typer.Option(
            "--refine-from",
            help="Grow these trained weights to twice their resolution (progressive 64→128): the trained "
            "generator stays fixed and a new full-resolution head learns the detail.",
        ),
    ] = None,
    widen_from: Annotated[
        Optional[Path],
        typer.Option(
            "--widen-from",
            help="Start from these trained weights (their .train.pt beside them) with more channels (--channels, "
            "whole multiples of theirs): it draws what they draw, with room to learn more.",
        ),
    ] = None,
    channels: Annotated[
        Optional[str],
        typer.Option(
            "--channels",
            help="Generator channels per level, full resolution first [default: those of --out when resuming, "
            "else 16,32,64,128,128].",
        ),
    ] = None,
    diversity: Annotated[
        Optional[float],
        typer.Option(
            "--diversity",
            min=0.0,
            help="Weight of the mode-seeking loss: two noise draws for one face must give two different faces "
            "(0: off) [default: what --out was trained with when resuming, else 0].",
        ),
    ] = None,
    projected: Annotated[
        Optional[float],
        typer.Option(
            "--projected",
            min=0.0,
            help="Weight of a second discriminator that judges RetinaFace's features of the result instead of "
            "its pixels (projected GAN; 0: off). A run that turns it on starts that discriminator fresh "
            "[default: what --out was trained with when resuming, else 0].",
        ),
    ] = None,
    prepared: PreparedOption = None,
    device: o.DeviceOption = "auto",
    quiet: o.QuietOption = False,
) -> None:
    """Train the `deepprivacy` inpainting GAN; every few hundred steps it checkpoints and exports weights.

    Data are prepared once (faces detected, context squares cached, see --prepared). A killed run
    continues with --resume. Progress goes to --work-dir/log.jsonl and sample grids to --work-dir/samples/.

    Example:

        anoncli train deepprivacy --data ../shared/data/utkface --steps 2000 --resume
    """
    from anoncli.training.dataset import attribute_labels, prepared_resolution
    from anoncli.training.deepprivacy import Trainer
    from anoncli.training.runs import deepprivacy_config, prepared_faces

    try:
        resolved = resolve_device(device)
        try:
            widths = tuple(int(c) for c in channels.split(",")) if channels is not None else None
        except ValueError:
            raise UsageError(f"--channels takes whole numbers separated by commas, not {channels!r}") from None
        config = deepprivacy_config(
            out, work_dir, steps, batch_size, resolved, resume, widths, diversity, projected, widen_from, refine_from
        )
        size = prepared_resolution(config.resolution)
        dataset, config.data_description = prepared_faces(data, prepared, resolved, _progress_printer(quiet), size)
    except (UsageError, ValueError) as error:
        o.fail_usage(str(error))
    labels = attribute_labels(dataset, data)
    config.data_description["attribute_labels"] = int(labels.any(axis=1).sum())
    _run_training(Trainer(config, dataset, labels), quiet)


def _run_training(trainer: Trainer, quiet: bool) -> None:
    """Resume or start `trainer`, train with a line of losses every 25 steps, and save on Ctrl-C or SIGTERM."""
    config = trainer.config
    try:
        o.say(escape(trainer.resume()))
    except ValueError as error:
        o.fail_usage(str(error))

    def report(record: dict) -> None:
        if not quiet and record["step"] % 25 == 0:
            o.say(
                f"step {record['step']}: D {record['d_loss']:.3f} (real {record['d_real']:.2f}, fake "
                f"{record['d_fake']:.2f}) G {record['g_adversarial']:.3f} FM {record['g_feature_matching']:.3f} "
                f"L1 ctx {record['l1_context']:.3f} face {record['l1_face']:.3f} spread {record['face_spread']:.3f} "
                + (f"projected (real {record['p_real']:.2f}, fake {record['p_fake']:.2f}) " if config.projected else "")
                + (f"attribute {record['attribute']:.3f} " if config.attribute_loss else "")
                + (f"cycle {record['cycle']:.3f} " if config.cycle else "")
                + (
                    f"identity pull {record['identity_pull']:.3f} push {record['identity_push']:.3f} "
                    if config.identity_judge
                    else ""
                )
                + f"{record['images_per_second']:.1f} img/s"
            )

    try:
        with _terminate_as_interrupt():
            trainer.train(report)
    except KeyboardInterrupt:
        o.say(f"stopped at step {trainer.state.step}, checkpoint and weights saved; continue with --resume")
        raise typer.Exit(130) from None
    out = config.weights
    o.say(f"weights written to {escape(str(out))} (manifest {escape(out.with_suffix('.json').name)})")


StartFromOption = Annotated[
    Optional[Path],
    typer.Option(
        "--start-from",
        help="A new run begins from these trained deepprivacy weights (and the .train.pt beside them), their input "
        "layers regrouped for this method's inputs; 'none' starts from nothing.",
    ),
]
WorkDirOption = Annotated[Path, typer.Option("--work-dir", help="Checkpoints, logs and sample grids.")]
SurveyOption = Annotated[
    Optional[Path],
    typer.Option(
        "--survey",
        help="FaceMesh survey of --data, made on first use and shared with `train ksame` "
        "[default: runs/ksame/donors-DATA.npz, DATA the folder's name].",
    ),
]
DEEPPRIVACY_WEIGHTS = Path("weights/deepprivacy64.pt")


@train_app.command("ganonymization")
def train_ganonymization(
    data: DataOption,
    out: GeneratorOutOption = Path("weights/ganonymization64.pt"),
    steps: StepsOption = 1000,
    batch_size: BatchSizeOption = 32,
    resume: ResumeOption = False,
    start_from: StartFromOption = DEEPPRIVACY_WEIGHTS,
    work_dir: WorkDirOption = Path("runs/ganonymization"),
    survey: SurveyOption = None,
    device: o.DeviceOption = "auto",
    quiet: o.QuietOption = False,
) -> None:
    """Train `ganonymization`: a face drawn from FaceMesh's points alone (pix2pix-style, GANonymization).

    Every photo of --data but the held-out 5 % gets a FaceMesh (cached, see --survey); each face is cut in its
    mesh's frame and its points drawn white on black: the generator learns to draw a face from them and
    nothing else. A killed run continues with --resume.

    Example:

        anoncli train ganonymization --data ../shared/data/utkface --steps 2000 --resume
    """
    _train_mesh_method(
        "ganonymization", data, out, steps, batch_size, resume, start_from, work_dir, survey, device, quiet
    )


def train_shape(**options: Any) -> None:
    """Train the face generator `shape` draws with: a face from the points of the new face shape, the
    thesis's third stage (001 §3), which is ganonymization's generator.

    By default this continues the one run shape and ganonymization share (same --out and --work-dir as `train
    ganonymization`); with another --out, use the weights with `anoncli anonymize -m shape --weights FILE`.
    The shape step before it takes the shapes of the composite bank (`anoncli train ksame`); the head's
    background is filled by OpenCV inpainting, which is not trained.

    Example:

        anoncli train shape --data ../shared/data/utkface --steps 2000 --resume
    """
    train_ganonymization(**options)


# The same options as `train ganonymization` (Typer reads them through __wrapped__), with shape's own help.
train_app.command("shape")(functools.update_wrapper(train_shape, train_ganonymization, assigned=("__annotations__",)))


@train_app.command("ciagan")
def train_ciagan(
    data: DataOption,
    out: GeneratorOutOption = Path("weights/ciagan64.pt"),
    steps: StepsOption = 1000,
    batch_size: BatchSizeOption = 32,
    resume: ResumeOption = False,
    start_from: StartFromOption = DEEPPRIVACY_WEIGHTS,
    judge: Annotated[
        Optional[Path],
        typer.Option(
            "--judge",
            help="The frozen identity judge (embedder and pseudo-identity centres), built on first use "
            "[default: beside --out, NAME_identities.pt].",
        ),
    ] = None,
    embedded_faces: Annotated[
        int, typer.Option("--embedded-faces", min=2, help="Faces whose dlib embeddings define the identities.")
    ] = 8000,
    identities: Annotated[
        Optional[int],
        typer.Option(
            "--identities",
            min=2,
            help="Pseudo-identities: clusters of the embedded faces [default: 100].",
            show_default=False,
        ),
    ] = None,
    work_dir: WorkDirOption = Path("runs/ciagan"),
    survey: SurveyOption = None,
    device: o.DeviceOption = "auto",
    quiet: o.QuietOption = False,
) -> None:
    """Train `ciagan`: the erased face drawn as a chosen fake identity from its context and the nose, mouth and
    jaw points (CIAGAN, Maximov et al. 2020).

    UTKFace has no identity labels, so the identities are pseudo-identities: clusters of dlib embeddings of
    --embedded-faces training faces (about 6 faces/s, cached in --work-dir). A small network learns to read
    the dlib embedding from a framed face; frozen, with the clusters' centres, it is the judge of the identity
    loss (written once, see --judge; commit it beside the weights so that a run resumes anywhere).

    Example:

        anoncli train ciagan --data ../shared/data/utkface --steps 2000 --resume
    """
    judge = judge or out.with_name(f"{out.stem}_identities.pt")
    if identities is not None and identities > embedded_faces:
        o.fail_usage(f"--identities {identities}: more identities than --embedded-faces {embedded_faces}")
    _train_mesh_method(
        "ciagan", data, out, steps, batch_size, resume, start_from, work_dir, survey, device, quiet,
        judge=(judge, embedded_faces), identities=identities,
    )  # fmt: skip


@train_app.command("stargan")
def train_stargan(
    data: DataOption,
    out: GeneratorOutOption = Path("weights/stargan64.pt"),
    steps: StepsOption = 1000,
    batch_size: BatchSizeOption = 32,
    resume: ResumeOption = False,
    start_from: StartFromOption = DEEPPRIVACY_WEIGHTS,
    work_dir: WorkDirOption = Path("runs/stargan"),
    survey: SurveyOption = None,
    device: o.DeviceOption = "auto",
    quiet: o.QuietOption = False,
) -> None:
    """Train `stargan`: a translator of the face itself to another gender and age group (StarGAN, Choi et al.
    2018), on --data's gender and age labels (UTKFace's file names, or labels.csv).

    It sees the whole face: it is an attribute editor, not an eraser. Its losses: the frozen attribute
    classifier must read the asked-for attributes, a discriminator judges realness and attributes, and the
    face translated back must come out as it was (cycle).

    Example:

        anoncli train stargan --data ../shared/data/utkface --steps 2000 --resume
    """
    _train_mesh_method("stargan", data, out, steps, batch_size, resume, start_from, work_dir, survey, device, quiet)


def _train_mesh_method(
    method: str,
    data: Path,
    out: Path,
    steps: int,
    batch_size: int,
    resume: bool,
    start_from: Path | None,
    work_dir: Path,
    survey: Path | None,
    device: str,
    quiet: bool,
    judge: tuple[Path, int] | None = None,
    identities: int | None = None,
) -> None:
    """Survey and frame --data's faces (cached), build the identity judge when the method has one and none is
    written yet, and train."""
    from anoncli.training.deepprivacy import Trainer
    from anoncli.training.mesh_faces import SAMPLERS, prepare_mesh_faces
    from anoncli.training.runs import mesh_method_config

    try:
        resolved = resolve_device(device)
        start = None if start_from is None or str(start_from) == "none" else start_from
        judge_file = None if judge is None else judge[0]
        config = mesh_method_config(method, out, work_dir, steps, batch_size, resolved, resume, start, judge_file)
        if identities is not None:
            config.identities = identities
        survey_file = survey or Path("runs/ksame") / f"donors-{data.name}.npz"
        surveyed = _surveyed(data, survey_file, resolved, quiet)
        dataset = prepare_mesh_faces(
            data,
            surveyed,
            survey_file.with_name(f"{survey_file.stem}-framed{config.resolution}"),
            config.resolution,
            _progress_printer(quiet, "framing faces"),
        )
        if judge is not None and not judge[0].exists():
            _build_judge(data, surveyed, dataset, judge[0], judge[1], config.identities, work_dir, quiet)
    except (UsageError, ValueError) as error:
        o.fail_usage(str(error))
    config.data_description = {
        "folder": data.name,
        "faces": len(dataset.files),
        "held_out": "the 5 % of photos chosen by name (training.dataset.is_held_out), never surveyed",
        "licence": "UTKFace: non-commercial research only" if "utk" in data.name.lower() else "as given by the user",
    }
    _run_training(Trainer(config, dataset, dataset.labels, SAMPLERS[method]), quiet)


def _build_judge(
    data: Path, survey: DonorSurvey, dataset: MeshFaces, judge: Path, faces: int, identities: int, work_dir: Path,
    quiet: bool,
) -> None:  # fmt: skip
    """Embed `faces` of the survey with dlib (cached in `work_dir`), cluster them into `identities` and train the
    embedder that reads them; write the judge to `judge`."""
    from anoncli.training.identities import SurveyEmbeddings, embed_survey, save_judge, train_judge

    cache = work_dir / f"embeddings-{data.name}-{faces}.npz"
    if cache.exists():
        embedded = SurveyEmbeddings.load(cache)
    else:
        embedded = embed_survey(data, survey, faces, on_progress=_progress_printer(quiet, "dlib embeddings"))
        embedded.save(cache)

    def report(record: dict) -> None:
        if not quiet:
            o.say(
                f"judge epoch {record['epoch']}: loss {record['loss']:.4f}, held-out cosine "
                f"{record['held_out_cosine']:.3f}, same identity {record['held_out_same_identity']:.1%}"
            )

    trained = train_judge(dataset, embedded, identities, on_epoch=report)
    manifest = {
        "what": "identity judge for ciagan's training: a CNN reading a framed 64² face as its dlib embedding, and "
        "the centres of the pseudo-identities (k-means of dlib embeddings)",
        "identities": identities,
        "data": {"folder": data.name, "embedded_faces": len(embedded.indices),
                 "licence": "UTKFace: non-commercial research only" if "utk" in data.name.lower() else "as given"},
        **trained.manifest,
    }  # fmt: skip
    save_judge(trained, judge, manifest)
    o.say(f"identity judge written to {escape(str(judge))}")


def _surveyed(data: Path, survey_file: Path, device: str, quiet: bool) -> DonorSurvey:
    """The FaceMesh survey of `data`'s training photos, from `survey_file` or made now and saved there."""
    from anoncli.training.ksame import DonorSurvey, survey_donors

    if not data.is_dir():
        raise UsageError(f"--data {data} is not a folder")
    if survey_file.exists():
        o.say(f"faces as surveyed before in {escape(str(survey_file))} (delete it to survey {escape(str(data))} again)")
        return DonorSurvey.load(survey_file)
    survey = survey_donors(data, device, _progress_printer(quiet, "surveying faces", "photos"))
    if not survey.names:
        raise UsageError(f"no face found in the photos of {data}")
    survey_file.parent.mkdir(parents=True, exist_ok=True)
    survey.save(survey_file)
    return survey


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """Let SIGTERM (kill, a job's time limit) stop the work the way Ctrl-C does, so it saves what it has:
    background jobs often ignore SIGINT, and the default SIGTERM dies without cleaning up."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@train_app.command("attributes")
def train_attributes(
    data: Annotated[
        Path, typer.Option("--data", help="Folder of face photos with labels.csv (e.g. ../shared/data/utkface).")
    ],
    out: Annotated[Path, typer.Option("--out", help="Weights to write (a manifest .json goes beside).")] = Path(
        "weights/attributes64.pt"
    ),
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Passes over the training faces.")] = 12,
    prepared: PreparedOption = None,
    device: o.DeviceOption = "auto",
    quiet: o.QuietOption = False,
) -> None:
    """Train the gender and age-group classifier that `--preserve` and `evaluate` use (`--attribute-model anoncli`).

    Needs labels.csv in --data (UTKFace's: file, age, gender_0male_1female). The best epoch on the held-out
    faces is written, with its accuracy in the manifest.
    """
    from anoncli.training.attributes import ClassifierConfig, train_classifier
    from anoncli.training.dataset import attribute_labels
    from anoncli.training.runs import prepared_faces

    try:
        resolved = resolve_device(device)
        dataset, description = prepared_faces(data, prepared, resolved, _progress_printer(quiet))
    except (UsageError, ValueError) as error:
        o.fail_usage(str(error))
    labels = attribute_labels(dataset, data)
    if not labels.any():
        o.fail_usage(f"no labels for the faces in {data}: it needs a labels.csv")
    config = ClassifierConfig(weights=out, epochs=epochs, device=resolved)

    def report(record: dict) -> None:
        if not quiet:
            accuracy = record["held_out"]
            o.say(
                f"epoch {record['epoch']}/{epochs}: loss {record['loss']:.3f}, held-out gender "
                f"{accuracy['gender']:.1%}, age group {accuracy['age_group']:.1%} ({record['seconds']} s)"
            )

    best = train_classifier(config, dataset, labels, description, report)
    o.say(f"weights of epoch {best['epoch']} written to {escape(str(out))}")


@train_app.command("ksame")
def train_ksame(
    data: DataOption,
    out: Annotated[Path, typer.Option("--out", help="Bank to write (a manifest .json goes beside).")] = Path(
        "weights/ksame_bank.pt"
    ),
    k: Annotated[int, typer.Option("--k", min=2, help="Distinct donors averaged into each composite, at least.")] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Deals the donors into composites.")] = 0,
    spread: Annotated[
        float | None,
        typer.Option(
            "--spread",
            min=1.0,
            help="How far each composite is pushed out from its group's mean face: an average of k faces strays "
            "from it about √k times less than one face does [default: √k; 1: plain averages].",
        ),
    ] = None,
    licence: Annotated[
        str, typer.Option("--licence", help="The licence of --data, written into the manifest.")
    ] = "UTKFace: non-commercial research only",
    work_dir: Annotated[
        Path, typer.Option("--work-dir", help="Cache of the donors' meshes and labels, reused by the next build.")
    ] = Path("runs/ksame"),
    device: o.DeviceOption = "auto",
    quiet: o.QuietOption = False,
) -> None:
    """Build the composite bank `--method ksame` draws from: each composite averages at least k distinct donors.

    Every photo of --data but the held-out 5 % is a candidate donor: FaceMesh, gender and age group (labels.csv
    when the folder has one, the project's classifier otherwise) and skin colour are surveyed once and cached in
    --work-dir; near-frontal donors with closed mouth and open eyes are grouped by gender, age group and skin
    tone and dealt into composites. The bank holds composites only, never one donor's face.

    Example: `anoncli train ksame --data ../shared/data/utkface --k 10`
    """
    from anoncli.training.ksame import build_bank

    try:
        survey = _surveyed(data, work_dir / f"donors-{data.name}.npz", resolve_device(device), quiet)
    except (UsageError, ValueError) as error:
        o.fail_usage(str(error))
    bank, description = build_bank(
        data,
        survey,
        k=k,
        seed=seed,
        spread=spread,
        on_progress=_progress_printer(quiet, "averaging composites", "composites"),
    )
    if not len(bank):
        o.fail_usage(f"no group of {data} has {k} usable donors; lower --k or add photos")
    description["data"]["licence"] = licence
    bank.save(out, description)
    o.say(f"{len(bank)} composites of {k} or more donors written to {escape(str(out))}")

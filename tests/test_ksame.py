"""`--method ksame`: composites of k donors posed by FaceMesh; the bank, its build and privacy by construction."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import anoncli
from anoncli.anonymizers import FaceCrop, StandIn, create_method
from anoncli.anonymizers.meshed import blend_in
from anoncli.attributes import UNKNOWN, Attributes
from anoncli.composites.bank import DEFAULT_BANK, CompositeBank
from anoncli.composites.mesh import FACE_OVAL, LANDMARK_POINTS, MESH_POINTS, FaceMesher, posed_on_landmarks, similarity
from anoncli.composites.warp import warp
from anoncli.faces import box_iou
from anoncli.frames import face_crop
from anoncli.generative.weights import WeightsError, sha256_of
from anoncli.io.video import decode_frames
from anoncli.metrics.identity import SAME_PERSON_DISTANCE, FaceEmbedder
from anoncli.regions import face_region
from conftest import SHARED_DATA, UTKFACE, assert_anonymized, held_out_utkface, load_rgb, read_report, scrambled

CELEBS = SHARED_DATA / "identities" / "celebs13"
REAL_CLIP = SHARED_DATA / "videos" / "facenet_pytorch_examples_video.mp4"


@pytest.fixture(scope="module")
def method():
    return create_method("ksame", device="cpu")


@pytest.fixture(scope="module")
def bank():
    return CompositeBank.load()


def photo(path) -> np.ndarray:
    return load_rgb(path).astype(np.uint8)


def crop_of(image: np.ndarray, face, seed: int, context: float, attributes: Attributes = UNKNOWN) -> FaceCrop:
    region = face_region(face, image.shape[1], image.shape[0], 1.1, context)
    return face_crop(image, region, face, seed, attributes)


def test_the_shipped_bank_holds_composites_of_k_distinct_donors_and_says_so(bank):
    manifest = json.loads(DEFAULT_BANK.with_suffix(".json").read_text())
    assert manifest["sha256"] == sha256_of(DEFAULT_BANK) and manifest["composites"] == len(bank)
    assert manifest["k"] >= 10 and bank.donors.min() >= manifest["k"]
    assert all(len(set(files)) == len(files) == count for files, count in zip(bank.donor_files, bank.donors))
    donors = [name for files in bank.donor_files for name in files]
    assert len(set(donors)) == len(donors), "each donor is in one composite only"
    assert bank.shapes.shape == (len(bank), MESH_POINTS, 3)
    assert "licence" in manifest["data"] and manifest["bytes"] < 50e6  # small enough for the wheel
    # Every group of gender × age group has composites to choose from.
    for gender in range(2):
        for age_group in range(4):
            assert ((bank.gender == gender) & (bank.age_group == age_group)).sum() >= 3


def test_a_composite_is_chosen_by_seed_within_the_wanted_group(bank):
    wanted = Attributes("female", "40+")
    chosen = {bank.choose(seed, wanted) for seed in range(40)}
    assert len(chosen) > 5, "another seed, another composite"
    assert all(bank.gender[index] == 1 and bank.age_group[index] == 3 for index in chosen)
    assert bank.choose(7, wanted) == bank.choose(7, wanted)


def test_the_new_face_takes_its_colour_from_the_skin_it_is_matched_on():
    """blend_in shifts the new face's colour so that, over the reference pixels, it is the drawing's there: a
    face on a white ground takes the skin's colour, not the ground's, when matched on the skin."""
    rows, columns = np.indices((128, 128))
    radius = np.hypot(columns - 64, rows - 64)
    covered = radius < 50
    skin = (radius >= 30) & (radius < 40)
    base = np.full((128, 128, 3), 250.0, np.float32)
    base[radius < 40] = (170, 120, 100)
    texture = np.full((128, 128, 3), 100.0, np.float32)
    mesh = np.zeros((MESH_POINTS, 3), np.float32)  # eyes at the top row: nothing is left out for lying above them

    on_skin = blend_in(texture, covered, base, mesh, 100.0, reference=skin)
    np.testing.assert_allclose(on_skin.texture[skin].mean(axis=0), (170, 120, 100), atol=2)
    on_edge = blend_in(texture, covered, base, mesh, 100.0)  # the band along the covered edge: mostly ground
    assert on_edge.texture[skin].mean() > on_skin.texture[skin].mean() + 20


def test_a_piecewise_affine_warp_moves_points_where_they_are_sent():
    """A white dot at a mesh point lands on that point's new place, through the triangles it lies in."""
    source = np.array([[10, 10], [90, 10], [90, 90], [10, 90], [50, 50]], np.float32)
    target = source * 1.5 + np.array([5, 20], np.float32)
    triangles = np.array([[0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]])
    image = np.zeros((100, 100, 3), np.float32)
    image[28:33, 68:73] = 255  # a dot around (70, 30)
    warped, covered = warp(image, source, target, triangles, (180, 180))
    ys, xs = np.nonzero(warped[..., 0] > 128)
    assert xs.mean() + 0.5 == pytest.approx(70.5 * 1.5 + 5, abs=1.0)
    assert ys.mean() + 0.5 == pytest.approx(30.5 * 1.5 + 20, abs=1.0)
    assert covered[40, 40] and not covered[5, 5]


def test_the_mesh_fits_the_face_it_is_asked_about(astronaut, detector):
    face = detector.detect(astronaut)[0]
    mesh = FaceMesher().fit(astronaut, face.box)
    assert mesh is not None and mesh.shape == (MESH_POINTS, 3)
    width = face.width
    left_eye, right_eye = np.array(face.landmarks[0]), np.array(face.landmarks[1])
    # The mesh's eye centres lie on the detector's eye landmarks (within a tenth of the face).
    assert np.linalg.norm(mesh[[33, 133], :2].mean(axis=0) - left_eye) < 0.1 * width
    assert np.linalg.norm(mesh[[362, 263], :2].mean(axis=0) - right_eye) < 0.1 * width
    # Asked about an empty patch of sky, it answers nothing rather than some other face.
    assert FaceMesher().fit(astronaut, (400.0, 20.0, 480.0, 120.0)) is None


def test_where_facemesh_fits_none_the_detectors_landmarks_place_a_frontal_mesh(astronaut, detector, bank):
    """The bank's mean shape placed by the detector's five landmarks lies where FaceMesh's own fit does; landmarks
    of a face turned aside (the nose tip far off the eyes' midpoint), in mirrored order, or not five finite
    points place none."""
    face = detector.detect(astronaut)[0]
    fitted = FaceMesher().fit(astronaut, face.box)
    landmarks = np.array(face.landmarks, np.float32)
    placed = posed_on_landmarks(bank.mean_shape, landmarks)
    assert placed is not None and placed.shape == (MESH_POINTS, 3)
    for points in (*LANDMARK_POINTS, FACE_OVAL):
        offset = placed[list(points), :2].mean(axis=0) - fitted[list(points), :2].mean(axis=0)
        assert np.linalg.norm(offset) < 0.1 * face.width
    turned = landmarks.copy()
    turned[2, 0] += 0.4 * np.linalg.norm(landmarks[1] - landmarks[0])
    mirrored = landmarks[[1, 0, 2, 4, 3]]
    broken = landmarks.copy()
    broken[0, 0] = np.nan
    for wrong in (turned, mirrored, broken, landmarks[:4]):
        assert posed_on_landmarks(bank.mean_shape, wrong) is None


@pytest.mark.parametrize("attributes", [UNKNOWN, Attributes("female", "20-29")], ids=["plain", "preserve"])
def test_the_new_face_is_drawn_from_its_mesh_and_surroundings_only(method, detector, attributes):
    """With the mesh held fixed, randomizing every pixel of the erased face leaves the output bit-identical:
    the face's pixels reach the output only through its mesh (and the attribute labels)."""
    image = photo(CELEBS / "img10.jpg")
    face = max(detector.detect(image), key=lambda f: f.size)
    crop = crop_of(image, face, seed=5, context=method.context, attributes=attributes)
    (mesh,) = method.meshes([crop])
    assert mesh is not None
    (first,), (second,) = method.draw([crop], [mesh]), method.draw([scrambled(crop)], [mesh])
    assert not isinstance(first, StandIn) and first.shape == crop.pixels.shape
    assert np.array_equal(first, second)


def test_the_composite_takes_the_pose_but_not_the_shape_of_the_face(method, bank, detector):
    """Posed on the target's mesh, the composite keeps its own proportions: the residual to the target's mesh
    is the composite's shape difference, not zero."""
    image = photo(CELEBS / "img10.jpg")
    face = max(detector.detect(image), key=lambda f: f.size)
    (mesh,) = method.meshes([crop_of(image, face, seed=1, context=method.context)])
    shape = bank.shapes[bank.choose(1, UNKNOWN)]
    frame = similarity(shape, mesh)
    posed = frame.apply(shape)
    error = np.linalg.norm(posed[:, :2] - mesh[:, :2], axis=1).mean() / face.size
    assert 0.005 < error < 0.1  # on the face, in its pose, yet not its geometry


def test_faces_are_anonymized_and_faces_without_a_mesh_are_counted(tmp_path, cli):
    source = CELEBS / "selfie-many-people.jpg"
    result = cli("anonymize", source, "-o", tmp_path / "out", "-m", "ksame", "--report", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    report = read_report(tmp_path / "r.json")
    file = report["files"][0]
    assert file["faces"] >= 6 and file["fallback_faces"] == 0
    assert 0 < file["stand_in_faces"] < file["faces"], "most faces get a composite, the rest deepprivacy's"
    assert any("FaceMesh" in note for note in file["notes"])
    original, anonymized = load_rgb(source), load_rgb(tmp_path / "out" / source.name)
    found = anoncli.Anonymizer("ksame").detect(original.astype(np.uint8))
    confident = [face for face in found if face.score > 0.9]
    assert_anonymized(original.astype(float), anonymized.astype(float), confident, covered=found)


@pytest.mark.xfail(
    strict=True,
    reason="composites are averages of their donors: dlib finds an output nearer one of its composite's 10 donors "
    "than the nearest of as many matched strangers for 86 % of held-out outputs (chance 50 %); k 20 / 40, mixing "
    "regions of 2-3 composites and donors balanced in embedding space did not bring it to chance "
    "(docs/results.md, 'ksame: donors')",
)
def test_no_new_face_is_nearer_a_donor_of_its_composite_than_a_stranger(method, bank, detector):
    """Held-out UTKFace faces drawn over with a composite of their gender and age group: dlib does not match the
    output to one of the composite's donors more closely than to the nearest of as many strangers of that
    group (other held-out people)."""
    embedder = FaceEmbedder()

    def embedding(image: np.ndarray) -> np.ndarray:
        return embedder.embed(image, max(detector.detect(image), key=lambda f: f.size).box)

    held_out = held_out_utkface(240)
    targets = held_out[::40]
    checked = 0
    for number, (path, attributes) in enumerate(targets):
        image = photo(path)
        face = max(detector.detect(image), key=lambda f: f.size)
        crop = crop_of(image, face, seed=number, context=method.context, attributes=attributes)
        (output,) = method.anonymize([crop])
        if isinstance(output, StandIn):
            continue
        query = embedder.embed(np.ascontiguousarray(output), crop.box)
        donor_files = bank.donor_files[bank.choose(number, attributes)]
        donors = np.array([embedding(photo(UTKFACE / name)) for name in donor_files])
        group = [other for other, wanted in held_out if wanted == attributes and other != path]
        strangers = np.array([embedding(photo(other)) for other in group[: len(donors)]])
        nearest_donor = np.linalg.norm(donors - query, axis=1).min()
        nearest_stranger = np.linalg.norm(strangers - query, axis=1).min()
        assert nearest_donor >= SAME_PERSON_DISTANCE or nearest_donor >= nearest_stranger, path.name
        checked += 1
    assert checked >= 4


def test_the_bank_is_built_from_a_folder_of_faces(tmp_path, cli):
    """`anoncli train ksame` on 120 labelled faces of women in their twenties and thirties: composites of k
    distinct donors, checked and described."""
    data = tmp_path / "faces"
    data.mkdir()
    labels = (UTKFACE / "labels.csv").read_text().splitlines()
    chosen = [line for line in labels[1:] if line.split("_")[1] == "1" and 20 <= int(line.split("_")[0]) < 40]
    chosen = chosen[:: len(chosen) // 120][:120]
    for line in chosen:
        shutil.copy(UTKFACE / line.split(",")[0], data)
    (data / "labels.csv").write_text("\n".join([labels[0], *chosen]) + "\n")
    out = tmp_path / "bank.pt"
    result = cli("train", "ksame", "--data", data, "--out", out, "--k", "3", "--work-dir", tmp_path / "work")
    assert result.exit_code == 0, result.output
    built = CompositeBank.load(out)
    assert len(built) >= 2 and built.donors.min() >= 3 and (built.gender == 1).all()
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert manifest["k"] == 3 and manifest["donors"]["used"] == built.donors.sum()
    out.write_bytes(out.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(WeightsError):
        CompositeBank.load(out)

    # The same composites as plain averages (--spread 1): by default each is pushed √k out from its group's
    # mean face, so they differ from each other as single faces do rather than √k times less.
    plain_out = tmp_path / "plain.pt"
    result = cli("train", "ksame", "--data", data, "--out", plain_out, "--k", "3", "--spread", "1",
                 "--work-dir", tmp_path / "work")  # fmt: skip
    assert result.exit_code == 0, result.output
    plain = CompositeBank.load(plain_out)
    assert manifest["spread"] == pytest.approx(np.sqrt(3), abs=1e-3)
    assert json.loads(plain_out.with_suffix(".json").read_text())["spread"] == 1
    assert plain.donor_files == built.donor_files  # the same dealing

    # Each composite moved along its own departure from its group's mean face G: built = G + √3 (plain - G),
    # so G = plain - (built - plain) / (√3 - 1) is one point per group, the mean of the group's plain shapes.
    moved = (built.shapes - plain.shapes) / (np.sqrt(3) - 1)
    group_means = plain.shapes - moved
    groups = [np.abs(group_means - mean).max(axis=(1, 2)) < 0.5 for mean in group_means]
    for group, mean in zip(groups, group_means):
        np.testing.assert_allclose(plain.shapes[group].mean(axis=0), mean, atol=0.5)
    assert np.abs(moved).max() > 2 and max(group.sum() for group in groups) >= 2
    # Textures likewise: within a group the composites differ more than plain averages do.
    side = plain.textures[0].shape[0]
    rows, columns = np.indices((side, side))
    centre = plain.shapes[:, :, :2].mean(axis=(0, 1))
    face = np.hypot(columns - centre[0], rows - centre[1]) < 40  # the middle of the face: eyes, nose, mouth
    largest = max(groups, key=np.sum)
    textures, plain_textures = (
        np.array([texture[face] for texture, chosen in zip(bank_.textures, largest) if chosen], np.float32)
        for bank_ in (built, plain)
    )
    assert textures.std(axis=0).mean() > 1.4 * plain_textures.std(axis=0).mean()


def test_a_person_walking_through_a_clip_keeps_one_composite(method, detector):
    """In video a track keeps one seed, so one composite: the same walker drawn four frames apart with the
    track's seed is nearer (dlib) to their own earlier drawing than to the drawing another seed gives."""
    frames = [frame.upright_rgb(0) for frame in decode_frames(REAL_CLIP) if frame.index in (0, 4)][:2]
    first = [face for face in detector.detect(frames[0]) if method.mesher.fit(frames[0], face.box) is not None]
    walker = max(first, key=lambda f: f.size)
    later = detector.detect(frames[1])
    walker_later = later[int(box_iou(np.array([walker.box]), np.array([f.box for f in later])).argmax())]
    embedder, drawn = FaceEmbedder(), {}
    for number, (frame, face) in enumerate(zip(frames, (walker, walker_later))):
        for seed in (7, 8) if number else (7,):
            (output,) = method.anonymize([crop_of(frame, face, seed, method.context)])
            assert not isinstance(output, StandIn)
            canvas = frame.copy()
            canvas[face_region(face, frame.shape[1], frame.shape[0], 1.1, method.context).slices] = output
            drawn[number, seed] = embedder.embed(canvas, face.box)
    same = np.linalg.norm(drawn[1, 7] - drawn[0, 7])
    other = np.linalg.norm(drawn[1, 8] - drawn[0, 7])
    assert same < other and same < SAME_PERSON_DISTANCE


def test_in_a_video_the_walkers_mesh_stops_jittering_but_keeps_up(method, detector):
    """Inside `following_tracks` a track's mesh shape is smoothed: over ten frames of a real walker the mesh
    points shake less in the face's own frame, and stay within 2 % of the face size of the fits."""
    frames = [frame.upright_rgb(0) for frame in decode_frames(REAL_CLIP) if frame.index < 10][:10]
    meshed = [face for face in detector.detect(frames[0]) if method.mesher.fit(frames[0], face.box) is not None]
    walker = max(meshed, key=lambda f: f.size)
    crops = []
    for frame in frames:
        found = detector.detect(frame)
        walker = found[int(box_iou(np.array([walker.box]), np.array([f.box for f in found])).argmax())]
        crops.append(crop_of(frame, walker, 7, method.context))
    raw = [method.meshes([crop])[0] for crop in crops]
    with method.following_tracks(25.0):
        smoothed = [method.meshes([crop])[0] for crop in crops]
    assert all(mesh is not None for mesh in raw + smoothed)
    assert np.array_equal(method.meshes(crops[:1])[0], raw[0])  # outside a video: the fit as it is

    def shake(meshes: list[np.ndarray]) -> float:
        own_frame = np.stack([similarity(mesh, raw[0]).apply(mesh)[:, :2] for mesh in meshes])
        return float(np.linalg.norm(own_frame[2:] - 2 * own_frame[1:-1] + own_frame[:-2], axis=2).mean())

    assert shake(smoothed) < shake(raw) / 2
    drift = max(np.linalg.norm(s[:, :2] - r[:, :2], axis=1).mean() for s, r in zip(smoothed, raw))
    assert drift < 0.02 * walker.size


def test_in_a_video_the_new_faces_colour_follows_a_flickering_drawing_slowly(method, astronaut, detector):
    """The composite's colour is matched on deepprivacy's drawing, which changes from frame to frame. Along a
    track the colour shift is low-passed: one frame's brighter drawing brightens a photo's new face fully, a
    video's (after ten steady frames) by less than a third of that."""
    face = max(detector.detect(astronaut), key=lambda f: f.size)
    crop = crop_of(astronaut, face, 3, method.context)
    (mesh,) = method.meshes([crop])
    base = crop.pixels
    brighter = np.clip(base.astype(np.int16) + 30, 0, 255).astype(np.uint8)
    x1, y1, x2, y2 = (round(v) for v in crop.box)
    middle = (slice(y1 + (y2 - y1) // 4, y2 - (y2 - y1) // 4), slice(x1 + (x2 - x1) // 4, x2 - (x2 - x1) // 4))

    def brightening(drawn: list[np.ndarray | None]) -> float:
        assert drawn[0] is not None and drawn[1] is not None
        return float(drawn[1][middle].mean() - drawn[0][middle].mean())

    photo = brightening([method.draw_meshed([crop], [mesh], [b])[0] for b in (base, brighter)])
    with method.following_tracks(25.0):
        for _ in range(10):
            (steady,) = method.draw_meshed([crop], [mesh], [base])
        (flicker,) = method.draw_meshed([crop], [mesh], [brighter])
    assert photo > 15
    assert 0 < brightening([steady, flicker]) < photo / 3


def test_in_a_video_a_face_the_tracker_predicted_keeps_its_tracks_last_mesh(method, astronaut, detector):
    """A predicted face (no landmarks) that FaceMesh fits no mesh to is drawn on its track's last mesh, moved with
    its box, instead of by turns with deepprivacy's drawing; a detected face whose landmarks show it turned is
    not, and ends the hold."""
    face = max(detector.detect(astronaut), key=lambda f: f.size)
    crop = crop_of(astronaut, face, 3, method.context)
    blank = np.zeros_like(crop.pixels)  # FaceMesh finds nothing here
    x1, y1, x2, y2 = crop.box
    moved = (x1 + 6.0, y1 + 4.0, x2 + 6.0, y2 + 4.0)
    predicted = FaceCrop(blank, crop.mask, moved, None, crop.seed)
    turned_landmarks = crop.landmarks.copy()
    turned_landmarks[2, 0] += 0.4 * np.linalg.norm(crop.landmarks[1] - crop.landmarks[0])
    turned = FaceCrop(blank, crop.mask, crop.box, turned_landmarks, crop.seed)
    assert method.meshes([predicted])[0] is None  # outside a video there is nothing to hold
    with method.following_tracks(25.0):
        (fitted,) = method.meshes([crop])
        (held,) = method.meshes([predicted])
        assert held is not None
        assert np.allclose(held - fitted, [6.0, 4.0, 0.0], atol=1e-3)
        assert method.meshes([turned])[0] is None
        assert method.meshes([predicted])[0] is None

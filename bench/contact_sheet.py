"""A contact sheet a person can judge: the original beside each method's face (deepprivacy | ksame unless told
otherwise), face by face, at real size.

    .venv/bin/python bench/contact_sheet.py [--methods deepprivacy,ksame] [--faces 20] [--out FILE]

Takes the largest face of every third celebs13 press photo (MIT, from deepface's test set), anonymizes
the photo with each method (seed: the row's number) and lays out a crop of 1.4 face sizes around the face
from each, at the photo's own scale up to MAX_SIDE pixels (larger faces are shrunk to it, labelled with their
size).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

import anoncli
from anoncli.faces import centred_square, cut_square

CELEBS = Path(__file__).resolve().parents[2] / "shared" / "data" / "identities" / "celebs13"
MAX_SIDE = 256
GAP = 6
PHOTO_STEP = 3  # every third photo, so the faces are of many of the 13 people


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="deepprivacy,ksame", help="comma-separated")
    parser.add_argument("--faces", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("docs/ksame-contact-sheet.jpg"))
    arguments = parser.parse_args()
    methods = arguments.methods.split(",")
    anonymizers = {name: anoncli.Anonymizer(name) for name in methods}
    rows = []
    photos = sorted((p for p in CELEBS.glob("img*.jpg") if p.stem[3:].isdigit()), key=lambda p: int(p.stem[3:]))
    for path in photos[::PHOTO_STEP][: arguments.faces]:
        image = np.asarray(Image.open(path).convert("RGB"))
        faces = anonymizers[methods[0]].detect(image)
        if not faces:
            continue
        face = max(faces, key=lambda f: f.size)
        square = centred_square(face.box, 1.4 * face.size)
        for anonymizer in anonymizers.values():  # one seed per photo, as the command line gives each file its own
            anonymizer.seed = len(rows)
        versions = [image] + [anonymizers[name].anonymize(image).image for name in methods]
        crops = [cut_square(version, square)[0] for version in versions]
        side = min(square.side, MAX_SIDE)
        crops = [cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA) for crop in crops]
        rows.append((f"{path.name}, face {face.size:.0f} px", crops))
        print(rows[-1][0], flush=True)
    width = (1 + len(methods)) * (MAX_SIDE + GAP) + GAP
    height = sum(crops[0].shape[0] + 18 + GAP for _, crops in rows) + 24
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((GAP, 4), f"original | {' | '.join(methods)} (seed: row number)", fill="black")
    y = 24
    for label, crops in rows:
        draw.text((GAP, y), label, fill="black")
        y += 18
        for column, crop in enumerate(crops):
            sheet.paste(Image.fromarray(crop), (GAP + column * (MAX_SIDE + GAP), y))
        y += crops[0].shape[0] + GAP
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(arguments.out, quality=88)
    print(f"wrote {arguments.out}")


if __name__ == "__main__":
    main()

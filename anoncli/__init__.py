"""anoncli: find faces in images and videos and anonymize them.

    import anoncli
    faces = anoncli.detect_faces(image)                    # image: HxWx3 uint8 RGB numpy array
    out = anoncli.anonymize_image(image, method="deepprivacy", seed=0, preserve=("age", "gender"))
    anonymizer = anoncli.Anonymizer(method="blur", device="auto")   # models loaded once

Importing the package loads nothing heavy and changes no process-wide state; the API loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"


if TYPE_CHECKING:
    from anoncli.api import AnonymizedImage, Anonymizer, InputError, anonymize_image, detect_faces
    from anoncli.faces import Face


def __getattr__(name: str) -> object:
    if name in __all__ and name != "Face":
        from anoncli import api

        return getattr(api, name)
    if name == "Face":
        from anoncli.faces import Face

        return Face
    raise AttributeError(f"module 'anoncli' has no attribute {name!r}")


__all__ = ["AnonymizedImage", "Anonymizer", "Face", "InputError", "__version__", "anonymize_image", "detect_faces"]

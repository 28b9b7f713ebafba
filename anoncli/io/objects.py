"""Object storage as input and output: `s3://bucket/prefix`, through fsspec's s3fs.

The endpoint and credentials come from the usual AWS environment variables (AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION) or the AWS config files, as for any S3 client.
Objects are worked on in a local scratch folder: downloaded, anonymized by the file pipelines, uploaded. An
upload is atomic by nature (an object appears whole or not at all), so a half-done output never shows.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from anoncli.io.sources import UsageError

SCHEME = "s3://"


def object_url(path: Path | str) -> str | None:
    """The s3:// URL `path` names, or None. (A command line's `s3://b/k` can arrive as the Path `s3:/b/k`.)"""
    text = str(path)
    if not text.startswith("s3:/"):
        return None
    return SCHEME + text[len("s3:/") :].lstrip("/")


@dataclass(frozen=True)
class ObjectTask:
    """One object to anonymize: where it is, where its output goes, and its name below the input prefix (what
    face seeds follow, as `Task.relative`)."""

    source: str
    output: str
    relative: str

    @property
    def label(self) -> str:
        return self.source


def _filesystem():
    if importlib.util.find_spec("s3fs") is None:
        raise UsageError("s3:// needs s3fs: pip install 'anoncli[ray]'")
    import s3fs

    return s3fs.S3FileSystem()


def plan_objects(inputs: list[str], output: str | None, extensions: frozenset[str]) -> list[ObjectTask]:
    """Every object under each input prefix (or the input object itself) with one of `extensions`, mirrored
    under `output` as local folders are; UsageError when the prefixes cannot be listed."""
    if output is None or object_url(output) is None:
        raise UsageError("s3:// inputs need an s3:// output: give -o s3://BUCKET/PREFIX")
    filesystem = _filesystem()
    tasks = []
    for url in inputs:
        try:
            if filesystem.isfile(url):
                found = {url.removeprefix(SCHEME): PurePosixPath(url).name}
            else:
                root = url.removeprefix(SCHEME).rstrip("/")
                found = {key: key[len(root) + 1 :] for key in filesystem.find(root)}
        except (OSError, ValueError) as error:
            raise UsageError(f"cannot list {url}: {error}") from None
        named = len(inputs) > 1
        for key, relative in sorted(found.items()):
            if PurePosixPath(key).suffix.lower() not in extensions:
                continue
            if named:
                relative = f"{PurePosixPath(url.rstrip('/')).name}/{relative}"
            tasks.append(ObjectTask(SCHEME + key, f"{output.rstrip('/')}/{relative}", relative))
    if not tasks:
        raise UsageError(f"no files to anonymize under {', '.join(inputs)}")
    return tasks


def existing_objects(prefix: str) -> set[str]:
    """The URLs of every object below `prefix` (one listing, for resuming)."""
    filesystem = _filesystem()
    root = prefix.removeprefix(SCHEME).rstrip("/")
    try:
        return {SCHEME + key for key in filesystem.find(root)}
    except FileNotFoundError:
        return set()


def download(url: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _filesystem().get_file(url.removeprefix(SCHEME), str(path))


def upload(path: Path, url: str) -> None:
    _filesystem().put_file(str(path), url.removeprefix(SCHEME))

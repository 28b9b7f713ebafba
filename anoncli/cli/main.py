"""The `anoncli` command line: one Typer app, its commands from the modules beside this one."""

from __future__ import annotations

from typing import Annotated

import typer

from anoncli import __version__
from anoncli.cli.evaluate import evaluate
from anoncli.cli.images import anonymize, detect
from anoncli.cli.train import train_app
from anoncli.cli.video import track, video

app = typer.Typer(
    help="Find faces in images and videos and anonymize them, offline. Run `anoncli COMMAND --help` for details "
    "and examples.\n\n"
    "    anoncli anonymize ./photos --method deepprivacy\n\n"
    "    anoncli video in.mp4 --preserve age,gender",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


def _version(show: bool) -> None:
    if show:
        typer.echo(f"anoncli {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Find faces in images and videos and anonymize them, offline."""


app.command()(detect)
app.command()(anonymize)
app.command()(video)
app.command()(track)
app.command()(evaluate)
app.add_typer(train_app, name="train")

"""The ``robustaudio`` command. One module per family of commands; each command is a thin wrapper
over the library, and this file only groups them."""

from __future__ import annotations

import click

from .common import Main
from .evaluate import attack, compare, models, noise, report


@click.group(cls=Main)
@click.version_option(package_name="robustaudio")
def main() -> None:
    """Attack, measure, defend and certify audio event classifiers."""


for command in (models, attack, noise, compare, report):
    main.add_command(command)
# Commands of the other capabilities (one import and one add_command line each):
from .defend import certify, defend, train, train_denoiser_command  # noqa: E402

for command in (train, train_denoiser_command, certify, defend):
    main.add_command(command)
from .jam import jam  # noqa: E402

main.add_command(jam)
from .sticker import sticker  # noqa: E402

main.add_command(sticker)

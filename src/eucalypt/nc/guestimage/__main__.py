"""``python -m eucalypt.nc.guestimage build [--cache-dir DIR]``."""

from __future__ import annotations

from pathlib import Path

import click

from .build import BuildError, build_test_image, default_cache_dir
from .debs import DebError


@click.group(help="Build the tiny eucalypt test guest image from Debian packages.")
def cli() -> None:
    pass


@cli.command(help="Build (or find in the cache) the test guest image and print its paths.")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where images and downloads are cached "
    "[default: $EUCALYPT_CACHE_DIR or ~/.cache/eucalypt/images].",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only the paths.")
def build(cache_dir: Path | None, quiet: bool) -> None:
    cache_dir = cache_dir or default_cache_dir()

    def progress(msg: str) -> None:
        if not quiet:
            click.echo(f"* {msg}", err=True)

    try:
        img = build_test_image(cache_dir, progress)
    except (BuildError, DebError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"kernel:  {img.kernel}")
    click.echo(f"ramdisk: {img.ramdisk}")
    click.echo(f"rootfs:  {img.rootfs}")
    if not quiet:
        click.echo(f"version: {img.version}", err=True)
        click.echo(f"cmdline: {img.cmdline}", err=True)


def main() -> None:
    cli(prog_name="python -m eucalypt.nc.guestimage")


if __name__ == "__main__":
    main()

"""Helpers shared by the CLI commands."""

from __future__ import annotations

from pathlib import Path

import click

from eucalypt.config import Config, default_data_dir

COMPONENTS = ("clc", "walrus", "cc", "nc")


def config_option(fn):  # type: ignore[no-untyped-def]
    return click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="Configuration file (default: $EUCALYPT_DATA_DIR/eucalypt.toml, "
        "else ~/.eucalypt/eucalypt.toml).",
    )(fn)


def load_config(config_path: Path | None) -> Config:
    path = config_path or default_data_dir() / "eucalypt.toml"
    if not path.exists():
        raise click.ClickException(
            f"{path} does not exist: run `eucalypt init` (or `eucalypt up`) first."
        )
    return Config.load(path)

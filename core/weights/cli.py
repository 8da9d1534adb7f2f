"""``f2n-models``: list, add, locate and fetch the weight files f2n uses."""

from __future__ import annotations

from pathlib import Path

import click

from f2n.command import Group
from f2n.weights.registry import KNOWN_WEIGHTS
from f2n.weights.store import add_weight, f2n_home, fetch, weight_path, weight_status


@click.group(cls=Group)
def main() -> None:
    """Weight files of f2n, cached under $F2N_HOME (default ~/.cache/f2n)."""


@main.command("list")
def list_weights() -> None:
    """Every known weight: name, status, path, licence."""
    click.echo(f"cache: {f2n_home()}")
    rows = [("NAME", "STATUS", "PATH", "LICENSE")]
    for spec in KNOWN_WEIGHTS:
        status = weight_status(spec)
        shown = "present, " + status.state if status.path is not None else status.state
        rows.append((spec.name, shown, str(status.path or "-"), spec.license))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3])


@main.command("add")
@click.argument("name")
@click.argument("path", type=click.Path(dir_okay=False))
def add(name: str, path: str) -> None:
    """Check the file at PATH (checksum, or that it loads) and copy it into the cache as NAME."""
    click.echo(add_weight(name, path))


@main.command("path")
@click.argument("name")
@click.option("--no-download", is_flag=True, help="Fail instead of downloading a missing file.")
def path(name: str, no_download: bool) -> None:
    """Print the verified file of NAME (building or downloading it if needed)."""
    click.echo(weight_path(name, allow_download=not no_download))


@main.command("fetch")
@click.argument("name")
def fetch_command(name: str) -> None:
    """Download the official file of NAME now."""
    click.echo(fetch(name))


@main.group("import")
def import_group() -> None:
    """Convert a checkpoint of another framework into an f2n checkpoint."""


@import_group.command("metaf2n")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The f2n checkpoint to write (.safetensors).")
def import_metaf2n_command(checkpoint: Path, out: Path) -> None:
    """The official MetaF2N TensorFlow checkpoint (a prefix such as model-400000, or its
    folder: the newest there) as an f2n checkpoint with the official test-time settings.
    Needs TensorFlow (pip install "f2n[tf]")."""
    from f2n.weights.metaf2n_import import import_metaf2n

    click.echo(import_metaf2n(checkpoint, out))

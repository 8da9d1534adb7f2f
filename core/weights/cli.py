"""``f2n-models``: list, add, locate and fetch the weight files f2n uses."""

from __future__ import annotations

import click

from f2n.errors import one_line_errors
from f2n.weights.registry import KNOWN_WEIGHTS
from f2n.weights.store import add_weight, f2n_home, fetch, weight_path, weight_status


@click.group()
def main() -> None:
    """Weight files of f2n, cached under $F2N_HOME (default ~/.cache/f2n)."""


@main.command("list")
@one_line_errors
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
@one_line_errors
def add(name: str, path: str) -> None:
    """Check the file at PATH (checksum, or that it loads) and copy it into the cache as NAME."""
    click.echo(add_weight(name, path))


@main.command("path")
@click.argument("name")
@click.option("--no-download", is_flag=True, help="Fail instead of downloading a missing file.")
@one_line_errors
def path(name: str, no_download: bool) -> None:
    """Print the verified file of NAME (building or downloading it if needed)."""
    click.echo(weight_path(name, allow_download=not no_download))


@main.command("fetch")
@click.argument("name")
@one_line_errors
def fetch_command(name: str) -> None:
    """Download the official file of NAME now."""
    click.echo(fetch(name))

"""``f2n-eval``: build degraded test sets and compare bicubic, base and adapted SR on them.

    f2n-eval build HQ_DIR OUT_DIR --kind iid|ood --seed S [--max-side PX]
    f2n-eval run SET_DIR --out REPORT_DIR [--steps 1,10,20] [--prior oracle|gpen]... [--checkpoint PATH]...
    f2n-eval study run|table ...   (the adaptation study, f2n.eval.study)
"""

from __future__ import annotations

from pathlib import Path

import click

from f2n.command import Group
from f2n.errors import ConfigError


def _steps(text: str) -> tuple[int, ...]:
    try:
        steps = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise ConfigError(f"--steps is {text!r}, expected comma-separated integers such as 1,10,20") from None
    return steps


@click.group(cls=Group)
def main() -> None:
    """Evaluate f2n on LQ/GT pairs made from HQ photos with faces."""


@main.command()
@click.argument("hq_dir", type=click.Path(path_type=Path))
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--kind", type=click.Choice(["iid", "ood"]), required=True,
              help="iid: Real-ESRGAN degradations; ood: motion blur and speckle noise instead.")
@click.option("--seed", type=int, required=True, help="Same seed, same files.")
@click.option("--scale", type=int, default=4, show_default=True)
@click.option("--max-side", type=int, default=None, help="Shrink each HQ photo to this long side first (CPU time).")
def build(hq_dir: Path, out_dir: Path, kind: str, seed: int, scale: int, max_side: int | None) -> None:
    """Make LQ/GT pairs (and their degradation parameters) from the photos in HQ_DIR."""
    from f2n.eval.testset import build_test_set

    for pair in build_test_set(hq_dir, out_dir, kind=kind, seed=seed, scale=scale, max_side=max_side):
        click.echo(f"{pair.name}: {pair.lq} {pair.gt}")


@main.command()
@click.argument("set_dir", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Report folder.")
@click.option("--steps", help="Adaptation step counts to evaluate [1,10,20 and each checkpoint's own n].")
@click.option("--prior", "priors", type=click.Choice(["oracle", "gpen"]), multiple=True,
              help="Face priors (repeatable). Default: oracle, and GPEN where its weights are installed.")
@click.option("--base", "base_network", default="realesrgan-x4plus", show_default=True,
              help="The SR network compared unadapted and adapted: registry name or weight file.")
@click.option("--checkpoint", "checkpoints", multiple=True, help="More SR weights to compare (repeatable).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--no-lpips", is_flag=True, help="Skip LPIPS even where its weights are installed.")
def run(set_dir: Path, out_dir: Path, steps: str | None, priors: tuple[str, ...], base_network: str,
        checkpoints: tuple[str, ...], device: str, no_lpips: bool) -> None:
    """Run bicubic, base and adapted SR on SET_DIR; write results.md/.csv and crops to --out."""
    from f2n.eval.report import markdown, write_report
    from f2n.eval.run import PRIORS, EvalConfig, evaluate_set

    # Priors named on the command line must load; by default GPEN is skipped when absent.
    config = EvalConfig(steps=_steps(steps) if steps else (), priors=tuple(dict.fromkeys(priors)) or PRIORS,
                        require_priors=bool(priors), base_network=base_network, checkpoints=checkpoints, device=device, lpips=not no_lpips)
    _check_report_folder(out_dir)  # before the evaluation (minutes), not after it
    result = evaluate_set(set_dir, config, log=lambda message: click.echo(message, err=True))
    try:
        write_report(result, out_dir)
    except OSError as error:  # read-only folder, full disk: one line, not a traceback
        raise ConfigError(f"cannot write the report to {out_dir}: {error.strerror or error}") from None
    click.echo(markdown(result))


def _check_report_folder(out_dir: Path) -> None:
    """``out_dir`` must be a folder or creatable as one: its nearest existing path is a folder."""
    existing = next(path for path in (out_dir, *out_dir.parents) if path.exists())
    if not existing.is_dir():
        raise ConfigError(f"--out {out_dir} must be a folder, but {existing} is a file")


from f2n.eval.study import cli as study  # noqa: E402  (last: it is a group of its own)

main.add_command(study, name="study")

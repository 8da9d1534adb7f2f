"""Issue 26: the repository cites only files it holds. The shared deployment notes live outside
it (the sessions' workspace), so a reader of docs/export.md or runtime/tiling.py could not
follow "DEPLOYMENT-NOTES #2"."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("core", "runtime", "export", "training", "eval", "cpp_ext", "benchmarks", "docs", "scripts")
OUTSIDE = ("DEPLOYMENT-NOTES", "STYLE.md", "/work/")


def _texts() -> list[Path]:
    files = [ROOT / "README.md"]
    for folder in FOLDERS:
        files += [p for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".md", ".sh") and p.is_file()]
    return files


def test_no_file_cites_notes_outside_the_repository() -> None:
    cited = [f"{path.relative_to(ROOT)}: {word}" for path in _texts() for word in OUTSIDE
             if word in path.read_text(encoding="utf-8", errors="replace")]
    assert cited == []


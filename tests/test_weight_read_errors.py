"""Issue 26: a weight file that cannot be read is called corrupt only when it is."""

from pathlib import Path

import pytest
import torch

from f2n.errors import WeightsError
from f2n.weights.checkpoint import load_state_dict_file


@pytest.fixture
def pth(tmp_path: Path) -> Path:
    path = tmp_path / "w.pth"
    torch.save({"conv.weight": torch.zeros(2, 2)}, path)
    return path


def test_out_of_memory_while_loading_is_not_called_a_corrupt_file(pth: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_memory(*args: object, **kwargs: object) -> None:
        raise MemoryError

    monkeypatch.setattr(torch, "load", no_memory)
    with pytest.raises(MemoryError):  # the caller's out-of-memory handling sees it as what it is
        load_state_dict_file(pth)


def test_an_unreadable_file_says_why_not_corrupt(pth: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(pth))

    monkeypatch.setattr(torch, "load", denied)
    with pytest.raises(WeightsError) as error:
        load_state_dict_file(pth)
    assert str(error.value) == f"cannot read {pth}: Permission denied"


def test_a_truncated_file_is_still_called_corrupt(pth: Path) -> None:
    pth.write_bytes(pth.read_bytes()[:100])
    with pytest.raises(WeightsError, match="corrupt or truncated"):
        load_state_dict_file(pth)

"""Does a weight set fit a network? One check, one message format, for strict loading
into a module and for every engine's ``set_weights``."""

from collections.abc import Mapping, Sequence
from typing import Protocol

from f2n.errors import WeightsError

SHOWN_KEYS = 3  # how many offending keys a message names


class HasShape(Protocol):
    """A torch tensor or a numpy array: all the check reads is ``.shape``."""

    @property
    def shape(self) -> Sequence[int]: ...


def weight_shapes(state_dict: Mapping[str, HasShape]) -> dict[str, tuple[int, ...]]:
    """Name -> shape: what an engine keeps to check later weight sets (not the values)."""
    return {key: tuple(value.shape) for key, value in state_dict.items()}


def check_weight_set(expected: Mapping[str, tuple[int, ...]], given: Mapping[str, HasShape], *, what: str, target: str) -> None:
    """Raise one WeightsError, ``"<what> do not fit <target>: missing keys (n): ...;
    unexpected keys (n): ...; wrong shapes (given vs expected) (n): key (a) vs (b)"``,
    unless ``given`` has exactly the keys of ``expected`` with those shapes."""
    missing = [key for key in expected if key not in given]
    unexpected = [key for key in given if key not in expected]
    wrong = [
        f"{key} {tuple(given[key].shape)} vs {shape}"
        for key, shape in expected.items()
        if key in given and tuple(given[key].shape) != tuple(shape)
    ]
    problems = [
        f"{label} {names(items)}"
        for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes (given vs expected)", wrong))
        if items
    ]
    if problems:
        raise WeightsError(f"{what} do not fit {target}: " + "; ".join(problems))


def names(items: Sequence[str]) -> str:
    """``(n): first, second, third and n-3 more``."""
    shown = ", ".join(items[:SHOWN_KEYS])
    more = f" and {len(items) - SHOWN_KEYS} more" if len(items) > SHOWN_KEYS else ""
    return f"({len(items)}): {shown}{more}"

"""check_weight_set: the one "does this weight set fit" check and its one message
format, used by load_into and every engine (the torch engine checked here; the export
engines in their own test files)."""

import numpy as np
import pytest
import torch

from f2n.errors import WeightsError
from f2n.export.torch_engine import TorchEngine
from f2n.nets.rrdbnet import RRDBNet
from f2n.weights import check_weight_set, weight_shapes

EXPECTED = {"a.weight": (4, 3, 3, 3), "a.bias": (4,), "b.weight": (2, 4, 1, 1)}


def test_a_fitting_set_passes_whatever_holds_the_values() -> None:
    check_weight_set(EXPECTED, {key: torch.zeros(shape) for key, shape in EXPECTED.items()}, what="w", target="t")
    check_weight_set(EXPECTED, {key: np.zeros(shape, np.float16) for key, shape in EXPECTED.items()}, what="w", target="t")


def test_one_message_lists_missing_unexpected_and_misshaped_keys() -> None:
    given = {"a.weight": torch.zeros(4, 3, 5, 5), "c.bias": torch.zeros(1), **{f"extra{i}": torch.zeros(1) for i in range(4)}}
    with pytest.raises(WeightsError) as caught:
        check_weight_set(EXPECTED, given, what="θ_n", target="the test engine")
    assert str(caught.value) == (
        "θ_n do not fit the test engine: missing keys (2): a.bias, b.weight; "
        "unexpected keys (5): c.bias, extra0, extra1 and 2 more; "
        "wrong shapes (given vs expected) (1): a.weight (4, 3, 5, 5) vs (4, 3, 3, 3)"
    )


def test_weight_shapes_keeps_shapes_only() -> None:
    assert weight_shapes({"x": torch.zeros(2, 3), "y": np.zeros(5)}) == {"x": (2, 3), "y": (5,)}


def test_torch_engine_refuses_weights_that_do_not_fit() -> None:
    net = RRDBNet(num_block=1, num_feat=8, num_grow_ch=4)
    engine = TorchEngine(net)
    weights = dict(net.state_dict()) | {"conv_last.bias": torch.zeros(4)}
    with pytest.raises(WeightsError, match=r"^weights do not fit the torch engine's network: wrong shapes \(given vs expected\) \(1\): conv_last.bias \(4,\) vs \(3,\)$"):
        engine.set_weights(weights)
    del weights["conv_last.bias"]
    with pytest.raises(WeightsError, match=r"missing keys \(1\): conv_last.bias$"):
        engine.set_weights(weights)
    before = engine.run(torch.ones(1, 3, 8, 8))
    with torch.inference_mode():
        torch.testing.assert_close(before, net(torch.ones(1, 3, 8, 8)), atol=0, rtol=0)  # a refused set changed nothing

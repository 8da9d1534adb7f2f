"""Network definitions. Each module holds one plain network; loading and key
remapping live in :mod:`f2n.weights`."""

from f2n.nets.masknet import MaskNet
from f2n.nets.rrdbnet import RRDB, ResidualDenseBlock, RRDBNet

__all__ = ["RRDB", "MaskNet", "RRDBNet", "ResidualDenseBlock"]

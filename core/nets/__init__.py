"""Network definitions. Each module holds one plain network; loading and key
remapping live in :mod:`f2n.weights`."""

from f2n.nets.condition_net import ConditionNet, ConditionNetConfig, modulated_convs, modulated_weights
from f2n.nets.masknet import MaskNet
from f2n.nets.redegnet_degnet import DegNet
from f2n.nets.redegnet_discriminator import ReDegDiscriminator
from f2n.nets.redegnet_syn_encoder import SynNetEncoder
from f2n.nets.redegnet_syn_generator import SynNetGenerator
from f2n.nets.rrdbnet import RRDB, VALUE_RANGES, ResidualDenseBlock, RRDBNet, ValueRange

__all__ = ["RRDB", "VALUE_RANGES", "ConditionNet", "ConditionNetConfig", "DegNet", "MaskNet", "RRDBNet", "ReDegDiscriminator",
           "ResidualDenseBlock", "SynNetEncoder", "SynNetGenerator", "ValueRange", "modulated_convs", "modulated_weights"]

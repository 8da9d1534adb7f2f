"""Weights: the registry of known files, the verified cache, safe loading, one loader per
network behind one dispatcher (:mod:`f2n.weights.networks`), the ncnn converter and the
f2n checkpoint format. Import what is listed in ``__all__``."""

from f2n.weights import networks
from f2n.weights.checkpoint import (
    AdaptationDefaults,
    load_into,
    load_state_dict_file,
    save_f2n_checkpoint,
)
from f2n.weights.fit import check_weight_set, weight_shapes
from f2n.weights.networks import NETWORKS, identify, load_network
from f2n.weights.registry import KNOWN_WEIGHTS, WeightSpec
from f2n.weights.sr import LoadedSR, RangeChoice, SRDescriptor, load_sr_network
from f2n.weights.store import add_weight, f2n_home, fetch, register_unpinned_check, weight_path

# The cache checks an unpinned file by loading it as its network; the network loaders sit above
# the cache (they resolve registry names through it), so they register the check from here.
register_unpinned_check(networks.check_loads)

__all__ = [
    "KNOWN_WEIGHTS",
    "NETWORKS",
    "AdaptationDefaults",
    "LoadedSR",
    "RangeChoice",
    "SRDescriptor",
    "WeightSpec",
    "add_weight",
    "check_weight_set",
    "f2n_home",
    "fetch",
    "identify",
    "load_into",
    "load_network",
    "load_sr_network",
    "load_state_dict_file",
    "save_f2n_checkpoint",
    "weight_path",
    "weight_shapes",
]

"""f2n: face-guided blind super-resolution runtime (MetaF2N), made fast and exportable.

The root package holds what every part imports: the network definitions
(:mod:`f2n.nets`), weight handling (:mod:`f2n.weights`) and the error types
(:mod:`f2n.errors`). The stages live in ``f2n.runtime``, ``f2n.export``,
``f2n.training``, ``f2n.eval``, ``f2n.cpp_ext`` and ``f2n.benchmarks``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]

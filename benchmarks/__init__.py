"""Stage latency benchmarks and the CI latency regression check (``f2n-bench``).

Stages are set up untimed and timed against a fixed reference workload measured in the
same rounds; the check compares those ratios with a committed per-machine-class baseline.
"""

from f2n.benchmarks.machine import machine_class
from f2n.benchmarks.regression import (
                                       DEFAULT_THRESHOLD,
                                       StageResult,
                                       SuiteResult,
                                       compare,
                                       load_result,
                                       run_suite,
                                       save_result,
)
from f2n.benchmarks.stages import Stage, StageUnavailable
from f2n.benchmarks.suites import suite_stages

__all__ = [
    "DEFAULT_THRESHOLD",
    "Stage",
    "StageResult",
    "StageUnavailable",
    "SuiteResult",
    "compare",
    "load_result",
    "machine_class",
    "run_suite",
    "save_result",
    "suite_stages",
]

"""Issue 26: stderr carries f2n's one-line messages only. On a CPU machine with a CUDA toolkit,
importing torch.utils.cpp_extension (which AOTInductor's compiler and package loader do) logs
"No CUDA runtime is found"; --engine aoti left that line on stderr."""

import subprocess
import sys

import pytest

WARNING = "No CUDA runtime is found"


def _stderr(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stderr


def test_the_aoti_path_imports_cpp_extension_quietly() -> None:
    if WARNING not in _stderr("import torch.utils.cpp_extension"):
        pytest.skip("this machine has no CUDA toolkit without a GPU: torch does not warn here")
    assert WARNING not in _stderr("from f2n.export.aoti import quiet_cpp_extension; quiet_cpp_extension(); "
                                  "import torch.utils.cpp_extension")

"""The shared-data fixture's rule: absent data skips a test on a user's clone and fails it in CI."""

from pathlib import Path

import pytest
from conftest import require_shared_data


def test_missing_shared_data_skips_outside_ci(tmp_path: Path) -> None:
    with pytest.raises(pytest.skip.Exception, match="shared test data not found"):
        require_shared_data(tmp_path / "absent", {})


def test_missing_shared_data_fails_in_ci(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match="CI=true, so this is an error"):
        require_shared_data(tmp_path / "absent", {"CI": "true"})


def test_present_shared_data_is_returned(tmp_path: Path) -> None:
    assert require_shared_data(tmp_path, {"CI": "true"}) == tmp_path

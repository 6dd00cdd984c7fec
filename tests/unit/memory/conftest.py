from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.memory.support import make_world


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Any]:
    """A corpus ingested with encoder v0, a live state whose memory refreshes inline, and a settable wall clock."""
    return make_world(tmp_path)

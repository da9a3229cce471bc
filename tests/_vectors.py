"""Loading the test vectors copied into tests/vectors (each file names its source)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).parent / "vectors"


def load_vector(name: str) -> Any:
    """Return the parsed JSON vector file ``tests/vectors/<name>``."""
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))

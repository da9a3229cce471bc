"""``python -m hmacguard``: the ``hmacguard`` command (see :mod:`hmacguard._cli`)."""

from __future__ import annotations

from ._cli import main

if __name__ == "__main__":
    raise SystemExit(main())

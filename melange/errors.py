"""The one user-facing error type, in a module with no heavy imports (the CLI starts fast)."""

from __future__ import annotations


class MelangeError(ValueError):
    """A user-facing error: one line naming the field and the problem (CLI exit code 2)."""

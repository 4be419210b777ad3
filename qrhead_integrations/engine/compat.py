"""The one place the library reads a private attribute of another library.

transformers 5 sets a model's attention implementation through the public
``model.set_attn_implementation(name)`` but has no public getter: the value lives in
``model.config._attn_implementation``. :func:`attn_implementation` reads it, so that a capture can put
the model back exactly as it found it. ``tests/test_capture.py`` checks it against the setter on the
lowest and the newest transformers that pyproject allows (CI runs the engine tests on both).
"""

from __future__ import annotations

from typing import Any


def attn_implementation(model: Any) -> str | None:
    """The attention implementation ``model`` runs with now (e.g. ``"sdpa"``, ``"eager"``)."""
    return model.config._attn_implementation

"""Shared pytest fixtures. Append small, clearly named fixtures; keep edits minimal."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def fake_checkpoint(tmp_path_factory):
    """A tiny fake Step-Audio 2 checkpoint in the official layout (written once per session).
    Tests must not modify it: copy it first (see tests/test_checkpoint_check.py)."""
    from engine.checkpoint import fake

    return fake(tmp_path_factory.mktemp("fake_ckpt") / "Step-Audio-2-mini", "tiny")

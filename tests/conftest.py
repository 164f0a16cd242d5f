"""Shared fixtures: one embedded Tansu broker per test session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from pipeline.broker import EmbeddedBroker


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """A real Kafka-protocol broker (Tansu, memory storage) on a free loopback port."""
    with EmbeddedBroker() as running:
        yield running


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic names and group ids of one test."""
    return uuid.uuid4().hex[:8]

"""Fixtures shared by the core tests: one parametrized suite runs on every
backend this machine has (uvloop's per-loop mixin idea, as a fixture)."""
import pytest

from netcore import iocore


@pytest.fixture(params=iocore.backends())
def backend(request) -> str:
    return request.param


@pytest.fixture
def q(backend):
    queue = iocore.Queue(backend)
    yield queue
    if not queue.closed:
        queue.close_queue()

import os
import sys

import pytest

# Test helpers (numpy_oracle) live beside the tests.
sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(params=["cython", "reference"])
def backend(request):
    """A test that takes `backend` runs on each: the compiled one and the pure-Python
    reference (a test may still parametrize `backend` itself)."""
    return request.param

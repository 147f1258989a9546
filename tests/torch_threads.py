"""Run torch on one thread inside a test.

On a CI machine whose two cores are shared, torch's default of one thread per core makes
each thread spin-wait for the other: small models then run tens of times slower.
Use with ``pytestmark = pytest.mark.usefixtures("one_thread")`` after importing it.
"""

import pytest
import torch


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

"""One intra-op thread for these tests.

Their tensors are tiny: on the shared 2-core CI machine, two intra-op threads made the
double-backward tests 20x slower (threads waiting on each other under load) for no gain.
"""

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)

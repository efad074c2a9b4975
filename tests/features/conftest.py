"""One intra-op thread for these tests.

Their tensors are tiny, so a second thread only adds synchronisation; on the shared
2-core CI machine under load, two threads made the training tests about 25x slower.
"""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)

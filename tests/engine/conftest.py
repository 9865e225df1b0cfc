import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The test box is shared: one intra-op thread is far faster than two contended ones."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

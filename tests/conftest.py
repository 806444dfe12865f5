"""Test-wide settings: offline, headless plots, and the shared-CPU thread budget."""
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# swiftlite/kernels: the Triton kernels run on CPU tensors in Triton's interpreter, which must be on
# before a kernel file is imported (Triton reads it when @triton.jit runs); TRITON_INTERPRET=0 on a GPU.
os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's tests (on the 2-core CI machine more threads only fight);
    a test file opts in with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

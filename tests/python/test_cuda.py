"""On a GPU: tensors on a CUDA device stay there (selection, encoding, tiles moved by the caller).
Without one every test here is skipped, and CTest counts the file as skipped (conftest.py)."""
import pytest
import torch

from conftest import fixture

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def test_a_cuda_tensor_stays_on_its_device(ips):
    model = ips.Model(config=ips.Config(fixture("tiny_grey.yaml")), device="cuda")
    assert model.device.startswith("cuda")
    patches = torch.rand(2, 20, 1, 16, 16, device="cuda")
    idx, scores, valid = model.select(patches)
    assert idx.is_cuda and scores.is_cuda and valid.is_cuda and patches.is_cuda
    assert model.encode(patches[0]).is_cuda
    # The same selection as on the CPU, within float tolerance of the kernels.
    cpu = ips.Model(config=ips.Config(fixture("tiny_grey.yaml")), device="cpu")
    assert torch.equal(cpu.select(patches.cpu())[0], idx.cpu())


def test_state_dict_tensors_live_on_the_models_device(ips):
    model = ips.Model(config=ips.Config(fixture("tiny_grey.yaml")), device="cuda")
    assert all(t.is_cuda for t in model.state_dict().values())

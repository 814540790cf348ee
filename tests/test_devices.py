"""One device and dtype vocabulary for every layer (``devices``)."""

import pytest
import torch

from devices import DTYPE_NAMES, default_dtype, dtype_name, model_dtype, resolve_device, torch_dtype


def test_auto_means_a_gpu_where_there_is_one_and_other_names_pass_through():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == resolve_device(None) == resolve_device() == expected
    assert resolve_device("cuda:1") == "cuda:1" and resolve_device("cpu") == "cpu"


def test_short_and_long_precision_names_mean_the_same_dtype():
    assert torch_dtype("bf16") is torch_dtype("bfloat16") is torch.bfloat16
    assert torch_dtype("fp16") is torch_dtype("float16") is torch.float16
    assert torch_dtype("fp32") is torch_dtype("float32") is torch.float32
    assert [torch_dtype(n) for n in DTYPE_NAMES] == [torch.bfloat16, torch.float16, torch.float32]
    with pytest.raises(ValueError, match=r"dtype must be one of .*got 'int8'"):
        torch_dtype("int8")
    assert dtype_name("bf16") == dtype_name("bfloat16") == "bfloat16"  # checked without torch
    with pytest.raises(ValueError, match="got 'int8'"):
        dtype_name("int8")


def test_half_precision_only_on_a_gpu():
    assert default_dtype("cuda") is torch.bfloat16 and default_dtype("cpu") is torch.float32
    assert model_dtype("float16", "cuda:0") is torch.float16
    assert model_dtype("float16", "cpu") is torch.float32  # slow or missing half kernels on a CPU
    with pytest.raises(ValueError, match="dtype must be one of"):
        model_dtype("float8", "cpu")  # checked on any device

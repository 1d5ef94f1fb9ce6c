"""TF32 through both of torch's switches, and what the record says was in force."""
import pytest
import torch

from refbench.harness import fp32_precision
from refbench.harness.backends import resolve
from refbench.harness.fp32_precision import in_force, plain_fp32, set_tf32

IEEE = {"matmul_precision": "ieee", "conv_precision": "ieee"}
TF32 = {"matmul_precision": "tf32", "conv_precision": "tf32"}


def settings():
    return {key: setting().fp32_precision for key, setting in fp32_precision._SETTINGS.items()}


@pytest.fixture(autouse=True)
def _restore():
    with plain_fp32():   # whatever a test sets, the next one starts from what was there
        yield


@pytest.mark.parametrize("enabled", [True, False])
def test_tf32_on_or_off_reads_back_the_same_through_both_apis(enabled):
    set_tf32(enabled)
    assert torch.backends.cuda.matmul.allow_tf32 is enabled and torch.backends.cudnn.allow_tf32 is enabled
    assert torch.get_float32_matmul_precision() == ("high" if enabled else "highest")
    mode = "tf32" if enabled else "ieee"
    assert (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision,
            torch.backends.cudnn.rnn.fp32_precision) == (mode, mode, mode)
    assert in_force("cuda") == (TF32 if enabled else IEEE)
    assert in_force("cpu") == IEEE   # oneDNN stays IEEE: TF32 is a CUDA mode


def test_the_tf32_backend_switches_it_on_and_the_others_off():
    resolve("tf32").configure()
    assert in_force("cuda") == TF32
    resolve("cuda+amp-bf16").configure()
    assert in_force("cuda") == IEEE
    resolve("cpu").configure()
    assert in_force("cuda") == IEEE and in_force("cpu") == IEEE


def test_a_setting_the_flags_do_not_show_is_what_the_record_says():
    set_tf32(False)
    torch.backends.cuda.matmul.fp32_precision = "tf32"   # the new API alone: the legacy flag cannot be read now
    assert in_force("cuda")["matmul_precision"] == "tf32"
    torch.set_float32_matmul_precision("medium")          # oneDNN's float32 matmuls in bfloat16
    assert in_force("cpu") == {"matmul_precision": "bf16", "conv_precision": "ieee"}
    torch.backends.mkldnn.conv.fp32_precision = "none"
    torch.backends.fp32_precision = "tf32"                # inherited through the generic setting
    assert in_force("cpu")["conv_precision"] == "tf32"


def test_plain_fp32_switches_tf32_off_and_puts_every_setting_back():
    set_tf32(True)
    torch.backends.mkldnn.matmul.fp32_precision = "bf16"
    before = settings()
    with plain_fp32():
        assert in_force("cuda") == IEEE and in_force("cpu") == IEEE
    assert settings() == before
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32   # both APIs readable

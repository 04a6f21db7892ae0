"""One precision rule for every trainer config the course builds: fp32 on CPU, no gradient checkpointing by
default, bf16 only on GPUs that compute it natively, fp32 master weights under fp16."""
import pytest
import torch

from helpers.dpo import dpo_config
from helpers.precision import choose_precision
from helpers.training import sft_config


def configs(tmp_path):
    """Every trainer config the course builds, as built on this machine."""
    from helpers.grpo import grpo_config
    return {"sft": sft_config(tmp_path / "sft", learning_rate=1e-3),
            "dpo": dpo_config(tmp_path / "dpo", learning_rate=1e-3),
            "grpo": grpo_config(tmp_path / "grpo", learning_rate=1e-3)}


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU rule")
def test_every_trainer_config_on_cpu_is_fp32_without_checkpointing(tmp_path):
    for name, args in configs(tmp_path).items():
        assert args.bf16 is False and args.fp16 is False, f"{name}: autocast on a CPU"
        assert args.use_cpu is True, name
        assert args.activation_checkpointing is False and args.gradient_checkpointing is False, name


def test_trl_would_have_switched_bf16_and_checkpointing_on(tmp_path):
    """Why the rule is explicit: TRL's defaults, left alone, autocast to bf16 and recompute every forward pass."""
    from trl import SFTConfig
    args = SFTConfig(output_dir=str(tmp_path), use_cpu=True)
    assert args.bf16 is True and args.activation_checkpointing is True


def test_cpu_loads_and_trains_fp32():
    p = choose_precision("cpu")
    assert p.dtype == torch.float32 and not p.bf16 and not p.fp16
    assert p.trainer_args() == {"bf16": False, "fp16": False, "use_cpu": True, "activation_checkpointing": False}
    assert p.trainer_args(gradient_checkpointing=True)["activation_checkpointing"] is True


@pytest.mark.parametrize("capability, bf16", [((8, 0), True), ((9, 0), True), ((7, 5), False), ((7, 0), False)])
def test_cuda_rule_reads_the_compute_capability(capability, bf16):
    frozen = choose_precision("cuda", capability=capability)
    full = choose_precision("cuda", capability=capability, trains_base_weights=True)
    assert frozen.bf16 is bf16 and frozen.fp16 is (not bf16)
    assert frozen.dtype == (torch.bfloat16 if bf16 else torch.float16)     # a frozen base may be stored in 16 bits
    assert full.dtype == torch.float32                                      # weights that train: fp32 master weights
    assert full.trainer_args()["use_cpu"] is False and full.trainer_args()["activation_checkpointing"] is False


def test_unknown_device_is_refused():
    with pytest.raises(ValueError, match="'cpu' or 'cuda'"):
        choose_precision("mps")

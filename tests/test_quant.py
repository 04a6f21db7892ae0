"""Unit tests of helpers.quant: NF4/FP4/int4 from scratch against bitsandbytes, and the storage count."""
import sys

import pytest
import torch

from helpers import quant

bnb = pytest.importorskip("bitsandbytes")


def test_nf4_codebook_matches_bitsandbytes():
    ours = quant.nf4_codebook()
    assert ours.shape == (16,) and ours[7] == 0 and ours[0] == -1 and ours[-1] == 1
    assert (ours - bnb.functional.get_4bit_type("nf4", device="cpu")).abs().max() < 1e-6
    assert abs(quant.NF4_OFFSET - 0.9677083) < 1e-7


def test_fp4_and_int4_codebooks():
    bnb_fp4 = bnb.functional.get_4bit_type("fp4", device="cpu").unique()  # sorted, -0 == +0
    assert torch.equal(quant.fp4_codebook(), bnb_fp4)
    # bitsandbytes lists int4 as the integers 7..-7 (its get_4bit_type("int4") fails on the int tensor in 0.50)
    assert torch.allclose(quant.int4_codebook() * 7, torch.arange(-7.0, 8.0))


@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
@pytest.mark.parametrize("shape", [(64, 256), (256, 688), (3, 100)])
def test_from_scratch_equals_bitsandbytes(quant_type, shape):
    quant.patch_cpu_dequantize()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    packed, _, bnb_hat = quant.bnb_roundtrip(x, quant_type)
    assert (quant.roundtrip(x, quant_type) - bnb_hat.reshape(shape)).abs().max() < 1e-6
    if quant_type == "nf4":  # NF4's index is the position in the sorted codebook: the bytes agree too
        indices, _ = quant.quantize_blockwise(x, quant.nf4_codebook())
        assert torch.equal(quant.pack_nibbles(indices), packed)


def test_partial_last_block_and_zero_block():
    x = torch.zeros(70)
    x[65] = -2.0
    x_hat = quant.roundtrip(x, "nf4")
    assert torch.equal(x_hat, x)  # zeros stay exact, the absmax value is exact


def test_nf4_beats_fp4_and_int4_on_gaussian_data():
    x = torch.randn(64 * 512, generator=torch.Generator().manual_seed(1))
    err = {k: quant.quant_error(x, quant.roundtrip(x, k))["mse"] for k in quant.CODEBOOKS}
    assert err["nf4"] < err["int4"] and err["nf4"] < err["fp4"]


def test_formula():
    assert quant.bits_per_param_formula(double_quant=False) == 4.5
    assert abs(quant.bits_per_param_formula(double_quant=True) - 4.127) < 1e-3


@pytest.mark.parametrize("double_quant", [True, False])
def test_stored_bytes_match_formula(double_quant):
    x = torch.randn(256, 1024, generator=torch.Generator().manual_seed(2))  # 4096 blocks = 16 nested blocks
    packed, state, _ = quant.bnb_roundtrip(x, "nf4", double_quant)
    record = quant.stored_bytes(packed, state)
    assert record["packed_weight"] == x.numel() // 2
    assert record["absmax"] == x.numel() // 64 * (1 if double_quant else 4)
    assert quant.bits_per_param(record) == pytest.approx(quant.bits_per_param_formula(double_quant=double_quant))
    assert record["constants"] == (64 + 1024 + 4 if double_quant else 64)


def test_missing_bitsandbytes_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    with pytest.raises(ImportError, match="pip install"):
        quant.require_bitsandbytes()

"""Unit tests of helpers.quant: the FP4 and int4 codebooks against bitsandbytes, and the storage count.
(NF4 and the blockwise quantizer are written in notebook 04 and checked there against bitsandbytes.)"""
import sys

import pytest
import torch

from helpers import quant

bnb = pytest.importorskip("bitsandbytes")


def test_fp4_and_int4_codebooks():
    bnb_fp4 = bnb.functional.get_4bit_type("fp4", device="cpu").unique()  # sorted, -0 == +0
    assert torch.equal(quant.fp4_codebook(), bnb_fp4)
    # bitsandbytes lists int4 as the integers 7..-7 (its get_4bit_type("int4") fails on the int tensor in 0.50)
    assert torch.allclose(quant.int4_codebook() * 7, torch.arange(-7.0, 8.0))


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


def test_pack_nibbles_puts_the_first_index_high():
    assert quant.pack_nibbles(torch.tensor([1, 2, 15], dtype=torch.uint8)).flatten().tolist() == [0x12, 0xF0]

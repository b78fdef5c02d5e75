"""/init_t2s_weights and /change_sovits_weights on real-format (random) weights."""

from __future__ import annotations

import shutil

import pytest

from app.engine.registry import PRETRAINED_SOVITS
from tests.conftest import generate_weights

FILES = {
    "GPT_weights_v2/voice-e15.ckpt": "s1_v2_tiny",
    "GPT_weights/old-e15.ckpt": "s1_v1_tiny",
    "SoVITS_weights/old_e8_s200.pth": "sovits_v1_tiny",
    "SoVITS_weights_v2/voice_e8_s200.pth": "sovits_v2_tiny",
    "SoVITS_weights_v2ProPlus/pro_e8_s200.pth": "sovits_v2ProPlus_tiny",
    "SoVITS_weights_v4/lora_e2_s100.pth": "sovits_v4_lora_full",
    # shared models every voice needs
    "GPT_SoVITS/pretrained_models/chinese-hubert-base": "hubert_tiny",
    "GPT_SoVITS/pretrained_models/chinese-roberta-wwm-ext-large": "bert_tiny",
    "GPT_SoVITS/pretrained_models/sv/pretrained_eres2netv2w24s4ep4.ckpt": "sv_eres2netv2_full",
}


@pytest.fixture
def root(weights_root):
    for rel, layout in FILES.items():
        path = weights_root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        source = generate_weights(layout, 1)
        if source.is_dir():
            shutil.copytree(source, path)
        else:
            shutil.copyfile(source, path)
    return weights_root


def test_gpt_switch_reports_the_symbol_table(client, root):
    r = client.post("/init_t2s_weights", json={"weights_path": "GPT_weights/old-e15.ckpt"})
    assert r.status_code == 200 and r.json()["version"] == "v1"
    r = client.post("/init_t2s_weights", json={"weights_path": "GPT_weights_v2/voice-e15.ckpt"})
    assert r.json() == {"weights_path": "GPT_weights_v2/voice-e15.ckpt", "version": "v2", "max_sec": 2}


def test_v1_sovits_resets_languages_v1_cannot_speak(client, root):
    body = {"sovits_path": "SoVITS_weights/old_e8_s200.pth", "prompt_language": "粤语", "text_language": "英文"}
    r = client.post("/change_sovits_weights", json=body).json()
    assert r["model_version"] == "v1" and r["version"] == "v1"
    assert [c["code"] for c in r["languages"]] == ["all_zh", "en", "all_ja", "zh", "ja", "auto"]
    assert r["prompt_language"] == "all_zh" and r["prompt_text_reset"] is True
    assert r["text_language"] == "en" and r["text_reset"] is False
    assert r["aux_refs_apply"] and r["ref_text_free_allowed"] and not r["sample_steps_applies"]
    assert r["super_sampling_available"] is False


def test_v2proplus_keeps_every_language(client, root):
    body = {"sovits_path": "SoVITS_weights_v2ProPlus/pro_e8_s200.pth", "prompt_language": "yue", "text_language": "韩文"}
    r = client.post("/change_sovits_weights", json=body).json()
    assert r["model_version"] == "v2ProPlus" and len(r["languages"]) == 11
    assert (r["prompt_language"], r["text_language"]) == ("yue", "all_ko")
    assert not r["prompt_text_reset"] and not r["text_reset"]


def test_lora_without_its_base_is_409_naming_the_base(client, root):
    r = client.post("/change_sovits_weights", json={"sovits_path": "SoVITS_weights_v4/lora_e2_s100.pth"})
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "lora_base_missing"
    assert "gsv-v4-pretrained/s2Gv4.pth" in r.json()["error"]["message"]


@pytest.mark.parametrize("path", ["SoVITS_weights_v2/missing.pth", "../../etc/passwd", "/abs/x.pth"])
def test_bad_names_are_4xx(client, root, path):
    r = client.post("/change_sovits_weights", json={"sovits_path": path})
    assert r.status_code in (404, 422)
    r = client.post("/init_t2s_weights", json={"weights_path": path.replace(".pth", ".ckpt")})
    assert r.status_code in (404, 422)


def test_corrupt_weight_file_is_422_naming_the_file(client, root):
    bad = root / "SoVITS_weights_v2" / "broken_e1.pth"
    good = (root / "SoVITS_weights_v2" / "voice_e8_s200.pth").read_bytes()
    bad.write_bytes(good[: len(good) // 3])
    r = client.post("/change_sovits_weights", json={"sovits_path": "SoVITS_weights_v2/broken_e1.pth"})
    assert r.status_code == 422
    assert "broken_e1.pth" in r.json()["error"]["message"]


def test_wrong_kind_of_file_is_422(client, root):
    # A GPT checkpoint renamed to .pth is not a SoVITS model.
    shutil.copyfile(root / "GPT_weights_v2" / "voice-e15.ckpt", root / "SoVITS_weights_v2" / "gpt_as_sovits.pth")
    r = client.post("/change_sovits_weights", json={"sovits_path": "SoVITS_weights_v2/gpt_as_sovits.pth"})
    assert r.status_code == 422


def test_unknown_language_spelling_is_422(client, root):
    body = {"sovits_path": "SoVITS_weights_v2/voice_e8_s200.pth", "prompt_language": "Klingon"}
    assert client.post("/change_sovits_weights", json=body).status_code == 422


def test_missing_shared_models_are_reported_when_the_model_is_chosen(client, root):
    shutil.rmtree(root / "GPT_SoVITS/pretrained_models/chinese-roberta-wwm-ext-large")
    r = client.post("/change_sovits_weights", json={"sovits_path": "SoVITS_weights_v2/voice_e8_s200.pth"})
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "missing_weights"
    assert "weights/README.md" in r.json()["error"]["message"]


@pytest.mark.parametrize("version", ["v2Pro", "v2ProPlus"])
def test_a_plain_zip_pro_model_at_its_pretrained_path_loads_as_pro(client, root, version):
    """Upstream's official s2Gv2Pro(Plus).pth files carry no 05/06 header (upstream knows them by md5):
    the model must still be built with its speaker-embedding layers."""
    source = generate_weights(f"sovits_{version}_tiny", 1).read_bytes()
    target = root / PRETRAINED_SOVITS[version]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"PK" + source[2:])
    r = client.post("/change_sovits_weights", json={"sovits_path": PRETRAINED_SOVITS[version]})
    assert r.status_code == 200, r.text
    assert r.json()["model_version"] == version
    assert client.app.state.engine.models.sovits(PRETRAINED_SOVITS[version]).model.config.uses_speaker_embedding


def test_super_sampling_is_available_for_v3_only_and_only_with_the_ap_bwe_model(tmp_path):
    from app.engine.engine import Engine, EngineConfig
    from app.engine.registry import BANDWIDTH_EXTENSION_DIR
    from tests.conftest import write_bandwidth_extension

    engine = Engine(EngineConfig(weights_root=tmp_path))
    assert not engine.super_sampling_available("v3")
    write_bandwidth_extension(tmp_path / BANDWIDTH_EXTENSION_DIR, channels=8, layers=1)
    assert engine.super_sampling_available("v3")
    assert not any(engine.super_sampling_available(v) for v in ("v1", "v2", "v2Pro", "v2ProPlus", "v4"))

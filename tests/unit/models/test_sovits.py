"""Unit tests of the SoVITS synthesizer: strict loading of every official layout, and the pure pieces
(weight-norm folding, relative attention, codebooks, decode's length/noise/reference handling)
on small random models."""

from __future__ import annotations

import json
import math

import pytest
import torch

from app.engine.checkpoints import CheckpointError
from app.engine.models.sovits import SoVITSConfig, SoVITSSynthesizer
from app.engine.models.vits_modules import MultiHeadAttention, ResidualCodebooks, fold_weight_norm
from tests.conftest import conformance_dir

SOVITS_LAYOUTS = [
    f"sovits_{version}_{size}" for version in ("v1", "v2", "v2Pro", "v2ProPlus") for size in ("tiny", "full")
]


def _layout(name: str) -> dict:
    path = conformance_dir() / "layouts" / f"{name}.json"
    if not path.exists():
        pytest.skip(f"layout {name} not found (conformance corpus missing)")
    return json.loads(path.read_text(encoding="utf-8"))


def _meta_state(layout: dict) -> dict[str, torch.Tensor]:
    """The layout's tensors as shape-only (meta) tensors: loading checks keys and shapes for free."""
    return {
        key: torch.empty(shape, dtype=getattr(torch, dtype), device="meta")
        for key, shape, dtype in layout["tensors"]
    }


def _header(layout: dict) -> bytes:
    return (layout.get("header") or "PK").encode()


def _load_meta(state: dict, layout: dict) -> SoVITSSynthesizer:
    with torch.device("meta"):
        return SoVITSSynthesizer.from_state_dict(state, layout["config"], _header(layout), source="test.pth")


# --------------------------------------------------------------------------- loading


@pytest.mark.parametrize("name", SOVITS_LAYOUTS)
def test_every_official_layout_loads_strictly(name):
    layout = _layout(name)
    model = _load_meta(_meta_state(layout), layout)
    assert model.config.version == layout["model_version"]
    assert model.config.uses_speaker_embedding == ("Pro" in layout["model_version"])


def test_a_missing_key_is_named():
    layout = _layout("sovits_v2_tiny")
    state = _meta_state(layout)
    del state["dec.conv_post.weight"]
    with pytest.raises(CheckpointError, match="missing keys: dec.conv_post.weight"):
        _load_meta(state, layout)


def test_an_unknown_key_is_named():
    layout = _layout("sovits_v2_tiny")
    state = _meta_state(layout)
    state["dec.extra.weight"] = torch.empty(3, device="meta")
    with pytest.raises(CheckpointError, match="unexpected keys: dec.extra.weight"):
        _load_meta(state, layout)


def test_a_wrong_shape_is_named():
    layout = _layout("sovits_v2_tiny")
    state = _meta_state(layout)
    state["enc_p.proj.bias"] = torch.empty(7, device="meta")
    with pytest.raises(CheckpointError, match=r"wrong shapes: enc_p\.proj\.bias \(7,\)"):
        _load_meta(state, layout)


def test_half_of_a_weight_norm_pair_is_reported():
    layout = _layout("sovits_v2_tiny")
    state = _meta_state(layout)
    del state["dec.ups.0.weight_g"]
    with pytest.raises(CheckpointError, match="dec.ups.0.weight"):
        _load_meta(state, layout)


def test_training_only_weights_are_ignored():
    """Pretrained files also hold the posterior encoder; the quantizer's EMA buffers are never read."""
    layout = _layout("sovits_v2_tiny")
    state = _meta_state(layout)
    state["enc_q.proj.weight"] = torch.empty(384, 192, 1, device="meta")
    assert any(".cluster_size" in key for key in state)
    _load_meta(state, layout)


def test_v3_files_are_refused():
    layout = _layout("sovits_v2_tiny")
    state = _meta_state(layout)
    state["cfm.estimator.weight"] = torch.empty(1, device="meta")
    with pytest.raises(CheckpointError, match="v3/v4"):
        _load_meta(state, layout)


def test_version_follows_symbols_and_header_not_the_config_field():
    layout = _layout("sovits_v2_tiny")
    state = _meta_state(layout)
    config = json.loads(json.dumps(layout["config"]))
    config["model"]["version"] = "v1"  # upstream ignores this field
    assert SoVITSConfig.from_checkpoint(config, state, b"PK").version == "v2"
    assert SoVITSConfig.from_checkpoint(config, state, b"06").version == "v2ProPlus"
    state["enc_p.text_embedding.weight"] = torch.empty(322, 192, device="meta")
    assert SoVITSConfig.from_checkpoint(config, state, b"PK").version == "v1"


# --------------------------------------------------------------------------- building blocks


@pytest.mark.parametrize(
    "layer", [torch.nn.Conv1d(6, 4, 3), torch.nn.ConvTranspose1d(6, 3, 4, 2)], ids=["conv", "transposed"]
)
def test_fold_weight_norm_matches_torch_weight_norm(layer):
    torch.manual_seed(0)
    normed = torch.nn.utils.parametrizations.weight_norm(layer)
    g = normed.parametrizations.weight.original0.detach() * 1.7
    v = normed.parametrizations.weight.original1.detach()
    with torch.no_grad():
        normed.parametrizations.weight.original0.copy_(g)
    torch.testing.assert_close(fold_weight_norm(g, v), normed.weight.detach(), rtol=1e-6, atol=1e-7)


def _naive_relative_attention(attn: MultiHeadAttention, x: torch.Tensor) -> torch.Tensor:
    """The VITS definition written with loops: offsets within the window get learned terms."""
    w, d = attn.window_size, attn.head_dim
    q = attn._heads(attn.conv_q(x)) / math.sqrt(d)
    k, v = attn._heads(attn.conv_k(x)), attn._heads(attn.conv_v(x))
    length = x.size(-1)
    scores = q @ k.transpose(-2, -1)
    for i in range(length):
        for j in range(length):
            if abs(j - i) <= w:
                scores[..., i, j] += (q[..., i, :] * attn.emb_rel_k[0, j - i + w]).sum(-1)
    p = scores.softmax(-1)
    out = p @ v
    for i in range(length):
        for j in range(length):
            if abs(j - i) <= w:
                out[..., i, :] += p[..., i, j, None] * attn.emb_rel_v[0, j - i + w]
    return attn.conv_o(out.transpose(2, 3).reshape(x.shape))


@pytest.mark.parametrize("length", [1, 3, 12])
def test_relative_attention_matches_its_definition(length):
    torch.manual_seed(length)
    attn = MultiHeadAttention(8, 8, n_heads=2, window_size=4)
    with torch.no_grad():
        attn.emb_rel_k.normal_()
        attn.emb_rel_v.normal_()
        x = torch.randn(2, 8, length)
        torch.testing.assert_close(attn(x, x), _naive_relative_attention(attn, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("length", [1, 2, 7])
def test_offset_and_key_axes_convert_both_ways_exactly(length):
    from app.engine.models.vits_modules import _keys_to_offsets, _offsets_to_keys

    per_offset = torch.randn(2, 3, length, 2 * length - 1)
    per_key = torch.randn(2, 3, length, length)
    keys, offsets = _offsets_to_keys(per_offset), _keys_to_offsets(per_key)
    assert keys.shape == per_key.shape and offsets.shape == per_offset.shape
    for i in range(length):
        for j in range(length):  # key j sits at offset j - i, column j - i + length - 1
            assert torch.equal(keys[..., i, j], per_offset[..., i, j - i + length - 1])
        for m in range(2 * length - 1):
            j = i + m - (length - 1)
            expected = per_key[..., i, j] if 0 <= j < length else torch.zeros(2, 3)
            assert torch.equal(offsets[..., i, m], expected)


def test_codebooks_pick_the_nearest_vector_and_decode_back():
    torch.manual_seed(0)
    books = ResidualCodebooks(1, 16, 4)
    books.embed.normal_()
    x = torch.randn(2, 4, 9)
    codes = books.encode(x)
    assert codes.shape == (1, 2, 9)
    distances = torch.cdist(x.transpose(1, 2), books.embed[0].expand(2, -1, -1))
    torch.testing.assert_close(codes[0], distances.argmin(-1), rtol=0, atol=0)
    exact = books.embed[0][codes[0]].transpose(1, 2)
    torch.testing.assert_close(books.decode(codes), exact, rtol=0, atol=0)
    assert torch.equal(books.encode(exact), codes)


# --------------------------------------------------------------------------- decode on small random models


def _small_config(version: str) -> SoVITSConfig:
    return SoVITSConfig(
        version=version,
        n_symbols=12,
        spec_channels=1025,
        sampling_rate=32000,
        inter_channels=8,
        hidden_channels=16,
        filter_channels=16,
        n_heads=2,
        n_layers=2,
        kernel_size=3,
        resblock_kernel_sizes=(3, 5),
        resblock_dilation_sizes=((1, 3), (1, 3)),
        upsample_rates=(4, 2),
        upsample_initial_channel=16,
        upsample_kernel_sizes=(8, 4),
        # MRTE adds the global embedding to 512 channels: v1/v2 need 512, Pro projects 1024 down.
        gin_channels=1024 if "Pro" in version else 512,
        codebook_size=32,
    )


def _small_model(version: str) -> SoVITSSynthesizer:
    torch.manual_seed(1)
    model = SoVITSSynthesizer(_small_config(version)).eval()
    model.quantizer.embed.normal_()
    return model


def _inputs(n_codes: int = 7, n_phones: int = 5, frames: int = 20):
    gen = torch.Generator().manual_seed(2)
    codes = torch.randint(0, 32, (1, 1, n_codes), generator=gen)
    phones = torch.randint(0, 12, (1, n_phones), generator=gen)
    spec = torch.rand(1, 1025, frames, generator=gen)
    return codes, phones, spec


@pytest.mark.parametrize(
    ("speed", "frames"), [(1.0, 14), (1.25, int(14 / 1.25) + 1), (0.8, int(14 / 0.8) + 1)]
)
def test_decode_length_follows_codes_and_speed(speed, frames):
    model = _small_model("v2")
    codes, phones, spec = _inputs(n_codes=7)
    audio = model.decode(codes, phones, [spec], speed=speed, noise_scale=0)
    assert audio.shape == (1, 1, frames * 8)
    assert audio.abs().max() <= 1
    if speed == 1.0:
        assert audio.shape[-1] == 7 * model.config.samples_per_code


def test_noise_scale_zero_is_deterministic_and_noise_is_seeded():
    model = _small_model("v2")
    codes, phones, spec = _inputs()
    quiet = model.decode(codes, phones, [spec], noise_scale=0)
    assert torch.equal(quiet, model.decode(codes, phones, [spec], noise_scale=0))
    noisy_a = model.decode(codes, phones, [spec], generator=torch.Generator().manual_seed(5))
    noisy_b = model.decode(codes, phones, [spec], generator=torch.Generator().manual_seed(5))
    assert torch.equal(noisy_a, noisy_b)
    assert not torch.allclose(noisy_a, quiet)


def test_several_references_are_averaged():
    model = _small_model("v2Pro")
    _, _, spec_a = _inputs(frames=20)
    spec_b = torch.rand(1, 1025, 13, generator=torch.Generator().manual_seed(9))
    sv_a, sv_b = torch.randn(1, 20480), torch.randn(1, 20480)
    both = model.global_embedding([spec_a, spec_b], [sv_a, sv_b])
    single = (model.global_embedding([spec_a], [sv_a]) + model.global_embedding([spec_b], [sv_b])) / 2
    torch.testing.assert_close(both, single)
    assert both.shape == (1, 1024, 1)


def test_pro_models_need_one_speaker_embedding_per_reference():
    model = _small_model("v2ProPlus")
    codes, phones, spec = _inputs()
    with pytest.raises(ValueError, match="speaker embedding"):
        model.decode(codes, phones, [spec], noise_scale=0)
    with pytest.raises(ValueError, match="speaker embedding"):
        model.decode(codes, phones, [spec, spec], sv_embs=[torch.randn(1, 20480)], noise_scale=0)
    assert model.decode(codes, phones, [spec], sv_embs=[torch.randn(1, 20480)], noise_scale=0).shape[-1] > 0


@pytest.mark.parametrize(("version", "reads_high_bins"), [("v1", True), ("v2", False)])
def test_only_v1_reads_spectrogram_bins_above_704(version, reads_high_bins):
    model = _small_model(version)
    _, _, spec = _inputs()
    changed = spec.clone()
    changed[:, 704:] += 1.0
    same = torch.equal(model.global_embedding([spec]), model.global_embedding([changed]))
    assert same != reads_high_bins


def test_encode_prompt_halves_the_frame_rate():
    model = _small_model("v2")
    codes = model.encode_prompt(torch.randn(2, 768, 11))
    assert codes.shape == (2, 1, 5)
    assert codes.dtype == torch.int64 and 0 <= int(codes.min()) and int(codes.max()) < 32

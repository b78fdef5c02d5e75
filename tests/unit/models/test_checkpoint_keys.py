"""The SoVITS key maps read both ways: our state -> upstream's (``to_upstream_state``,
``to_upstream_v3_state``) -> ours again gives the same keys and tensors, and our models written out
hold exactly the keys and shapes of upstream's own files (the corpus layouts)."""

from __future__ import annotations

import json

import pytest
import torch

from app.engine.models.dit import DiTConfig
from app.engine.models.keymap import KeyMap, Rename
from app.engine.models.sovits import (
    SOVITS_KEYS,
    UNUSED_CHECKPOINT_PREFIXES,
    SoVITSConfig,
    SoVITSSynthesizer,
    convert_upstream_state,
    to_upstream_state,
)
from app.engine.models.sovits_v3 import (
    MEL_BINS,
    UPSTREAM_MODULE_ORDER,
    V3_KEYS,
    SoVITSV3,
    SoVITSV3Config,
    convert_v3_state,
    to_upstream_v3_state,
    upstream_only_layers,
)
from app.engine.models.sovits_v3 import UNUSED_CHECKPOINT_PREFIXES as V3_UNUSED_PREFIXES
from tests.conftest import conformance_dir


def _randomized(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """The model's state with every floating tensor drawn at random (nothing left at a default)."""
    generator = torch.Generator().manual_seed(seed)
    return {
        key: torch.randn(t.shape, generator=generator) if t.is_floating_point() else t
        for key, t in model.state_dict().items()
    }


def _small_sovits(version: str) -> SoVITSSynthesizer:
    return SoVITSSynthesizer(
        SoVITSConfig(
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
            gin_channels=1024 if "Pro" in version else 512,
            n_codebooks=2,  # more than one level: each becomes its own upstream _codebook
            codebook_size=32,
        )
    )


def _small_v4() -> SoVITSV3:
    return SoVITSV3(
        SoVITSV3Config(
            version="v4",
            n_symbols=12,
            hidden_channels=16,
            filter_channels=16,
            n_heads=2,
            n_layers=2,
            kernel_size=3,
            inter_channels=16,
            gin_channels=512,
            codebook_size=32,
            feature_channels=32,
            wns1_layers=2,
            dit=DiTConfig(dim=32, depth=2, heads=2, mel_dim=MEL_BINS, text_dim=32),
        )
    )


def _assert_same_state(back: dict[str, torch.Tensor], ours: dict[str, torch.Tensor]) -> None:
    assert set(back) == set(ours)
    for key, value in ours.items():
        # Weight-normed layers come back through g * v / ||v||: equal up to float32 rounding.
        torch.testing.assert_close(back[key], value, rtol=1e-6, atol=1e-6, msg=key)


@pytest.mark.parametrize("version", ["v2", "v2ProPlus"])
def test_sovits_state_goes_to_upstream_and_back(version):
    ours = _randomized(_small_sovits(version), seed=3)
    upstream = to_upstream_state(ours)
    # Upstream's names: weight-normed layers split, the flow's couplings at even entries, codebooks per level.
    assert "dec.ups.0.weight_g" in upstream and "dec.ups.0.weight_v" in upstream
    assert "flow.flows.2.enc.cond_layer.weight_v" in upstream
    assert "ref_enc.slf_attn.w_qs.weight" in upstream
    assert {"quantizer.vq.layers.0._codebook.embed", "quantizer.vq.layers.1._codebook.embed"} <= set(upstream)
    assert not any(key.startswith(("flow.couplings.", "quantizer.embed")) for key in upstream)

    back = convert_upstream_state(upstream)
    # Upstream's codebook statistics pass through the conversion; loading ignores them.
    back = {k: v for k, v in back.items() if not k.startswith(UNUSED_CHECKPOINT_PREFIXES)}
    _assert_same_state(back, ours)
    model = _small_sovits(version)
    model.load_state_dict(back, strict=True)


def test_v4_state_goes_to_upstream_and_back():
    model = _small_v4()
    ours = _randomized(model, seed=4)
    extra = {
        f"{name}.{key}": value
        for name, layer in upstream_only_layers(model.config).items()
        for key, value in layer.state_dict().items()
    }
    upstream = to_upstream_v3_state({**ours, **extra})
    assert "cfm.estimator.transformer_blocks.1.attn.to_out.0.weight" in upstream
    assert "cfm.estimator.rotary_embed.inv_freq" in upstream
    assert "wns1.enc.in_layers.1.weight_g" in upstream
    assert {"enc_p.proj.weight", "linear_mel.bias"} <= set(upstream)
    # In upstream's module order, each module's keys together.
    modules = [key.partition(".")[0] for key in upstream]
    assert modules == sorted(modules, key=UPSTREAM_MODULE_ORDER.index)

    back = convert_v3_state(upstream)
    back = {k: v for k, v in back.items() if not k.startswith(V3_UNUSED_PREFIXES)}
    _assert_same_state(back, ours)
    model.load_state_dict(back, strict=True)


# --------------------------------------------------------------------------- against upstream's layouts


def _layout(name: str) -> dict:
    path = conformance_dir() / "layouts" / f"{name}.json"
    if not path.exists():
        pytest.skip(f"layout {name} not found (conformance corpus missing)")
    return json.loads(path.read_text(encoding="utf-8"))


def _shapes(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {key: tuple(t.shape) for key, t in state.items()}


@pytest.mark.parametrize(
    "name", [f"sovits_{v}_{size}" for v in ("v1", "v2", "v2Pro", "v2ProPlus") for size in ("tiny", "full")]
)
def test_a_sovits_model_written_out_has_exactly_the_official_keys_and_shapes(name):
    """Our model built from an official file, written back, holds that file's keys and shapes (less
    the training-only posterior encoder, which we never build)."""
    layout = _layout(name)
    official = {key: tuple(shape) for key, shape, _ in layout["tensors"] if not key.startswith("enc_q.")}
    state = {key: torch.empty(shape, device="meta") for key, shape in official.items()}
    header = (layout.get("header") or "PK").encode()
    with torch.device("meta"):
        model = SoVITSSynthesizer.from_state_dict(state, layout["config"], header)
    assert _shapes(to_upstream_state(model.state_dict())) == official


@pytest.mark.parametrize("version", ["v3", "v4"])
def test_a_v3_v4_model_written_out_has_exactly_the_official_keys_shapes_and_order(version):
    layout = _layout(f"sovits_{version}_base_full")
    official = {key: tuple(shape) for key, shape, _ in layout["tensors"]}
    state = {key: torch.empty(shape, device="meta") for key, shape in official.items()}
    with torch.device("meta"):
        model = SoVITSV3.from_state_dict(state, layout["config"], version)
        extra = {
            f"{name}.{key}": value
            for name, layer in upstream_only_layers(model.config).items()
            for key, value in layer.state_dict().items()
        }
    written = _shapes(to_upstream_v3_state({**model.state_dict(), **extra}))
    assert written == official
    assert _module_order(written) == _module_order(official)


def _module_order(keys) -> list[str]:
    return list(dict.fromkeys(key.partition(".")[0] for key in keys))


# --------------------------------------------------------------------------- the tables themselves


def test_renames_map_indices_with_their_stride_and_leave_other_keys_alone():
    flows = Rename("flow.flows.{i}.", "flow.couplings.{i}.", upstream_stride=2)
    assert flows.to_ours("flow.flows.6.post.weight") == "flow.couplings.3.post.weight"
    assert flows.to_upstream("flow.couplings.3.post.weight") == "flow.flows.6.post.weight"
    assert flows.to_ours("flow.flows.3.post.weight") is None  # a flip has no counterpart of ours
    assert SOVITS_KEYS.to_ours("flow.flows.3.post.weight") == "flow.flows.3.post.weight"
    assert SOVITS_KEYS.to_ours("enc_p.text_embedding.weight") == "enc_p.text_embedding.weight"
    with pytest.raises(ValueError, match="placeholders"):
        Rename("a.{i}.", "b.")


def test_every_rename_of_a_table_reads_back_to_itself():
    for table in (SOVITS_KEYS, V3_KEYS):
        for rename in table.renames:
            ours = rename.ours.replace("{i}", "1") + "weight"
            upstream = table.to_upstream(ours)
            assert upstream == rename.upstream.replace("{i}", str(rename.upstream_stride)) + "weight"
            assert table.to_ours(upstream) == ours


def test_weight_normed_layers_match_whole_layer_names_only():
    keys = KeyMap(renames=(), weight_normed=("dec.ups.{i}",))
    assert keys.is_weight_normed("dec.ups.12.weight")
    assert not keys.is_weight_normed("dec.ups.12.bias")
    assert not keys.is_weight_normed("dec.ups.1.0.weight")
    assert not keys.is_weight_normed("x.dec.ups.1.weight")

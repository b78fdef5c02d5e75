"""T2SModel: checkpoint mapping, KV cache vs. full recompute, padding, stop rules, cancellation."""

from __future__ import annotations

import json

import pytest
import torch

from app.engine.checkpoints import CheckpointError, load_checkpoint
from app.engine.models.t2s import (
    STEPS_WITHOUT_EOS,
    DecodeCancelled,
    SinePositions,
    T2SConfig,
    T2SModel,
    prompt_attention,
    sine_table,
)
from app.engine.models.t2s_decode import kept_tokens
from tests.conftest import conformance_dir

SMALL = T2SConfig(phone_vocab_size=40, vocab_size=65, dim=32, num_heads=4, num_layers=2, eos_id=64, max_sec=2)


@pytest.fixture(scope="module")
def model() -> T2SModel:
    """Random weights, except that EOS always scores 0: it only wins if every other logit is
    negative, so rows run into the early stop and the tests can count tokens."""
    torch.manual_seed(0)
    m = T2SModel(SMALL).eval()
    with torch.no_grad():
        m.to_logits.weight[SMALL.eos_id] = 0
    return m


def make_row(length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, SMALL.phone_vocab_size, (length,), generator=g), torch.randn(
        1024, length, generator=g
    )


def rows(*lengths: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    made = [make_row(n, seed) for seed, n in enumerate(lengths)]
    return [p for p, _ in made], [b for _, b in made]


PROMPT = torch.tensor([3, 9, 27, 17, 51, 25, 11])


def greedy(model: T2SModel, phones, berts, prompt, **kwargs) -> list[torch.Tensor]:
    kwargs = {"top_k": 1, "early_stop_num": 30, **kwargs}
    return model.generate(phones, berts, prompt, **kwargs)


# ---------------------------------------------------------------------------------------- loading


def _layout(name: str) -> dict:
    return json.loads((conformance_dir() / "layouts" / f"{name}.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("layout", ["s1_v1_tiny", "s1_v2_tiny", "s1_v1_full", "s1_v2_full"])
def test_expected_keys_and_shapes_are_exactly_the_official_layouts(layout):
    meta = _layout(layout)
    config = T2SConfig.from_checkpoint_config(meta["config"])
    with torch.device("meta"):  # shapes only: no memory for the full-size models
        expected = T2SModel(config).upstream_shapes()
    assert expected == {name: tuple(shape) for name, shape, _ in meta["tensors"]}
    assert config.early_stop_num == 50 * meta["config"]["data"]["max_sec"]


@pytest.mark.parametrize("name", ["s1_v1_tiny", "s1_v2_tiny"])
def test_from_checkpoint_loads_the_official_format(corpus_weights, name):
    path = corpus_weights(name)
    model = T2SModel.from_checkpoint(path)
    assert not model.training
    assert model.to_logits.weight.dtype == torch.float32
    stored = load_checkpoint(path)["weight"]
    # fp16 file values arrive unchanged (fp16 → fp32 is exact), under our names.
    assert torch.equal(
        model.layers[1].qkv.weight, stored["model.h.layers.1.self_attn.in_proj_weight"].float()
    )
    assert torch.equal(model.phone_positions.alpha, stored["model.ar_text_position.alpha"].float())
    half = T2SModel.from_checkpoint(path, dtype=torch.bfloat16)
    assert half.to_logits.weight.dtype == torch.bfloat16


def _rewrite(corpus_weights, tmp_path, change) -> str:
    checkpoint = load_checkpoint(corpus_weights("s1_v2_tiny"))
    change(checkpoint["weight"])
    target = tmp_path / "changed.ckpt"
    torch.save(checkpoint, target)
    return str(target)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda w: w.pop("model.ar_predict_layer.weight"), "missing keys: model.ar_predict_layer.weight"),
        (lambda w: w.update({"model.extra": torch.zeros(1)}), "unexpected keys: model.extra"),
        (lambda w: w.update({"model.bert_proj.bias": torch.zeros(7)}), "wrong shapes: model.bert_proj.bias"),
    ],
)
def test_from_checkpoint_is_strict(corpus_weights, tmp_path, change, message):
    with pytest.raises(CheckpointError, match=message):
        T2SModel.from_checkpoint(_rewrite(corpus_weights, tmp_path, change))


def test_config_rejects_eos_that_is_not_the_last_id():
    config = _layout("s1_v2_tiny")["config"]
    config["model"]["EOS"] = 3
    with pytest.raises(ValueError, match="EOS"):
        T2SConfig.from_checkpoint_config(config)


# ---------------------------------------------------------------------------------------- pieces


def test_sine_table_values_and_on_demand_extension():
    table = sine_table(5, 6)
    assert table[0].tolist() == [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    assert table[3, 0].item() == pytest.approx(torch.sin(torch.tensor(3.0)).item())
    assert table[3, 1].item() == pytest.approx(torch.cos(torch.tensor(3.0)).item())
    positions = SinePositions(6)
    far = positions(torch.zeros(1, 2, 6), start=4100)
    assert torch.allclose(far[0], sine_table(4102, 6)[4100:])


def test_prompt_attention_mask():
    mask = prompt_attention(torch.tensor([[False, True, True]]), prompt_len=2)[0, 0]
    # columns: pad, phone, phone, code, code — True = may attend
    assert mask.tolist() == [
        [False, True, True, False, False],
        [False, True, True, False, False],
        [False, True, True, False, False],
        [False, True, True, True, False],
        [False, True, True, True, True],
    ]


@pytest.mark.parametrize(("idx", "expected"), [(0, [1, 2, 3, 4]), (2, [3, 4]), (4, [1, 2, 3, 4])])
def test_kept_tokens_follow_pred_minus_idx(idx, expected):
    assert kept_tokens(torch.tensor([1, 2, 3, 4]), idx).tolist() == expected


# ---------------------------------------------------------------------------------------- decoding


def test_cached_decode_equals_full_recompute(model):
    """Every step's logits equal a cache-free pass over the whole sequence so far."""
    (phones,), (bert,) = rows(9)
    seen: list[torch.Tensor] = []
    (tokens,) = greedy(model, [phones], [bert], PROMPT, on_logits=lambda r, s, logits: seen.append(logits[0]))
    with torch.inference_mode():
        text = model.embed_phones(phones, bert)[None]
        for step, cached in enumerate(seen[:12]):
            codes = torch.cat([PROMPT, tokens[:step]])[None]
            x = torch.cat([text, model.embed_semantic(codes, 0)], dim=1)
            full = model(x, prompt_attention(torch.ones(1, text.shape[1], dtype=torch.bool), codes.shape[1]))
            torch.testing.assert_close(cached, full[0], atol=1e-5, rtol=1e-5)


def test_left_padding_does_not_change_a_row(model):
    phones, berts = rows(5, 11, 8)
    parallel_logits: dict[int, torch.Tensor] = {}
    alone_logits: dict[int, torch.Tensor] = {}

    def keep(store):
        def hook(row_ids, step, logits):
            if step == 2:
                store.update({r: logits[i] for i, r in enumerate(row_ids)})

        return hook

    together = greedy(model, phones, berts, PROMPT, parallel=True, on_logits=keep(parallel_logits))
    alone = greedy(model, phones, berts, PROMPT, parallel=False, on_logits=keep(alone_logits))
    for r in range(3):
        torch.testing.assert_close(parallel_logits[r], alone_logits[r], atol=1e-5, rtol=1e-5)
    # Both hit the early stop (30 tokens) but trim it differently: see the next test.
    assert [len(t) for t in together] == [30, 30, 30]
    assert all(torch.equal(t[1:], a[:-1]) for t, a in zip(together, alone, strict=True))


def test_early_stop_trims_like_upstream(model):
    """Upstream stops after early_stop_num + 1 drawn tokens; the parallel path drops the LAST one,
    the sequential path keeps the last early_stop_num (dropping the FIRST)."""
    (phones,), (bert,) = rows(7)
    (drawn,) = greedy(model, [phones], [bert], PROMPT, early_stop_num=6)  # first 6 tokens
    (parallel,) = greedy(model, [phones], [bert], PROMPT, early_stop_num=5, parallel=True)
    (sequential,) = greedy(model, [phones], [bert], PROMPT, early_stop_num=5, parallel=False)
    assert torch.equal(parallel, drawn[:5])
    assert torch.equal(sequential, drawn[1:6])


def test_prompt_free_keeps_the_whole_row(model):
    (phones,), (bert,) = rows(7)
    (tokens,) = greedy(model, [phones], [bert], None, early_stop_num=5, parallel=False)
    assert len(tokens) == 6  # idx 0 → pred[-0:] keeps every drawn token, nothing trimmed


def test_prompt_free_parallel_falls_back_with_upstreams_default_penalty(model):
    phones, berts = rows(7, 4)
    asked = greedy(model, phones, berts, None, parallel=True, repetition_penalty=1.0)
    fallback = greedy(model, phones, berts, None, parallel=False, repetition_penalty=1.35)
    assert all(torch.equal(a, f) for a, f in zip(asked, fallback, strict=True))


@pytest.fixture()
def eos_model() -> T2SModel:
    """A model whose final hidden state is a constant vector that favours EOS above all."""
    torch.manual_seed(1)
    m = T2SModel(SMALL).eval()
    with torch.no_grad():
        last = m.layers[-1].ffn_norm
        last.weight.zero_()
        last.bias.copy_(torch.randn(SMALL.dim))
        m.to_logits.weight[SMALL.eos_id] = 5 * last.bias
    return m


@pytest.mark.parametrize("parallel", [True, False])
def test_eos_is_blocked_for_the_first_steps_then_ends_the_row(eos_model, parallel):
    phones, berts = rows(6, 9)
    out = greedy(eos_model, phones, berts, PROMPT, parallel=parallel, repetition_penalty=1.0)
    for tokens in out:
        assert len(tokens) == STEPS_WITHOUT_EOS
        assert SMALL.eos_id not in tokens.tolist()


def test_sampling_is_reproducible_with_a_seeded_generator(model):
    phones, berts = rows(6, 9)

    def sample(seed: int) -> list[torch.Tensor]:
        return model.generate(
            phones, berts, PROMPT, top_k=20, temperature=1.3, early_stop_num=20,
            generator=torch.Generator().manual_seed(seed),
        )  # fmt: skip

    first, again, other = sample(5), sample(5), sample(6)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(first, other, strict=True))
    assert all(t.dtype == torch.int64 for t in first)


def test_should_stop_is_polled_every_step_and_cancels(model):
    (phones,), (bert,) = rows(6)
    polls = []
    steps = []

    def should_stop() -> bool:
        polls.append(1)
        return len(polls) > 3

    with pytest.raises(DecodeCancelled):
        greedy(
            model,
            [phones],
            [bert],
            PROMPT,
            should_stop=should_stop,
            on_logits=lambda r, s, lg: steps.append(s),
        )
    assert steps == [0, 1, 2]


def test_inputs_are_validated(model):
    phones, berts = rows(6, 4)
    with pytest.raises(ValueError, match="BERT"):
        model.generate(phones, [berts[1], berts[0]], PROMPT)
    with pytest.raises(ValueError, match="prompt has 3 rows"):
        model.generate(phones, berts, PROMPT.expand(3, -1))
    with pytest.raises(ValueError):
        model.generate([], [], PROMPT)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_dtype_comes_from_the_model(model, dtype):
    phones, berts = rows(6, 9)
    other = T2SModel(SMALL).eval()
    other.load_state_dict(model.state_dict())
    other.to(dtype)
    seen: list[torch.Tensor] = []
    out = greedy(other, phones, berts, PROMPT, early_stop_num=8, on_logits=lambda r, s, lg: seen.append(lg))
    assert seen[0].dtype == dtype
    assert [len(t) for t in out] == [8, 8]
    reference: list[torch.Tensor] = []
    greedy(model, phones, berts, PROMPT, early_stop_num=8, on_logits=lambda r, s, lg: reference.append(lg))
    tolerance = 1e-1 if dtype == torch.bfloat16 else 1e-5
    torch.testing.assert_close(seen[0].float(), reference[0], atol=tolerance, rtol=tolerance)

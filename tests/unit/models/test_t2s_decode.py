"""The shared decode loop (continuous batching): rows join and leave between steps, slots are reused,
per-row settings, cancellation mid-decode, slot exhaustion, and the central promise: a seeded request
gives exactly the tokens it gives alone, whatever runs beside it."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from app.engine.gpt_stage import GptStage
from app.engine.models.t2s import DecodeCancelled, T2SConfig, T2SModel
from app.engine.models.t2s_decode import DecodeBatch, DecodeRequest, bucket, decode_alone, new_group
from app.engine.sampling import (
    filtered_probs,
    filtered_probs_rows,
    keep_top_k,
    keep_top_k_rows,
    keep_top_p,
    keep_top_p_rows,
    penalize_repeats,
    penalize_seen,
)

CONFIG = T2SConfig(
    phone_vocab_size=40, vocab_size=65, dim=32, num_heads=4, num_layers=2, eos_id=64, max_sec=2
)
PROMPT = torch.tensor([3, 9, 27, 17, 51, 25, 11])


@pytest.fixture(scope="module")
def model() -> T2SModel:
    """Random weights with EOS made rare but possible, so rows end at different steps."""
    torch.manual_seed(0)
    m = T2SModel(CONFIG).eval()
    with torch.no_grad():
        m.to_logits.weight[CONFIG.eos_id] *= 3
    return m


def piece(length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, CONFIG.phone_vocab_size, (length,), generator=g), torch.randn(
        1024, length, generator=g
    )


def request(seed: int, lengths=(6, 9, 4), prompt=PROMPT, **settings) -> DecodeRequest:
    """A request whose generator is seeded with ``seed`` (fresh each call, so runs can be compared)."""
    made = [piece(n, seed * 10 + i) for i, n in enumerate(lengths)]
    settings = {"top_k": 20, "temperature": 1.2, "early_stop_num": 25, **settings}
    return DecodeRequest(
        [p for p, _ in made],
        [b for _, b in made],
        prompt,
        generator=torch.Generator().manual_seed(seed),
        **settings,
    )


# A mix of neighbours: every setting differs somewhere, sequential and prompt-free ones included.
NEIGHBOURS = [
    dict(seed=11, lengths=(5,), top_k=1),
    dict(seed=12, lengths=(8, 3), top_k=3, top_p=0.7, temperature=0.8),
    dict(seed=13, lengths=(7, 7, 2), parallel=False, repetition_penalty=1.0),
    dict(seed=14, lengths=(4,), prompt=None, parallel=False),
    dict(seed=15, lengths=(10, 6), top_k=0, top_p=0.9, temperature=1.5, repetition_penalty=2.0),
    dict(seed=16, lengths=(3, 5), early_stop_num=8),
    dict(seed=17, lengths=(12,), top_k=50, early_stop_num=-1),
]


def tokens_equal(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def run_together(
    model: T2SModel, requests: list[DecodeRequest], join_at: list[int], slots: int = 16, context: int = 1600, **options
):
    """Decode in one batch (``DecodeBatch(model, slots, context, **options)``); request i is added before
    step ``join_at[i]``. Returns tokens per request and the batch."""
    batch = DecodeBatch(model, slots, context, **options)
    groups = [new_group(model, r) for r in requests]
    step = 0
    while step <= max(join_at) or batch.busy:
        for group, at in zip(groups, join_at, strict=True):
            if at == step:
                batch.add(group)
        batch.step()
        step += 1
    return [g.tokens() for g in groups], batch


@pytest.mark.parametrize("top_k", [20, 1], ids=["sampled", "greedy"])
@pytest.mark.parametrize("parallel", [True, False])
def test_a_seeded_request_gives_the_same_tokens_alone_and_among_seven_others(model, top_k, parallel):
    alone = decode_alone(model, request(5, top_k=top_k, parallel=parallel))
    others = [request(**n) for n in NEIGHBOURS]
    # The request joins while the others are mid-decode; some neighbours join after it.
    together, batch = run_together(
        model, [*others, request(5, top_k=top_k, parallel=parallel)], join_at=[0, 0, 1, 2, 4, 6, 9, 3]
    )
    assert tokens_equal(together[-1], alone)
    for n, tokens in zip(NEIGHBOURS, together, strict=False):
        assert tokens_equal(tokens, decode_alone(model, request(**n))), n
    assert batch.rows_stepped / batch.steps > 2  # the rows really shared steps


def test_rows_join_between_steps_and_leave_at_once_freeing_their_slot(model):
    batch = DecodeBatch(model, 4, 256)
    short = new_group(model, request(1, lengths=(5,), early_stop_num=3))
    long = new_group(model, request(2, lengths=(6,), early_stop_num=20, top_k=1))
    batch.add(short)
    batch.step()  # short prefilled (its step 0)
    assert batch.live_rows() == 1
    batch.add(long)
    batch.step()  # short steps; long joins at the end of this step
    assert batch.live_rows() == 2
    while not short.finished:
        batch.step()
    assert batch.live_rows() == 1  # short left the step it ended
    assert len(short.tokens()[0]) == 3
    late = new_group(model, request(3, lengths=(4,), early_stop_num=5))
    batch.add(late)
    batch.step()
    assert batch.state.owner[0] is not None and batch.state.owner[0].owner is late  # slot 0 reused
    while batch.busy:
        batch.step()
    assert tokens_equal(late.tokens(), decode_alone(model, request(3, lengths=(4,), early_stop_num=5)))


def test_cancelling_mid_decode_frees_the_slots_within_a_step_and_spares_the_others(model):
    stop = threading.Event()
    batch = DecodeBatch(model, 8, 1600)
    doomed = new_group(model, request(1, should_stop=stop.is_set, early_stop_num=-1, top_k=50))
    other = new_group(model, request(2))
    batch.add(doomed)
    batch.add(other)
    for _ in range(4):
        batch.step()
    assert batch.live_rows() == 6
    stop.set()
    batch.step()
    assert doomed.finished and batch.live_rows() <= 3
    with pytest.raises(DecodeCancelled):
        doomed.tokens()
    while batch.busy:
        batch.step()
    assert tokens_equal(other.tokens(), decode_alone(model, request(2)))


def test_slot_exhaustion_makes_rows_wait_first_come_first_served(model):
    requests = [dict(seed=s, lengths=(5, 7)) for s in range(3)]
    together, batch = run_together(model, [request(**r) for r in requests], join_at=[0, 0, 0], slots=4)
    assert max(batch.rows_stepped / max(batch.steps, 1), 0) <= 4
    for r, tokens in zip(requests, together, strict=True):
        assert tokens_equal(tokens, decode_alone(model, request(**r)))


def test_a_request_larger_than_the_slots_does_not_fit(model):
    batch = DecodeBatch(model, 2, 256)
    assert not batch.fits(new_group(model, request(1, lengths=(3, 3, 3))))
    assert batch.fits(new_group(model, request(1, lengths=(3, 3, 3), parallel=False)))  # one row at a time
    assert not DecodeBatch(model, 4, 40).fits(new_group(model, request(1)))  # too few positions
    with pytest.raises(ValueError):
        batch.add(new_group(model, request(1, lengths=(3, 3, 3))))


def test_step_shapes_come_from_a_few_buckets():
    assert [bucket(n, 64) for n in (1, 2, 3, 4, 5, 9, 17, 33, 64)] == [1, 2, 4, 4, 8, 16, 32, 64, 64]
    assert bucket(20, 16) == 16


def test_half_precision_weights_decode_with_float32_sampling(model):
    """The fp16/bf16 path (CUDA --half) on CPU: the slot cache takes the model's dtype and sampling
    runs in float32, so a half model decodes to valid tokens."""
    half = T2SModel(CONFIG).eval()
    half.load_state_dict(model.state_dict())
    half = half.to(torch.bfloat16)
    batch = DecodeBatch(half, 4, 256)
    assert batch.keys.dtype == torch.bfloat16
    tokens = decode_alone(half, request(4, top_k=1))
    assert all(t.dtype == torch.int64 and int(t.max()) < CONFIG.vocab_size for t in tokens)


# ------------------------------------------------------------------------------------ per-row sampling


def test_per_row_sampling_equals_the_scalar_controls_row_by_row():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 65, generator=g) * 3
    history = torch.randint(0, 65, (5, 12), generator=g)
    seen = torch.zeros(5, 65, dtype=torch.bool).scatter(1, history, True)
    top_k = torch.tensor([1, 5, 0, 65, 100])
    top_p = torch.tensor([1.0, 0.5, 0.9, 0.99, 0.2])
    temperature = torch.tensor([1.0, 0.7, 1.3, 1e-9, 2.0])
    penalty = torch.tensor([1.35, 1.0, 2.0, 1.35, 0.8])
    penalized = penalize_seen(logits, seen, penalty)
    probs = filtered_probs_rows(penalized, top_k=top_k, top_p=top_p, temperature=temperature)
    for r in range(5):
        one = penalize_repeats(logits[r : r + 1], history[r : r + 1], float(penalty[r]))
        assert torch.equal(penalized[r : r + 1], one)
        assert torch.equal(keep_top_p_rows(one, top_p[r : r + 1]), keep_top_p(one, float(top_p[r])))
        assert torch.equal(keep_top_k_rows(one, top_k[r : r + 1]), keep_top_k(one, int(top_k[r])))
        expected = filtered_probs(
            one, top_k=int(top_k[r]), top_p=float(top_p[r]), temperature=float(temperature[r])
        )
        torch.testing.assert_close(probs[r : r + 1], expected, rtol=0, atol=0)


# ------------------------------------------------------------------------------------ the GPT stage


def test_the_gpt_stage_decodes_concurrent_requests_together_and_exactly(model):
    stage = GptStage(slots=8, context=256)
    specs = [dict(seed=s, lengths=(4 + s, 6)) for s in range(6)]
    results: dict[int, list[torch.Tensor]] = {}
    start = threading.Barrier(len(specs))

    def client(i: int) -> None:
        start.wait()
        results[i] = stage.decode(model, request(**specs[i]))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(specs))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert stage.stats().mean_rows > 2
    finally:
        stage.close()
    for i, spec in enumerate(specs):
        assert tokens_equal(results[i], decode_alone(model, request(**spec)))


def test_the_gpt_stage_decodes_an_oversized_request_in_a_batch_of_its_own(model):
    stage = GptStage(slots=2, context=64)
    try:
        big = request(7, lengths=(5, 6, 7))  # 3 rows > 2 slots, and more positions than 64
        assert tokens_equal(stage.decode(model, big), decode_alone(model, request(7, lengths=(5, 6, 7))))
        assert stage.decode(model, request(8, lengths=(3,), early_stop_num=5))  # the shared batch still works
    finally:
        stage.close()


def test_the_gpt_stage_passes_cancellation_back_to_the_caller(model):
    stage = GptStage(slots=4, context=256)
    try:
        with pytest.raises(DecodeCancelled):
            stage.decode(model, request(1, should_stop=lambda: True))
    finally:
        stage.close()


@pytest.mark.parametrize(("free_bytes", "kept"), [(10**15, True), (0, False)])
def test_idle_slots_of_another_model_are_freed_only_under_memory_pressure(
    model, monkeypatch, free_bytes, kept
):
    import app.engine.gpt_stage as gpt_stage

    monkeypatch.setattr(gpt_stage, "available_bytes", lambda device: free_bytes)
    other = T2SModel(CONFIG).eval()
    stage = GptStage(slots=2, context=64)
    try:
        stage.decode(model, request(1, lengths=(3,), early_stop_num=4))
        stage.decode(other, request(2, lengths=(3,), early_stop_num=4))
        assert (model in stage._batches) == kept
        assert other in stage._batches
    finally:
        stage.close()


def test_the_slots_of_a_dropped_model_go_with_it():
    import gc

    stage = GptStage(slots=2, context=64)
    try:
        dropped = T2SModel(CONFIG).eval()
        stage.decode(dropped, request(1, lengths=(3,), early_stop_num=4))
        assert len(stage._batches) == 1
        del dropped
        deadline = time.monotonic() + 5  # the GPT thread may still be finishing the step that answered
        while len(stage._batches) and time.monotonic() < deadline:
            gc.collect()
            time.sleep(0.01)
        assert len(stage._batches) == 0  # the batch held its model weakly
    finally:
        stage.close()


def _hooked(seed: int, streams: dict[int, list], ends: dict[int, int], **settings) -> DecodeRequest:
    def on_token(row, token, ended):
        assert row not in ends, "a token after the row ended"
        if token is not None:
            streams.setdefault(row, []).append(token)
        if ended:
            ends[row] = token is None  # True: the EOS ended it (and was dropped)

    return request(seed, on_token=on_token, **settings)


@pytest.mark.parametrize("parallel", [False, True])
def test_every_drawn_token_is_reported_as_it_comes_beside_neighbours_too(model, parallel):
    """Streaming reads tokens through ``on_token``: per row, every token upstream's streaming decode
    yields (all kept tokens; the ending EOS reported as None), the same alone and among others."""
    streams, ends = {}, {}
    kept = decode_alone(model, _hooked(7, streams, ends, parallel=parallel, early_stop_num=15))
    assert sorted(ends) == [0, 1, 2]
    for row, tokens in enumerate(kept):
        if ends[row]:  # EOS: the stream is what the request keeps
            assert streams[row] == tokens.tolist()
        elif not parallel:  # early stop: upstream's batch path drops the first token (pred[-idx:])
            assert streams[row][1:] == tokens.tolist()
    beside, beside_ends = {}, {}
    run_together(
        model,
        [request(**NEIGHBOURS[1]), _hooked(7, beside, beside_ends, parallel=parallel, early_stop_num=15)],
        join_at=[0, 2],
    )
    assert beside == streams and beside_ends == ends

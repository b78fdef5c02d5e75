"""The decode step as a capturable function (t2s_step): the graph path's logic, run on CPU.

On CPU a ``DecodeBatch(graphs=True)`` runs the same bookkeeping as with CUDA graphs (one captured step
per (rows, width) key, inputs written into persistent tensors, logits in a static buffer), with a
recorded stand-in for the graph that keeps reading the tensors it was bound to at capture. So these
tests fail where the graph path would compute from stale inputs, capture too often, pick other shape
buckets, or change a token; only the CUDA graph capture and replay themselves are not run here."""

from __future__ import annotations

import gc
import logging
import weakref

import pytest
import torch

import app.engine.models.t2s_step as t2s_step
from app.engine.models.t2s import T2SModel
from app.engine.models.t2s_decode import DecodeBatch, decode_alone, new_group
from app.engine.models.t2s_step import RecordedStep, eager_width, graph_width
from tests.unit.models.test_t2s_decode import CONFIG, NEIGHBOURS, request, run_together, tokens_equal


@pytest.fixture(scope="module")
def model() -> T2SModel:
    torch.manual_seed(0)
    m = T2SModel(CONFIG).eval()
    with torch.no_grad():
        m.to_logits.weight[CONFIG.eos_id] *= 3
    return m


def decode(model, specs, join_at, *, graphs, slots=16, context=1600):
    """Decode requests made from ``specs`` in one batch (request i added before step ``join_at[i]``);
    returns their tokens, every logits row each request's hook saw, and the batch."""
    seen: list[list[torch.Tensor]] = [[] for _ in specs]
    requests = [
        request(**spec, on_logits=lambda rows, step, logits, i=i: seen[i].append(logits))
        for i, spec in enumerate(specs)
    ]
    tokens, batch = run_together(model, requests, join_at, slots, context, graphs=graphs)
    return tokens, seen, batch


def test_a_cpu_batch_decodes_eagerly_unless_asked(model):
    assert DecodeBatch(model, 2, 64).runner.graphs is False
    assert DecodeBatch(model, 2, 64, graphs=True).runner.graphs is True


def test_captured_steps_give_exactly_the_eager_logits_and_tokens_as_rows_join_and_leave(model):
    specs = [dict(seed=5), *NEIGHBOURS]
    join_at = [3, 0, 0, 1, 2, 4, 6, 9]
    eager, eager_logits, _ = decode(model, specs, join_at, graphs=False)
    graphs, graph_logits, batch = decode(model, specs, join_at, graphs=True)
    for spec, a, b in zip(specs, eager, graphs, strict=True):
        assert tokens_equal(a, b), spec
        assert tokens_equal(b, decode_alone(model, request(**spec))), spec
    for a, b in zip(eager_logits, graph_logits, strict=True):
        assert len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    runner = batch.runner
    assert runner.captures == len(runner.captured) >= 3  # several row buckets...
    assert batch.steps > 4 * runner.captures  # ...each captured once and replayed after


def test_keys_follow_the_row_buckets_as_rows_join_and_leave(model):
    """Rows get the lowest free slots; a step covers slots [0, next power of two above the highest)."""
    batch = DecodeBatch(model, 8, 256, graphs=True)
    # EOS cannot come in a row's first 11 steps, so with an early stop of at most 10 every row ends
    # exactly then: A-D decode 10 steps, E 2.
    rows = {name: new_group(model, request(seed, lengths=(5,), early_stop_num=stop)) for name, seed, stop in [("A", 1, 10), ("B", 2, 10), ("C", 3, 10), ("D", 4, 10), ("E", 5, 2)]}  # fmt: skip
    joins = {0: "A", 1: "B", 2: "C", 3: "DE"}
    keys = []
    for step in range(14):
        for name in joins.get(step, ""):
            batch.add(rows[name])
        batch.step()
        keys.append(batch.runner.last_key)
    assert not batch.busy
    assert [k[0] if k else None for k in keys] == [None, 1, 2, 4, 8, 8, *[4] * 8]
    assert {k[1] for k in keys if k} == {64}
    assert sorted(batch.runner.captured) == [(1, 64), (2, 64), (4, 64), (8, 64)]
    assert batch.runner.captures == 4


def test_each_key_is_captured_once_and_every_step_replays(model, monkeypatch):
    made, replays = [], []

    class Counted(RecordedStep):
        def __init__(self, step):
            made.append(self)
            super().__init__(step)

        def replay(self):
            replays.append(self)
            super().replay()

    monkeypatch.setattr(t2s_step, "RecordedStep", Counted)
    tokens, _, batch = decode(model, [dict(seed=5), dict(seed=6, lengths=(3,))], [0, 4], graphs=True)
    assert len(made) == batch.runner.captures == len(set(map(id, made)))
    assert len(replays) == batch.steps > len(made)
    outputs = {key: step.output for key, step in batch.runner.captured.items()}
    assert all(step.output is outputs[key] for key, step in batch.runner.captured.items())  # static
    assert tokens_equal(tokens[1], decode_alone(model, request(6, lengths=(3,))))


def test_a_reused_slot_gives_the_tokens_of_the_request_alone(model):
    batch = DecodeBatch(model, 4, 256, graphs=True)
    short = new_group(model, request(1, lengths=(5,), early_stop_num=3))
    long = new_group(model, request(2, lengths=(6,), early_stop_num=20, top_k=1))
    batch.add(short)
    batch.step()
    batch.add(long)
    while not short.finished:
        batch.step()
    captures = batch.runner.captures
    late = new_group(model, request(3, lengths=(4,), early_stop_num=12))
    batch.add(late)
    batch.step()
    assert batch.state.owner[0] is not None and batch.state.owner[0].owner is late  # slot 0 reused
    while batch.busy:
        batch.step()
    assert batch.runner.captures == captures  # the same (2, 64) step served the new row
    assert tokens_equal(late.tokens(), decode_alone(model, request(3, lengths=(4,), early_stop_num=12)))
    assert tokens_equal(long.tokens(), decode_alone(model, request(2, lengths=(6,), early_stop_num=20, top_k=1)))  # fmt: skip


def test_graph_widths_come_from_a_half_octave_grid():
    longest = [1, 64, 65, 128, 129, 192, 193, 257, 385, 513, 769, 1025, 1537, 2000]
    assert [graph_width(n, 4096) for n in longest] == [
        64, 64, 128, 128, 192, 192, 256, 384, 512, 768, 1024, 1536, 2048, 2048,
    ]  # fmt: skip
    assert [eager_width(n, 4096) for n in (1, 64, 65, 257, 385)] == [64, 64, 128, 320, 448]
    assert graph_width(1000, 700) == eager_width(1000, 700) == 700  # never beyond the slots
    assert len({graph_width(n, 2048) for n in range(1, 2049)}) == 10


def test_a_wider_graph_width_changes_no_token(model):
    """A row of 307 positions and 10 steps: eager steps read 320 keys, captured ones 384 (the keys
    beyond the row are masked: they add exact zeros)."""
    spec = dict(seed=8, lengths=(300,), early_stop_num=10, top_k=1)
    eager, eager_logits, eager_batch = decode(model, [spec], [0], graphs=False, context=512)
    graphs, graph_logits, batch = decode(model, [spec], [0], graphs=True, context=512)
    assert eager_batch.runner.last_key == (1, 320) and list(batch.runner.captured) == [(1, 384)]
    assert len(graph_logits[0]) == 11  # the prefill's logits and 10 steps'
    assert tokens_equal(eager[0], graphs[0])
    assert all(torch.equal(a, b) for a, b in zip(eager_logits[0], graph_logits[0], strict=True))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_steps_replay_exactly_and_stay_close_to_float32(model, dtype):
    half = T2SModel(CONFIG).eval()
    half.load_state_dict(model.state_dict())
    half = half.to(dtype)
    spec = dict(seed=4, top_k=1, early_stop_num=10)
    full, full_logits, _ = decode(model, [spec], [0], graphs=False)
    eager, eager_logits, _ = decode(half, [spec], [0], graphs=False)
    graphs, graph_logits, batch = decode(half, [spec], [0], graphs=True)
    assert batch.runner._bias.dtype == dtype and batch.runner.captures == 1
    assert tokens_equal(eager[0], graphs[0])
    assert all(torch.equal(a, b) for a, b in zip(eager_logits[0], graph_logits[0], strict=True))
    assert tokens_equal(graphs[0], full[0])  # greedy: the same tokens as float32 for these steps
    for a, b in zip(full_logits[0], graph_logits[0], strict=True):
        torch.testing.assert_close(b.float(), a, atol=0.05, rtol=0.05)


def test_captured_steps_do_not_keep_the_model_alive():
    dropped = T2SModel(CONFIG).eval()
    batch = DecodeBatch(dropped, 2, 64, graphs=True)
    group = new_group(dropped, request(1, lengths=(3,), early_stop_num=4))
    batch.add(group)
    while batch.busy:
        batch.step()
    assert batch.runner.captures == 1
    gone = weakref.ref(dropped)
    del dropped, group
    gc.collect()
    assert gone() is None


def test_a_failed_capture_falls_back_to_eager_steps(model, monkeypatch, caplog):
    def refuse(step):
        raise RuntimeError("capture refused")

    monkeypatch.setattr(t2s_step, "RecordedStep", refuse)
    with caplog.at_level(logging.WARNING, logger=t2s_step.__name__):
        tokens, _, batch = decode(model, [dict(seed=5)], [0], graphs=True)
    assert batch.runner.graphs is False and batch.runner.captures == 0
    assert "eagerly" in caplog.text
    assert tokens_equal(tokens[0], decode_alone(model, request(5)))


@pytest.mark.parametrize(("cuda_graphs", "passed"), [(True, None), (False, False)])
def test_the_gpt_stage_passes_its_graphs_setting_to_every_batch(model, monkeypatch, cuda_graphs, passed):
    """None: CUDA graphs where the model is on CUDA (GSV_CUDA_GRAPHS=true); False: always eager."""
    import app.engine.gpt_stage as gpt_stage

    made = []

    class Recorded(DecodeBatch):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(args[3] if len(args) > 3 else kwargs.get("graphs", "default"))

    monkeypatch.setattr(gpt_stage, "DecodeBatch", Recorded)
    stage = gpt_stage.GptStage(slots=2, context=64, cuda_graphs=cuda_graphs)
    try:
        stage.decode(model, request(1, lengths=(3,), early_stop_num=4))  # the shared batch
        stage.decode(model, request(2, lengths=(3, 4, 5), early_stop_num=4))  # a batch of its own
    finally:
        stage.close()
    assert made == [passed, passed]

"""One GPT decode step as a function of persistent tensors, run eagerly or replayed from CUDA graphs.

:func:`decode_step` is the tensor part of a :class:`~app.engine.models.t2s_decode.DecodeBatch` step:
embed each slot's last token at its position, run every layer over the slot KV cache (each layer
writes the slot's new key and value in place at its length, with tensor indices) under an additive
mask, and project to logits, for slots ``[0, rows)`` attending over the first ``width`` positions.
For one ``(rows, width)`` key every shape in it is fixed, it reads only tensors that live as long as
the batch (the model's weights and sine table, the cache, the slots' ``last_token``, ``positions``
and ``lengths``, the runner's bias buffer) and nothing in it waits for the host: what a CUDA graph
needs.

:class:`StepRunner` runs it once per step. Eagerly (CPU, or graphs off) it is the plain function.
With graphs, each key is captured once and replayed after: on CUDA into a ``torch.cuda.CUDAGraph``
(warmed up on a side stream; the batch's graphs share one memory pool, which is safe because they
replay one at a time and the caller copies its rows out of the static logits before the next step);
off CUDA into a :class:`RecordedStep`, a stand-in that binds the function to its input tensors at
"capture" and reruns it into the same static output on replay. The bookkeeping around both is the
same code, so CPU tests catch an input that is not written into the persistent tensors the step was
captured with (a graph would silently read stale data there).

Kept outside the captured part (``DecodeBatch``): marking each live row's new key visible, the
longest row (the one host sync of a step, which picks the key), advancing lengths and positions,
sampling and every piece of slot bookkeeping. The slot-state tensors must only ever be updated in
place: a captured graph reads them at the addresses it was captured with.
"""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import Callable, Sequence
from typing import Protocol

import torch

from app.engine.models.t2s import T2SModel

log = logging.getLogger(__name__)

# Attention reads the slot buffer up to the longest live row rounded up to this many positions, so
# consecutive steps share shapes.
CONTEXT_BUCKET = 64
# Eager runs on a side stream before a capture: cuBLAS workspaces, kernel choices and the allocator's
# blocks are settled before the graph records anything.
WARMUP_STEPS = 2


def decode_step(
    model: T2SModel,
    keys: Sequence[torch.Tensor],
    values: Sequence[torch.Tensor],
    tokens: torch.Tensor,
    positions: torch.Tensor,
    lengths: torch.Tensor,
    bias: torch.Tensor,
    width: int,
) -> torch.Tensor:
    """Logits ``[rows, vocab]`` of one step of slots ``0 .. rows-1``: ``tokens``, ``positions`` and
    ``lengths`` ``[rows]`` (the slots' last token, its semantic position, and where its key goes),
    ``keys``/``values`` the per-layer caches, ``bias`` ``[rows, 1, 1, width]`` (-inf: not visible)."""
    x = model.embed_semantic_at(tokens, positions)
    for layer, layer_keys, layer_values in zip(model.layers, keys, values, strict=True):
        x = layer.decode(x, layer_keys, layer_values, lengths, bias, width)
    return model.to_logits(x[:, -1])


def eager_width(longest: int, context: int) -> int:
    """Positions an eager step attends: the longest row rounded up to ``CONTEXT_BUCKET``."""
    return min(context, math.ceil(longest / CONTEXT_BUCKET) * CONTEXT_BUCKET)


def graph_width(longest: int, context: int) -> int:
    """Positions a captured step attends: ``CONTEXT_BUCKET`` times 1, 2, 3, 4, 6, 8, 12, 16, ...

    Why this grid: one graph per 64 positions would be ``context / 64`` graphs per row bucket (32 at
    the default 2048, x 5 row buckets at 16 slots), each costing a capture and its memory; powers of
    two alone would read up to twice the keys a step needs, and at large batches reading the cache
    is most of a step. Half-octave steps keep the graphs at ``2 * log2(context / 64)`` per row bucket
    (10 at 2048: at most 50 graphs with 16 slots, 70 with 64) and the keys read beyond the eager
    width under 50%. The keys beyond the eager width are masked (they add exact zeros): on CPU the
    logits stay bit-identical (tested); on CUDA another width may pick another kernel split, so the
    last bits may differ, as they may between row buckets."""
    blocks = math.ceil(longest / CONTEXT_BUCKET)
    top = 1 << (blocks - 1).bit_length()  # the next power of two >= blocks
    if top >= 4 and blocks <= top * 3 // 4:
        top = top * 3 // 4
    return min(context, top * CONTEXT_BUCKET)


class Replayable(Protocol):
    output: torch.Tensor  # the static logits buffer, rewritten by every replay

    def replay(self) -> None: ...


class RecordedStep:
    """Off CUDA, the stand-in for a captured graph: the step bound to its input tensors at "capture"
    (which runs it once, as a capture's warm-up does), rerun into the same output on ``replay``."""

    def __init__(self, step: Callable[[], torch.Tensor]):
        self._step = step
        self.output = step()

    def replay(self) -> None:
        self.output.copy_(self._step())


class CudaGraphStep:
    """The step captured in a CUDA graph, after ``WARMUP_STEPS`` eager runs on a side stream.

    Warm-up and capture write the same keys and values into the cache that the replay writes again
    (same inputs), so running the step more than once for one decode step changes nothing. The
    capture is ``thread_local``: other threads (text frontend, audio decoder) keep using the GPU."""

    def __init__(self, step: Callable[[], torch.Tensor], pool):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                step()
        torch.cuda.current_stream().wait_stream(side)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph, pool=pool, stream=side, capture_error_mode="thread_local"):
            self.output = step()

    def replay(self) -> None:
        self._graph.replay()


class StepRunner:
    """Runs :func:`decode_step` for one batch's slots, eagerly or from one captured step per key.

    ``keys``/``values`` are the batch's caches ``[layers, slots, heads, context, head_dim]``;
    ``tokens``, ``positions``, ``lengths`` ``[slots]`` and ``key_ok`` ``[slots, context]`` its
    slot-state tensors, read at every step (only updated in place by the batch). ``graphs``: capture
    per key (CUDA graphs on CUDA, :class:`RecordedStep` elsewhere) instead of running eagerly."""

    def __init__(
        self,
        keys: torch.Tensor,
        values: torch.Tensor,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        lengths: torch.Tensor,
        key_ok: torch.Tensor,
        *,
        graphs: bool,
    ):
        self._keys, self._values = keys.unbind(0), values.unbind(0)
        self._tokens, self._positions, self._lengths, self._key_ok = tokens, positions, lengths, key_ok
        self.device = keys.device
        slots, self.context = keys.shape[1], keys.shape[3]
        # One bias buffer for every key: the bias of (rows, width) is its first rows * width entries
        # viewed [rows, 1, 1, width], contiguous like a fresh tensor and at the same address each step.
        self._bias = torch.zeros(slots * self.context, dtype=keys.dtype, device=keys.device)
        self.graphs = graphs
        self.captured: dict[tuple[int, int], Replayable] = {}  # (rows, width) → its captured step
        self.captures = 0  # captures made (a key is captured once)
        self.last_key: tuple[int, int] | None = None  # the key of the latest step
        self._pool = None  # the CUDA graphs' shared memory pool
        self._tables: list[torch.Tensor] = []  # sine tables the captured steps read

    def width(self, longest: int) -> int:
        """Positions a step attends when the longest live row (with its new key) is ``longest``."""
        return (graph_width if self.graphs else eager_width)(longest, self.context)

    def run(self, model: T2SModel, rows: int, longest: int) -> torch.Tensor:
        """Logits ``[rows, vocab]`` of slots ``0 .. rows-1``. With graphs this is the static output
        of the key's captured step: copy what you need out of it before the next ``run``."""
        width = self.width(longest)
        key = self.last_key = (rows, width)
        bias = self._bias[: rows * width].view(rows, 1, 1, width)
        bias.zero_().masked_fill_(~self._key_ok[:rows, :width].view(rows, 1, 1, width), -float("inf"))
        if not self.graphs:
            return decode_step(model, self._keys, self._values, *self._inputs(rows), bias, width)
        step = self.captured.get(key)
        if step is None:
            try:
                step = self._capture(self._bound(model, rows, width, bias))
            except RuntimeError:
                # Not expected; the batch must go on decoding rather than fail at every step. The
                # warm-up's cache writes are the step's own, so the eager rerun changes nothing.
                log.warning("capturing a GPT decode step failed; this batch runs eagerly", exc_info=True)
                self.graphs, self.captured = False, {}
                return self.run(model, rows, longest)
            self.captured[key] = step
            self.captures += 1
        step.replay()
        return step.output

    def _inputs(self, rows: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self._tokens[:rows], self._positions[:rows], self._lengths[:rows]

    def _bound(
        self, model: T2SModel, rows: int, width: int, bias: torch.Tensor
    ) -> Callable[[], torch.Tensor]:
        """The step of ``(rows, width)`` bound to its input tensors. The model is held weakly (a batch
        must not keep its model alive); its sine table strongly, by the runner, since a captured graph
        reads the table at its capture address even after ``SinePositions.ensure`` replaced it."""
        table = model.semantic_positions.table
        if all(t is not table for t in self._tables):
            self._tables.append(table)
        model_ref, inputs, keys, values = weakref.ref(model), self._inputs(rows), self._keys, self._values

        def step() -> torch.Tensor:
            alive = model_ref()
            if alive is None:
                raise RuntimeError("the GPT model of this step is gone")
            return decode_step(alive, keys, values, *inputs, bias, width)

        return step

    def _capture(self, step: Callable[[], torch.Tensor]) -> Replayable:
        if self.device.type != "cuda":
            return RecordedStep(step)
        with torch.cuda.device(self.device):
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            return CudaGraphStep(step, self._pool)

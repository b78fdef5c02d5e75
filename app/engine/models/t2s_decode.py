"""The GPT decode loop over a slot KV cache, shared by rows of many requests (continuous batching).

A :class:`DecodeBatch` owns, for one :class:`~app.engine.models.t2s.T2SModel`, a fixed number of
*slots*: per layer ``[slots, heads, context, head_dim]`` keys and values allocated once, plus per slot
its length, padding, semantic position, token history, "seen" mask and sampling settings. Requests
arrive as :class:`DecodeRequest` (one upstream ``infer_panel`` call: the pieces of one GPT batch).
Between steps, waiting rows are prefilled into free slots and join; a finished row frees its slot at
once. One ``step()`` runs every live row one token forward together: attention reads the whole slot
buffer (up to the longest live row, rounded up) with a mask built from each slot's length, and the
batch covers slots ``[0, bucket)`` where the bucket is the next power of two above the highest live
slot, so shapes repeat (what a CUDA graph or ``torch.compile`` needs).

Exactness: a request decoded here, alone or beside others, draws exactly the random numbers upstream
draws for it: each *cohort* (rows that joined together: all rows of a parallel call, or one row of a
sequential call) draws its noise from its request's generator, one draw of ``[live rows, vocab]`` per
step, with EOS's column left out for the first steps as upstream does. Sampling settings are per-row
tensors (``app.engine.sampling``); EOS suppression is an additive mask (same width for every row).

Upstream's quirks are kept where they change tokens: ``_kept_tokens`` (``pred[-idx:]``), trimming at
the end of a row (parallel trims the last token also on the early stop), and prompt-free parallel
decoding falling back to sequential with repetition penalty 1.35.

Why this module is long: it is the one decode loop (admission, prefill, step, per-row sampling,
leaving) whose slot bookkeeping must stay consistent step for step; split, its invariants would span
files.
"""

from __future__ import annotations

import collections
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from app.engine.models.t2s import (
    BERT_DIM,
    MAX_DECODE_STEPS,
    STEPS_WITHOUT_EOS,
    DecodeCancelled,
    T2SModel,
    prompt_attention,
)
from app.engine.models.t2s_step import StepRunner
from app.engine.sampling import filtered_probs_rows, penalize_seen

# (row indices in the request's list, the cohort's step, raw logits [live rows, vocab]) → None
LogitsHook = Callable[[list[int], int, torch.Tensor], None]
# (row, the token drawn (None when upstream drops it: the EOS that ends a row), whether the row ended)
# → None; called on the decoding thread after every step, so it must be quick (streaming reads it).
TokenHook = Callable[[int, int | None, bool], None]


@dataclass
class DecodeRequest:
    """One GPT call: semantic tokens for each row (a piece of text), with one set of settings."""

    phones: Sequence[torch.Tensor]  # per row [n_r] phone ids (prompt text + piece)
    berts: Sequence[torch.Tensor]  # per row [1024, n_r]
    prompt: torch.Tensor | None  # [P] or [rows, P] semantic codes of the reference; None: prompt-free
    top_k: int | None = 5
    top_p: float | None = 1.0
    temperature: float = 1.0
    repetition_penalty: float = 1.35
    early_stop_num: int | None = None  # None: the model's hz * max_sec; < 0: only the 1500-step cap
    parallel: bool = True  # upstream's parallel_infer
    generator: torch.Generator | None = None
    should_stop: Callable[[], bool] | None = None
    on_logits: LogitsHook | None = None
    on_token: TokenHook | None = None


def kept_tokens(history: torch.Tensor, idx: int) -> torch.Tensor:
    """What upstream's TTS.run keeps of a decoded row: ``pred[-idx:]``.

    ``history`` is the row as upstream returns it (prompt codes + generated codes) and ``idx`` the
    step count it returns. Quirk kept on purpose: ``idx == 0`` (always the case for prompt-free
    decoding) makes ``pred[-0:]`` the WHOLE row."""
    return history[-idx:] if idx > 0 else history


def bucket(n: int, cap: int) -> int:
    """The next power of two >= n (at most ``cap``): the batch shapes a decode step is built for."""
    return min(cap, 1 << max(0, n - 1).bit_length())


class _Cohort:
    """Rows that joined together and step together: they share a step count and one noise draw."""

    def __init__(self, owner: _Group, rows: list[int]):
        self.owner = owner
        self.rows = rows  # indices into the request's rows
        self.slots: dict[int, int] = {}  # row → slot while live
        self.step = 0

    @property
    def live_rows(self) -> list[int]:
        return [r for r in self.rows if r in self.slots]


class _Group:
    """One DecodeRequest in flight: its cohorts (one for parallel, one per row for sequential)."""

    def __init__(self, model: T2SModel, request: DecodeRequest):
        self.request = request
        config = model.config
        device, dtype = model.to_logits.weight.device, model.to_logits.weight.dtype
        phones = [p.to(device=device, dtype=torch.long) for p in request.phones]
        berts = [b.to(device=device, dtype=dtype) for b in request.berts]
        if not phones or len(phones) != len(berts):
            raise ValueError("need one BERT feature matrix per phone sequence, and at least one row")
        for p, b in zip(phones, berts, strict=True):
            if p.ndim != 1 or b.shape != (BERT_DIM, p.shape[0]):
                raise ValueError(f"phones {tuple(p.shape)} and BERT {tuple(b.shape)} do not fit together")
        prompt = request.prompt
        if prompt is not None:
            prompt = prompt.to(device=device, dtype=torch.long)
            prompt = prompt.unsqueeze(0).expand(len(phones), -1) if prompt.ndim == 1 else prompt
            if prompt.shape[0] != len(phones):
                raise ValueError(f"prompt has {prompt.shape[0]} rows for {len(phones)} phone rows")
        parallel, penalty = request.parallel, request.repetition_penalty
        if prompt is None and parallel:
            # Upstream quirk: prompt-free parallel decoding falls back to the sequential method, which
            # then runs with its default repetition penalty whatever was asked.
            parallel, penalty = False, 1.35
        self.parallel = parallel
        self.penalty = penalty
        self.prompt = prompt
        self.prompt_len = 0 if prompt is None else prompt.shape[1]
        early_stop = config.early_stop_num if request.early_stop_num is None else request.early_stop_num
        self.early_stop_num = early_stop
        self.max_steps = MAX_DECODE_STEPS if early_stop < 0 else min(MAX_DECODE_STEPS, early_stop + 1)
        with torch.inference_mode():
            self.embedded = [model.embed_phones(p, b) for p, b in zip(phones, berts, strict=True)]
        rows = list(range(len(phones)))
        self.waiting = collections.deque(
            [_Cohort(self, rows)] if parallel else [_Cohort(self, [r]) for r in rows]
        )
        self.results: dict[int, torch.Tensor] = {}
        self.error: BaseException | None = None
        self.finished = False
        self.on_finished: Callable[[], None] | None = None  # called once, on the decoding thread

    def finish(self, error: BaseException | None = None) -> None:
        if self.finished:
            return
        self.error, self.finished = error, True
        if self.on_finished is not None:
            self.on_finished()

    def context_needed(self, cohort: _Cohort) -> int:
        """Positions one row of ``cohort`` may fill: its phones (padded to the cohort's longest),
        the prompt codes and every step it may take."""
        return max(self.embedded[r].shape[0] for r in cohort.rows) + self.prompt_len + self.max_steps

    def keep(self, row: int, history: torch.Tensor, step: int) -> None:
        """What upstream keeps of a finished row; prompt-free decoding reports idx 0 upstream."""
        self.results[row] = kept_tokens(history, 0 if self.prompt is None else step)

    def tokens(self) -> list[torch.Tensor]:
        if self.error is not None:
            raise self.error
        return [self.results[r] for r in range(len(self.embedded))]


@dataclass
class _Slots:
    """Per-slot state on the model's device, indexed by slot."""

    lengths: torch.Tensor  # [slots] positions filled in the KV cache
    key_ok: torch.Tensor  # [slots, context] bool: a key that may be attended (not padding, < length)
    positions: torch.Tensor  # [slots] semantic position of the next input token
    last_token: torch.Tensor  # [slots]
    history: torch.Tensor  # [slots, max prompt + steps] prompt codes then drawn tokens
    filled: torch.Tensor  # [slots] entries of history in use
    seen: torch.Tensor  # [slots, vocab] bool: tokens in the history (the repetition penalty's set)
    top_k: torch.Tensor
    top_p: torch.Tensor
    temperature: torch.Tensor
    penalty: torch.Tensor
    owner: list[_Cohort | None] = field(default_factory=list)


class DecodeBatch:
    """Slots of one GPT model; requests join and leave between steps. Not thread-safe: one thread
    calls ``add`` and ``step`` (the GPT stage's, or ``decode_alone``'s caller)."""

    @classmethod
    def sized_for(cls, model: T2SModel, group: _Group, graphs: bool | None = None) -> DecodeBatch:
        """A batch of ``group``'s own, just large enough for it (all its rows if parallel, else one)."""
        slots = max(len(c.rows) for c in group.waiting)
        return cls(model, slots, max(group.context_needed(c) for c in group.waiting), graphs)

    @torch.inference_mode()
    def __init__(self, model: T2SModel, slots: int, context: int, graphs: bool | None = None):
        """``graphs``: capture each step shape once and replay it (``t2s_step.StepRunner``); None: when
        the model is on CUDA (CUDA graphs). True off CUDA runs the same bookkeeping with a recorded
        stand-in for the graphs (for tests); False: always eager."""
        config = model.config
        device, dtype = model.to_logits.weight.device, model.to_logits.weight.dtype
        # A weak reference: the batch must not keep a model alive after the model cache dropped it
        # (its requests hold the model while they decode).
        self._model = weakref.ref(model)
        self.capacity, self.context = slots, context
        shape = (config.num_layers, slots, config.num_heads, context, config.head_dim)
        # zeros, not empty: masked keys are still multiplied, and stale NaN bits would poison softmax.
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        self._layer_keys, self._layer_values = self.keys.unbind(0), self.values.unbind(0)
        model.semantic_positions.ensure(context)

        def per_slot(fill, dtype_=torch.long):
            return torch.full((slots,), fill, dtype=dtype_, device=device)

        self.state = _Slots(
            lengths=per_slot(0),
            key_ok=torch.zeros(slots, context, dtype=torch.bool, device=device),
            positions=per_slot(0),
            last_token=per_slot(0),
            history=torch.zeros(slots, context, dtype=torch.long, device=device),
            filled=per_slot(0),
            seen=torch.zeros(slots, config.vocab_size, dtype=torch.bool, device=device),
            top_k=per_slot(0),
            top_p=per_slot(1.0, torch.float32),
            temperature=per_slot(1.0, torch.float32),
            penalty=per_slot(1.0, torch.float32),
            owner=[None] * slots,
        )
        self.state.key_ok[:, 0] = True  # a free slot's row attends its key 0, so it never goes NaN
        st = self.state
        self.runner = StepRunner(
            self.keys, self.values, st.last_token, st.positions, st.lengths, st.key_ok,
            graphs=device.type == "cuda" if graphs is None else graphs,
        )  # fmt: skip
        self._waiting: collections.deque[_Group] = collections.deque()
        self.steps = 0  # decode steps run (prefills not counted)
        self.rows_stepped = 0  # live rows summed over those steps

    @property
    def model(self) -> T2SModel:
        model = self._model()
        if model is None:
            raise RuntimeError("the GPT model of this batch is gone")
        return model

    # ------------------------------------------------------------------ admission

    def fits(self, group: _Group) -> bool:
        """Every cohort of ``group`` can ever run here (enough slots and positions)."""
        return all(
            len(c.rows) <= self.capacity and group.context_needed(c) <= self.context for c in group.waiting
        )

    def add(self, group: _Group) -> None:
        if not self.fits(group):
            raise ValueError("this request needs more slots or positions than the batch has")
        self._waiting.append(group)

    @property
    def busy(self) -> bool:
        return bool(self._waiting) or any(o is not None for o in self.state.owner)

    def live_rows(self) -> int:
        return sum(o is not None for o in self.state.owner)

    def _free_slots(self) -> list[int]:
        return [s for s, o in enumerate(self.state.owner) if o is None]

    def _groups(self) -> list[_Group]:
        """Requests with a live row or a waiting one, each once, oldest first."""
        groups = {id(o.owner): o.owner for o in self.state.owner if o is not None}
        for group in self._waiting:
            groups.setdefault(id(group), group)
        return list(groups.values())

    def _admit(self) -> None:
        """Prefill waiting cohorts into free slots, first come first served: a cohort that does not
        fit yet stops admission (no overtaking, so a large cohort is not starved by small ones). A
        sequential request's next row waits for its previous row and holds nobody up meanwhile."""
        for group in list(self._waiting):
            if group.finished:
                self._waiting.remove(group)
                continue
            if any(o is not None and o.owner is group for o in self.state.owner):
                continue
            cohort = group.waiting[0]
            free = self._free_slots()
            if len(cohort.rows) > len(free):
                return
            group.waiting.popleft()
            if not group.waiting:
                self._waiting.remove(group)
            self._prefill(cohort, free[: len(cohort.rows)])

    def _stop_if_asked(self, group: _Group) -> None:
        """Poll the request's ``should_stop``; a stopped request leaves at once, freeing its slots."""
        stop = group.request.should_stop
        if group.finished or stop is None or not stop():
            return
        for slot, owner in enumerate(self.state.owner):
            if owner is not None and owner.owner is group:
                self._free(slot)
        if group in self._waiting:
            self._waiting.remove(group)
        group.finish(DecodeCancelled("decoding was stopped"))

    # ------------------------------------------------------------------ prefill (a cohort's step 0)

    def _prefill(self, cohort: _Cohort, slots: list[int]) -> None:
        group, model, st = cohort.owner, self.model, self.state
        device = self.keys.device
        texts = [group.embedded[r] for r in cohort.rows]
        text_len, prompt_len = max(t.shape[0] for t in texts), group.prompt_len
        # Rows of a cohort are left-padded to the same length, as upstream batches them.
        x = torch.stack([F.pad(t, (0, 0, text_len - t.shape[0], 0)) for t in texts])
        text_valid = torch.stack(
            [torch.arange(text_len, device=device) >= text_len - t.shape[0] for t in texts]
        )
        if group.prompt is not None:
            x = torch.cat([x, model.embed_semantic(group.prompt[cohort.rows], 0)], dim=1)
        total = text_len + prompt_len
        index = torch.tensor(slots, device=device)
        request = group.request
        for slot, row in zip(slots, cohort.rows, strict=True):
            cohort.slots[row] = slot
            st.owner[slot] = cohort
        st.lengths[index] = total
        st.key_ok[index] = False
        st.key_ok[index, :total] = torch.cat([text_valid, torch.ones(len(slots), prompt_len, dtype=torch.bool, device=device)], 1)  # fmt: skip
        st.positions[index] = prompt_len
        st.filled[index] = prompt_len
        st.seen[index] = False
        if group.prompt is not None:
            prompt = group.prompt[cohort.rows]
            st.history[index, :prompt_len] = prompt
            st.seen[index] = st.seen[index].scatter(1, prompt, True)
        st.top_k[index] = request.top_k if request.top_k is not None else 0
        st.top_p[index] = request.top_p if request.top_p is not None else 1.0
        st.temperature[index] = request.temperature
        st.penalty[index] = group.penalty

        attend = prompt_attention(text_valid, prompt_len)
        for i, layer in enumerate(model.layers):
            x = layer.prefill(x, self._layer_keys[i], self._layer_values[i], index, attend)
        logits = model.to_logits(x[:, -1])
        self._sample([cohort], logits, index)

    # ------------------------------------------------------------------ decode step

    @torch.inference_mode()
    def step(self) -> None:
        """One iteration: every request is polled for a stop; every live row moves one token forward;
        then waiting rows are prefilled into free slots (their step 0), to join the next step."""
        for group in self._groups():
            self._stop_if_asked(group)
        live = [s for s, o in enumerate(self.state.owner) if o is not None]
        if live:
            self._decode(live)
        self._admit()

    def _decode(self, live: list[int]) -> None:
        st, model = self.state, self.model
        device = self.keys.device
        cohorts = self._cohorts()
        rows = bucket(max(live) + 1, self.capacity)
        live_index = torch.tensor(live, device=device)
        st.key_ok[live_index, st.lengths[live_index]] = True  # each live row sees its new key
        longest = int(st.lengths[live_index].max()) + 1
        # The tensor part of the step (possibly a replayed CUDA graph: its logits are a static buffer,
        # so the live rows are copied out by the indexing at once).
        logits = self.runner.run(model, rows, longest)[live_index]
        st.lengths[live_index] += 1
        st.positions[live_index] += 1
        self.steps += 1
        self.rows_stepped += len(live)
        self._sample(cohorts, logits, live_index)

    def _cohorts(self) -> list[_Cohort]:
        seen: dict[int, _Cohort] = {}
        for owner in self.state.owner:
            if owner is not None:
                seen.setdefault(id(owner), owner)
        return list(seen.values())

    # ------------------------------------------------------------------ sampling and leaving

    def _sample(self, cohorts: list[_Cohort], logits: torch.Tensor, slots: torch.Tensor) -> None:
        """Draw one token for each row of ``slots`` (``logits`` row i is slot ``slots[i]``)."""
        st, eos = self.state, self.model.config.eos_id
        slot_list = slots.tolist()
        where = {s: i for i, s in enumerate(slot_list)}
        for cohort in cohorts:
            hook = cohort.owner.request.on_logits
            if hook is not None:
                rows = cohort.live_rows
                hook(rows, cohort.step, logits[[where[cohort.slots[r]] for r in rows]])
        # EOS cannot be drawn in a cohort's first steps (upstream drops its column there).
        steps = {s: c.step for c in cohorts for s in c.slots.values()}
        blocked = torch.tensor([steps[s] < STEPS_WITHOUT_EOS for s in slot_list], device=logits.device)
        logits = logits.float().clone()  # sampling runs in float32, also for half-precision models
        logits[:, eos].masked_fill_(blocked, -float("inf"))
        penalized = penalize_seen(logits, st.seen[slots], st.penalty[slots])
        probs = filtered_probs_rows(
            penalized, top_k=st.top_k[slots], top_p=st.top_p[slots], temperature=st.temperature[slots]
        )
        race = torch.ones_like(probs)
        for cohort in cohorts:
            at = torch.tensor([where[cohort.slots[r]] for r in cohort.live_rows], device=probs.device)
            vocab = probs.shape[1] - (1 if cohort.step < STEPS_WITHOUT_EOS else 0)
            noise = torch.empty(len(at), vocab, dtype=probs.dtype, device=probs.device)
            race[at, :vocab] = noise.exponential_(1, generator=cohort.owner.request.generator)
        tokens = torch.argmax(probs / race, dim=-1)

        # Upstream stops a row when the drawn token OR the argmax of the penalised logits is EOS.
        hit_eos = ((tokens == eos) | (penalized.argmax(dim=-1) == eos)).tolist()
        st.history[slots, st.filled[slots]] = tokens
        st.filled[slots] += 1
        st.seen[slots, tokens] = True
        st.last_token[slots] = tokens
        filled = st.filled[slots].tolist()
        drawn = tokens.tolist() if any(c.owner.request.on_token for c in cohorts) else []
        for cohort in cohorts:
            group = cohort.owner
            over_early_stop = group.early_stop_num >= 0 and cohort.step + 1 > group.early_stop_num
            out_of_budget = over_early_stop or cohort.step == MAX_DECODE_STEPS - 1
            on_token = group.request.on_token
            for row in cohort.live_rows:
                slot = cohort.slots[row]
                i = where[slot]
                ends = hit_eos[i] or out_of_budget
                # Upstream trims the last token on EOS; the parallel path ALSO trims it when a row
                # runs out of budget (quirk: that drops a real token), the sequential does not.
                trimmed = ends and (hit_eos[i] or group.parallel)
                if on_token is not None:
                    on_token(row, None if trimmed else drawn[i], ends)
                if not ends:
                    continue
                end = filled[i] - 1 if trimmed else filled[i]
                group.keep(row, st.history[slot, :end].clone(), cohort.step)
                self._free(slot)
            cohort.step += 1
            if not cohort.slots and not group.waiting:
                group.finish()

    def fail_all(self, error: BaseException) -> None:
        """End every request in this batch with ``error`` (a failed step, or shutdown)."""
        for group in self._groups():
            group.finish(error)
        for slot in range(self.capacity):
            self._free(slot)
        self._waiting.clear()

    def _free(self, slot: int) -> None:
        cohort = self.state.owner[slot]
        if cohort is not None:
            cohort.slots = {r: s for r, s in cohort.slots.items() if s != slot}
        self.state.owner[slot] = None
        self.state.lengths[slot] = 0
        self.state.key_ok[slot] = False
        self.state.key_ok[slot, 0] = True


@torch.inference_mode()
def decode_alone(model: T2SModel, request: DecodeRequest, graphs: bool | None = None) -> list[torch.Tensor]:
    """Decode one request in a batch of its own, sized to it (the path of ``T2SModel.generate``);
    ``graphs`` as for ``DecodeBatch``."""
    group = _Group(model, request)
    batch = DecodeBatch.sized_for(model, group, graphs)
    batch.add(group)
    while not group.finished:
        batch.step()
    return group.tokens()


def new_group(model: T2SModel, request: DecodeRequest) -> _Group:
    """A request checked and embedded, ready to ``DecodeBatch.add``."""
    return _Group(model, request)

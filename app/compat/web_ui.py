"""Upstream's fast web UI (``GPT_SoVITS/inference_webui_fast.py``) as a gradio app mounted at ``/``, and
with it upstream's gradio API: the six ``api_name``s ``/change_choices``, ``/to_cut``, ``/inference``,
``/change_sovits_weights``, ``/init_t2s_weights`` and ``/stop``, with upstream's parameter names, order,
defaults and outputs, so that ``gradio_client`` scripts written against upstream (``Client(
"http://host:9872/")``) work unchanged.

- Every handler calls the app's one engine (``app.state.engine``) and builds its synthesis jobs with the
  REST ``/inference``'s own code (``inference_job``): same checks, same models, no second pipeline.
- The UI's defaults are the service's (``job_defaults``: upstream's UI defaults, top_k 5).
- ``sample_steps`` is a radio of strings ("32"), as upstream's clients send it; ``/inference`` answers
  [audio file (WAV at the model's rate), seed used]; a stopped synthesis answers no audio.
- ``/stop`` cancels the work of the calling browser tab (or gradio client) only: its jobs carry the
  request id ``webui-<gradio session hash>``, the id the engine cancels by.
- Gradio's queue admits as many syntheses as the engine decodes together (``gpt_slots``; one when
  continuous batching is off) and holds at most ``max_queue`` more, showing each tab its position:
  it must not serialise what the engine batches, nor queue more than the engine would accept.
- Stored voices (``/voices``) can be picked instead of uploading a clip (UI only; not part of the API).
- The gradio app claims only the paths its own routes serve; every other path (and every REST route,
  mounted first) stays the service's, with its error shape.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount

from app.engine.errors import Cancelled, EngineError
from app.engine.jobs import SAMPLE_STEPS, job_defaults
from app.engine.languages import LANGUAGES, languages_for
from app.engine.reference_clips import ReferenceBudget
from app.errors import InvalidInput, ServiceError, _describe_validation
from app.logging_setup import request_id_var
from app.routers.synthesis import check_aux_clips, decode_clip, inference_job
from app.routers.text import check_text_size
from app.routers.weights import language_update
from app.schemas.enums import (
    CUT_METHOD_LABELS,
    cut_method_code,
    cut_method_label,
    language_code,
    language_label,
)
from app.schemas.inference import InferenceParams
from app.settings import Settings

# Gradio reads this at import; the service never phones home (its machines may have no internet).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
import gradio as gr  # noqa: E402

DEFAULTS = job_defaults()
ALL_LANGUAGES = [language_label(code) for code in LANGUAGES]
CUT_LABELS = list(CUT_METHOD_LABELS)
STEP_CHOICES = [str(steps) for steps in SAMPLE_STEPS]
SYNTHESISE, LOADING = "合成语音", "模型加载中，请等待"


@contextmanager
def shown_in_ui() -> Iterator[None]:
    """The service's refusals as gradio errors: a toast in the browser, an exception in gradio_client."""
    try:
        yield
    except (ServiceError, EngineError) as exc:
        raise gr.Error(exc.message) from None
    except ValidationError as exc:
        raise gr.Error(_describe_validation(exc.errors())) from None


def session_id(request: gr.Request | None) -> str:
    """The request id of a tab's (or gradio client's) syntheses: what its /stop cancels."""
    session = getattr(request, "session_hash", None) or uuid.uuid4().hex
    return f"webui-{session}"


async def _read_clip(path: str, field: str, budget: ReferenceBudget):
    try:  # gradio's own upload (nothing else is accepted)
        data = await asyncio.to_thread(Path(path).read_bytes)
    except OSError:  # said without the server's path
        raise InvalidInput(f"{field}: the uploaded file {Path(path).name!r} is gone; upload it again") from None
    return decode_clip(data, Path(path).name, field, budget)


def build_web_ui(app: FastAPI, settings: Settings) -> gr.Blocks:
    """The UI; its handlers find the engine and the voice store on ``app.state`` when called (the
    lifespan creates them after this runs)."""

    def engine():
        return app.state.engine

    # ------------------------------------------------------------------ handlers (upstream's names)
    def change_choices():
        sovits, gpt = engine().weight_choices()
        return gr.update(choices=sovits), gr.update(choices=gpt)

    def to_cut(text_inp: str, how_to_cut: str) -> str:
        if not text_inp or not text_inp.strip():
            return ""
        with shown_in_ui():
            check_text_size(text_inp, settings.max_text_chars, "text_inp")
            return engine().cut(text_inp, cut_method_code(how_to_cut))

    async def inference(
        text, text_lang, ref_audio_path, aux_ref_audio_paths, prompt_text, prompt_lang, top_k, top_p,
        temperature, text_split_method, batch_size, speed_factor, ref_text_free, split_bucket,
        fragment_interval, seed, keep_random, parallel_infer, repetition_penalty, sample_steps,
        super_sampling, picked_voice=None, request: gr.Request = None,
    ):  # fmt: skip
        fields: dict[str, Any] = dict(
            text=text, text_lang=text_lang, prompt_text=prompt_text or "", prompt_lang=prompt_lang,
            top_k=top_k, top_p=top_p, temperature=temperature, text_split_method=text_split_method,
            batch_size=batch_size, speed_factor=speed_factor, ref_text_free=ref_text_free,
            split_bucket=split_bucket, fragment_interval=fragment_interval,
            seed=-1 if seed is None else seed, keep_random=keep_random, parallel_infer=parallel_infer,
            repetition_penalty=repetition_penalty, sample_steps=sample_steps, super_sampling=super_sampling,
        )  # fmt: skip
        if not ref_audio_path and picked_voice:
            fields["voice"] = picked_voice
            if not fields["prompt_text"]:  # the voice's own prompt then
                del fields["prompt_text"], fields["prompt_lang"]
        aux_paths = [getattr(p, "name", p) for p in aux_ref_audio_paths or []]

        async def aux(budget: ReferenceBudget):
            check_aux_clips(settings, len(aux_paths))
            return [await _read_clip(path, "aux_ref_audio_paths", budget) for path in aux_paths]

        async def read_ref(budget: ReferenceBudget):
            return await _read_clip(ref_audio_path, "ref_audio_path", budget)

        ref = read_ref if ref_audio_path else None
        token = request_id_var.set(session_id(request))
        try:
            with shown_in_ui():
                params = InferenceParams.model_validate(fields)
                job, gpt, sovits = await inference_job(settings, app.state.voices, params, ref, aux)
                try:
                    result = await engine().synthesize(job, gpt, sovits)
                except Cancelled:  # a stop is what the user asked for, not an error: no audio
                    gr.Info("合成已终止 (stopped)")
                    return None, seed
        finally:
            request_id_var.reset(token)
        return (result.sample_rate, result.audio), result.seed

    def change_sovits_weights(sovits_path, prompt_language=None, text_language=None):
        keep = gr.update()
        # Upstream's UI disables the synthesise button while the model loads.
        yield (keep,) * 9 + (gr.update(value=LOADING, interactive=False),)
        try:
            with shown_in_ui():
                choice = engine().select_sovits(sovits_path)
        except gr.Error:
            yield (keep,) * 9 + (gr.update(value=SYNTHESISE, interactive=True),)
            raise
        version = choice.version
        allowed = languages_for(version.symbols)
        labels = [language_label(code) for code in allowed]
        updates = []
        for current in (prompt_language, text_language):
            kept = language_update(language_code(current) if current else None, allowed)
            text_box = gr.update(value="") if kept.reset else keep
            value = gr.update(value=language_label(kept.language)) if kept.language else keep
            updates.append((text_box, value))
        (prompt_text_update, prompt_lang_update), (text_update, text_lang_update) = updates
        yield (
            gr.update(choices=labels),
            gr.update(choices=labels),
            prompt_text_update,
            prompt_lang_update,
            text_update,
            text_lang_update,
            gr.update(interactive=version.uses_vocoder, value=str(DEFAULTS["sample_steps"])),
            gr.update(visible=not version.uses_vocoder),
            gr.update(interactive=not version.uses_vocoder),
            gr.update(value=SYNTHESISE, interactive=True),
        )

    def init_t2s_weights(weights_path):
        with shown_in_ui():
            engine().select_gpt(weights_path)

    def stop(request: gr.Request):
        engine().cancel(session_id(request))

    # ------------------------------------------------------------------ UI-only (no api_name)
    def on_load():
        sovits_names, gpt_names = engine().weight_choices()
        try:
            gpt, sovits = engine().models.chosen(None, None)
        except EngineError:  # no model in the weights root yet
            gpt = sovits = None
        voices = [v.name for v in app.state.voices.list()]
        return (
            gr.update(choices=sovits_names, value=sovits),
            gr.update(choices=gpt_names, value=gpt),
            gr.update(choices=voices),
        )

    def pick_voice(name):
        if not name:
            return None, gr.update(), gr.update()
        with shown_in_ui():
            voice = app.state.voices.get(name)
        return name, voice.prompt_text, language_label(voice.prompt_lang)

    # ------------------------------------------------------------------ layout (upstream's order)
    # Uploads and answers are files in gradio's cache: those older than an hour go, hourly.
    with gr.Blocks(title="GPT-SoVITS WebUI", analytics_enabled=False, delete_cache=(3600, 3600)) as blocks:
        gr.Markdown(
            "# GPT-SoVITS\nServed by gsv-server. Clone only voices you may use; you answer for the audio you share."
        )
        with gr.Column():
            gr.Markdown(value="模型切换")
            with gr.Row():
                gpt_dropdown = gr.Dropdown(label="GPT模型列表", choices=[], interactive=True, allow_custom_value=True)
                sovits_dropdown = gr.Dropdown(
                    label="SoVITS模型列表", choices=[], interactive=True, allow_custom_value=True
                )
                refresh_button = gr.Button("刷新模型路径", variant="primary")
        with gr.Row():
            with gr.Column():
                gr.Markdown(value="*请上传并填写参考信息")
                voice_dropdown = gr.Dropdown(
                    label="Stored voice (instead of an upload; see /voices)", choices=[], value=None, elem_id="voice"
                )
                picked_voice = gr.State(None)
                with gr.Row():
                    inp_ref = gr.Audio(
                        label="主参考音频(请上传3~10秒内参考音频，超过会报错！)", type="filepath", elem_id="ref-audio"
                    )
                    inp_refs = gr.File(label="辅参考音频(可选多个，或不选)", file_count="multiple")
                prompt_text = gr.Textbox(label="主参考音频的文本", value="", lines=2, elem_id="prompt-text")
                with gr.Row():
                    prompt_language = gr.Dropdown(
                        label="主参考音频的语种", choices=ALL_LANGUAGES, value=language_label(DEFAULTS["prompt_lang"])
                    )
                    with gr.Column():
                        ref_text_free = gr.Checkbox(
                            label="开启无参考文本模式。不填参考文本亦相当于开启。",
                            value=DEFAULTS["ref_text_free"],
                            interactive=True,
                        )
                        gr.Markdown("使用无参考文本模式时建议使用微调的GPT")
            with gr.Column():
                gr.Markdown(value="*请填写需要合成的目标文本和语种模式")
                text = gr.Textbox(label="需要合成的文本", value="", lines=20, max_lines=20, elem_id="text")
                text_language = gr.Dropdown(
                    label="需要合成的文本的语种", choices=ALL_LANGUAGES, value=language_label(DEFAULTS["text_lang"])
                )
        with gr.Group():
            gr.Markdown(value="推理设置")
            with gr.Row():
                with gr.Column():
                    with gr.Row():
                        batch_size = gr.Slider(1, 200, step=1, label="batch_size", value=DEFAULTS["batch_size"])
                        sample_steps = gr.Radio(
                            label="采样步数(仅对V3/4生效)", value=str(DEFAULTS["sample_steps"]), choices=STEP_CHOICES
                        )
                    with gr.Row():
                        fragment_interval = gr.Slider(
                            0.01, 1, step=0.01, label="分段间隔(秒)", value=DEFAULTS["fragment_interval"]
                        )
                        speed_factor = gr.Slider(0.6, 1.65, step=0.05, label="语速", value=DEFAULTS["speed_factor"])
                    with gr.Row():
                        top_k = gr.Slider(1, 100, step=1, label="top_k", value=DEFAULTS["top_k"])
                        top_p = gr.Slider(0, 1, step=0.05, label="top_p", value=DEFAULTS["top_p"])
                    with gr.Row():
                        temperature = gr.Slider(0, 1, step=0.05, label="temperature", value=DEFAULTS["temperature"])
                        repetition_penalty = gr.Slider(
                            0, 2, step=0.05, label="重复惩罚", value=DEFAULTS["repetition_penalty"]
                        )
                with gr.Column():
                    with gr.Row():
                        how_to_cut = gr.Dropdown(
                            label="怎么切", choices=CUT_LABELS, value=cut_method_label(DEFAULTS["text_split_method"])
                        )
                        super_sampling = gr.Checkbox(label="音频超采样(仅对V3生效))", value=DEFAULTS["super_sampling"])
                    with gr.Row():
                        parallel_infer = gr.Checkbox(label="并行推理", value=DEFAULTS["parallel_infer"])
                        split_bucket = gr.Checkbox(
                            label="数据分桶(并行推理时会降低一点计算量)", value=DEFAULTS["split_bucket"]
                        )
                    with gr.Row():
                        seed = gr.Number(label="随机种子", value=DEFAULTS["seed"], precision=0)
                        keep_random = gr.Checkbox(label="保持随机", value=DEFAULTS["keep_random"])
                    output = gr.Audio(label="输出的语音", format="wav", elem_id="output-audio")
                    with gr.Row():
                        inference_button = gr.Button(SYNTHESISE, variant="primary", elem_id="synthesise")
                        stop_infer = gr.Button("终止合成", variant="primary")
        with gr.Group():
            gr.Markdown(value="文本切分工具。太长的文本合成出来效果不一定好，所以太长建议先切。")
            with gr.Row():
                text_inp = gr.Textbox(label="需要合成的切分前文本", value="", lines=4)
                with gr.Column():
                    _how_to_cut = gr.Radio(
                        label="怎么切", choices=CUT_LABELS, value=cut_method_label(DEFAULTS["text_split_method"])
                    )
                    cut_text = gr.Button("切分", variant="primary")
                text_opt = gr.Textbox(label="切分后文本", value="", lines=4)

        # ------------------------------------------------------------------ events (upstream's API)
        synthesis_limit = settings.gpt_slots if settings.continuous_batching else 1
        refresh_button.click(change_choices, [], [sovits_dropdown, gpt_dropdown], api_name="change_choices")
        cut_text.click(to_cut, [text_inp, _how_to_cut], [text_opt], api_name="to_cut")
        inference_button.click(
            inference,
            [
                text, text_language, inp_ref, inp_refs, prompt_text, prompt_language, top_k, top_p, temperature,
                how_to_cut, batch_size, speed_factor, ref_text_free, split_bucket, fragment_interval, seed,
                keep_random, parallel_infer, repetition_penalty, sample_steps, super_sampling, picked_voice,
            ],  # fmt: skip
            [output, seed],
            api_name="inference",
            concurrency_limit=synthesis_limit,
        )
        stop_infer.click(stop, [], [], api_name="stop")
        # .input, not .change: setting the dropdowns on page load must not reload the models.
        sovits_dropdown.input(
            change_sovits_weights,
            [sovits_dropdown, prompt_language, text_language],
            [
                prompt_language, text_language, prompt_text, prompt_language, text, text_language,
                sample_steps, inp_refs, ref_text_free, inference_button,
            ],  # fmt: skip
            api_name="change_sovits_weights",
        )
        gpt_dropdown.input(init_t2s_weights, [gpt_dropdown], [], api_name="init_t2s_weights")
        blocks.load(on_load, [], [sovits_dropdown, gpt_dropdown, voice_dropdown], api_visibility="private")
        voice_dropdown.input(
            pick_voice, [voice_dropdown], [picked_voice, prompt_text, prompt_language], api_visibility="private"
        )
    # Other events (weights, cutting, stop) run at once: a stop must never wait behind syntheses.
    blocks.queue(default_concurrency_limit=None, max_size=settings.max_queue)
    return blocks


class GradioPaths(Mount):
    """The gradio app mounted at ``/``, claiming only the paths one of its routes serves. The service's
    routes come first anyway; this keeps a path neither serves (``/nope``, ``GET /inference``) the
    service's, answered in its error shape instead of gradio's."""

    def matches(self, scope):
        match, child = super().matches(scope)
        if match is Match.NONE:
            return match, child
        inner = {**scope, **child}
        found = [route.matches(inner)[0] for route in self.app.router.routes]
        if Match.FULL in found:
            return Match.FULL, child
        if Match.PARTIAL in found:  # a gradio path, another method (TRACE /): the service's 405
            return Match.PARTIAL, {**child, WRONG_METHOD: True}
        return Match.NONE, {}

    async def handle(self, scope, receive, send):
        if scope.get(WRONG_METHOD):
            raise StarletteHTTPException(405, f"{scope['method']} is not allowed on {scope['path']}")
        await super().handle(scope, receive, send)


WRONG_METHOD = "gsv.gradio_wrong_method"


def mount_web_ui(app: FastAPI, settings: Settings) -> None:
    """Mount the UI at ``/`` (after the service's routes, which keep precedence)."""
    blocks = build_web_ui(app, settings)
    # Gradio checks the file paths a client's payload names (only its own uploads are accepted as
    # inputs) only once the app "has launched", which a mounted app never does: without this, an API
    # call could name any file on the server as the reference clip and have it read and cached.
    blocks.has_launched = True
    gr.mount_gradio_app(
        app,
        blocks,
        path="/",
        footer_links=["api", "settings"],
        ssr_mode=False,  # no Node server
        mcp_server=False,
        pwa=False,
        max_file_size=settings.max_body_bytes,
        # Only the service's own refusals (gr.Error) are shown; an unexpected exception's text (which
        # can hold server paths) stays in the log.
        show_error=False,
    )
    mounted = app.router.routes[-1]
    assert isinstance(mounted, Mount) and mounted.path == "", "mount_gradio_app appends its mount"
    app.router.routes[-1] = GradioPaths("/", app=mounted.app)

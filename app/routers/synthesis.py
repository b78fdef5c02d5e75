"""Synthesis endpoints: ``/inference`` (text + reference clip → WAV) and ``/stop``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Annotated, TypeVar

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import Response

from app.deps import EngineDep, SettingsDep
from app.engine.audio import encode_wav
from app.engine.audio_features import ReferenceAudioError, load_reference
from app.engine.jobs import ReferenceAudio, SynthesisJob
from app.engine.registry import resolve_under
from app.errors import InvalidInput, ServiceError
from app.routers.text import check_text_size
from app.schemas.errors import error_responses
from app.schemas.inference import InferenceParams, StopRequest, StopResponse

router = APIRouter(tags=["synthesis"])
T = TypeVar("T")

class UnsupportedAudio(ServiceError):
    status_code = 415
    code = "unsupported_audio"


class ClientClosedRequest(ServiceError):
    status_code = 499  # nginx's code: nobody reads the answer, but the request log says what happened
    code = "client_closed_request"


async def while_connected(request: Request, work: Awaitable[T], poll_s: float = 0.25) -> T:
    """Await ``work`` unless the client disconnects first: then cancel it. The cancellation reaches
    the engine, which withdraws the synthesis from the queue or stops it at the next decode step."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=poll_s)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                raise ClientClosedRequest("the client closed the connection; its synthesis was cancelled")
    finally:
        task.cancel()  # no-op when finished; stops the work when this handler itself is cancelled


async def _read_clip(settings, source: UploadFile | str, field: str) -> ReferenceAudio:
    """Decode an upload (or a name under the reference-audio root)."""
    if isinstance(source, str):
        root = settings.ref_audio_root
        if root is None:
            raise InvalidInput(
                f"{field}: upload a file; names are accepted only when GSV_REF_AUDIO_ROOT is set", code="upload_required"
            )
        path = resolve_under(root, source, f"{field} name")
        if not path.is_file():
            raise InvalidInput(f"{field}: no file {source!r} in the reference-audio root", code="ref_audio_not_found")
        data, name = path.read_bytes(), source
    else:
        data, name = await source.read(), source.filename or field
    if not data:
        raise InvalidInput(f"{field}: the file {name!r} is empty", code="empty_audio")
    try:
        return ReferenceAudio(*load_reference(data))
    except ReferenceAudioError:
        raise UnsupportedAudio(f"{field}: {name!r} could not be decoded as WAV, FLAC, OGG or MP3") from None


@router.post(
    "/inference",
    summary="Speak text in the voice of a reference clip",
    description=(
        "Multipart form with the 21 parameters of upstream's fast web UI (same names and defaults). "
        "`ref_audio_path` is the main reference clip (3–10 s) as an upload, or a file name under "
        "GSV_REF_AUDIO_ROOT; `aux_ref_audio_paths` are optional extra clips whose timbre is averaged in. "
        "Answers `audio/wav` (16-bit PCM at the model's rate) with the seed used in `X-Seed` and the "
        "rate in `X-Sample-Rate`. `/stop` cancels it (409 `synthesis_cancelled`)."
    ),
    response_class=Response,
    responses={
        200: {"content": {"audio/wav": {}}, "description": "The synthesised speech"},
        **error_responses(404, 409, 413, 415, 422, 429),
    },
)
async def inference(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    params: Annotated[InferenceParams, Form()],
    ref_audio_path: Annotated[UploadFile | str, File(description="Main reference clip, 3–10 s.")],
    aux_ref_audio_paths: Annotated[list[UploadFile], File(description="Extra reference clips.")] = [],  # noqa: B006
) -> Response:
    check_text_size(params.text, settings.max_text_chars, "text")
    check_text_size(params.prompt_text, settings.max_text_chars, "prompt_text")
    job = SynthesisJob(
        ref_audio=await _read_clip(settings, ref_audio_path, "ref_audio_path"),
        aux_ref_audios=[await _read_clip(settings, clip, "aux_ref_audio_paths") for clip in aux_ref_audio_paths],
        **params.model_dump(exclude={"gpt_weights", "sovits_weights"}),
    )
    result = await while_connected(request, engine.synthesize(job, params.gpt_weights, params.sovits_weights))
    return Response(
        content=encode_wav(result.audio, result.sample_rate),
        media_type="audio/wav",
        headers={"X-Seed": str(result.seed), "X-Sample-Rate": str(result.sample_rate)},
    )


@router.post(
    "/stop",
    response_model=StopResponse,
    summary="Cancel synthesis: one request by id, or all of them",
    responses=error_responses(422),
)
def stop(engine: EngineDep, body: StopRequest | None = None) -> StopResponse:
    return StopResponse(cancelled=engine.cancel((body or StopRequest()).request_id))

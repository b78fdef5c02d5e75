"""Stored voices: ``/voices``, a reference clip uploaded once (with its text, models and default
settings) and used later by name. Thin: parse, check the clips as ``/inference`` does, call the store."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile
from fastapi.concurrency import run_in_threadpool

from app.deps import EngineDep, SettingsDep, VoiceStoreDep
from app.engine.errors import NotFound
from app.engine.reference_clips import ReferenceBudget
from app.routers.synthesis import check_aux_clips, decode_clip, reference_budget
from app.schemas.errors import error_responses
from app.schemas.voices import ClipInfo, VoiceForm, VoiceInfo, VoiceList
from app.store import voices as store

router = APIRouter(prefix="/voices", tags=["voices"])


@router.post(
    "",
    status_code=201,
    response_model=VoiceInfo,
    summary="Store a voice: a reference clip, its text, and optional models and default settings",
    description=(
        "Multipart form. `ref_audio` is the main reference clip (3–10 s, WAV/FLAC/OGG/MP3), checked as "
        "`/inference` checks it; `aux_ref_audio` are optional extra clips (the same rules, at most "
        "GSV_MAX_AUX_REFS). The clips are kept as uploaded, in the database. 409 `voice_exists` when the "
        "name is taken."
    ),
    responses=error_responses(404, 409, 413, 415, 422),
)
async def create_voice(
    response: Response,
    voices: VoiceStoreDep,
    engine: EngineDep,
    settings: SettingsDep,
    form: Annotated[VoiceForm, Form()],
    ref_audio: Annotated[UploadFile, File(description="Main reference clip, 3–10 s.")],
    aux_ref_audio: Annotated[list[UploadFile], File(description="Extra reference clips.")] = [],  # noqa: B006
) -> VoiceInfo:
    check_aux_clips(settings, len(aux_ref_audio), "aux_ref_audio")
    budget = reference_budget(settings)
    clips = [await _clip(ref_audio, "ref_audio", budget)]
    clips += [await _clip(upload, "aux_ref_audio", budget) for upload in aux_ref_audio]
    _check_weights(engine, form.gpt_weights, form.sovits_weights)
    voice = store.NewVoice(
        name=form.name,
        prompt_text=form.prompt_text,
        prompt_lang=form.prompt_lang,
        clips=clips,
        gpt_weights=form.gpt_weights,
        sovits_weights=form.sovits_weights,
        defaults=form.defaults,
    )
    info = await run_in_threadpool(voices.create, voice)
    response.headers["Location"] = f"/voices/{info.name}"
    return _answer(info)


@router.get("", response_model=VoiceList, summary="Every stored voice (without the clips' bytes)")
def list_voices(voices: VoiceStoreDep) -> VoiceList:
    return VoiceList(voices=[_answer(info) for info in voices.list()])


@router.get("/{name}", response_model=VoiceInfo, summary="One stored voice", responses=error_responses(404))
def get_voice(name: str, voices: VoiceStoreDep) -> VoiceInfo:
    return _answer(voices.get(name))


@router.delete("/{name}", status_code=204, summary="Delete a stored voice", responses=error_responses(404))
def delete_voice(name: str, voices: VoiceStoreDep) -> Response:
    voices.delete(name)
    return Response(status_code=204)


async def _clip(upload: UploadFile, field: str, budget: ReferenceBudget) -> store.Clip:
    data, name = await upload.read(), upload.filename or field
    reference = decode_clip(data, name, field, budget)  # the rules /inference applies, checked now
    return store.Clip(name, data, reference.sample_rate, reference.seconds)


def _check_weights(engine, gpt: str | None, sovits: str | None) -> None:
    """Named weights must exist now (a typo is caught when the voice is made, not at each use)."""
    sovits_names, gpt_names = engine.weight_choices()
    for field, name, names in (("gpt_weights", gpt, gpt_names), ("sovits_weights", sovits, sovits_names)):
        if name is not None and name not in names:
            raise NotFound(f"{field}: no weights named {name!r} (see /change_choices)", code=f"{field}_not_found")


def _answer(info: store.VoiceInfo) -> VoiceInfo:
    def clip(c: store.ClipInfo) -> ClipInfo:
        return ClipInfo(filename=c.filename, sample_rate=c.sample_rate, seconds=c.seconds)

    return VoiceInfo(
        name=info.name,
        prompt_text=info.prompt_text,
        prompt_lang=info.prompt_lang,
        gpt_weights=info.gpt_weights,
        sovits_weights=info.sovits_weights,
        defaults=info.defaults,
        created_at=info.created_at,
        ref_audio=clip(info.ref_audio),
        aux_ref_audios=[clip(c) for c in info.aux_ref_audios],
        aux_ref_audio_count=len(info.aux_ref_audios),
    )

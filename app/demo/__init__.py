"""Small random weights laid out like an upstream GPT-SoVITS install, for trying the service without
downloading anything.

``write_demo_weights(root)`` fills ``root`` with every file the service needs, in upstream's own
on-disk formats and at upstream's paths (see ``app.engine.registry``):

- one demo voice per model version: a SoVITS ``.pth`` in ``SoVITS_weights*/`` and a GPT ``.ckpt`` in
  ``GPT_weights*/`` (v2Pro/v2ProPlus/v4 GPTs use the v2 symbol table, as upstream's s1v3.ckpt does).
  The v4 voice is what upstream's LoRA training writes: a LoRA file (header ``04``, ``lora_rank``)
  that is merged into the pretrained v4 base at load time;
- the shared models: HuBERT and the Chinese BERT (tiny Hugging Face folders); when a v2Pro or
  v2ProPlus voice is asked for, the speaker-verification checkpoint (its architecture is fixed, so it
  is full size); when the v4 voice is asked for, the v4 base ``s2Gv4.pth`` and the 48 kHz vocoder.

The weights are random, so the voices produce noise, not speech; they exist to exercise the whole
pipeline. Everything is drawn from ``torch.Generator``s seeded from one ``seed``, so the same seed
gives byte-identical files. Files are written atomically, and an existing file is kept unless
``force`` is set, so running again over a folder (even a real install) never breaks it. The key
names upstream's files use come from the model modules (``app.engine.models``), which own the
mapping between their names and upstream's in both directions.

Modules: ``voices`` (which voices, their paths), ``randomize`` (deterministic random tensors),
``gpt``, ``sovits`` (v1/v2/v2Pro/v2ProPlus), ``v4`` (LoRA voice, base, vocoder), ``shared`` (HuBERT,
BERT, speaker verification) and ``writer`` (the files, the folder, ``DEMO_WEIGHTS.txt``). A v3 voice
would need a small BigVGAN in NVIDIA's folder format; it does not exist yet.
"""

from app.demo.gpt import DEMO_MAX_SEC, GPT_PHONE_VOCAB, build_gpt_checkpoint, gpt_config
from app.demo.randomize import derived_seed, randomize
from app.demo.shared import CJK_UNIFIED, bert_vocab, build_speaker_state, write_bert, write_hubert
from app.demo.sovits import SOVITS_GAINS, SOVITS_SYMBOLS, build_sovits_checkpoint, sovits_config
from app.demo.v4 import (
    DEMO_V4_DIT,
    DEMO_V4_FEATURES,
    DEMO_V4_VOCODER,
    DEMO_V4_WNS1_LAYERS,
    VOCODER_GAINS,
    build_v4_base_checkpoint,
    build_v4_lora_checkpoint,
    build_vocoder_v4_state,
    sovits_v4_config,
)
from app.demo.voices import (
    DEMO_LORA_RANK,
    DEMO_VERSIONS,
    LORA_VERSIONS,
    SOVITS_HEADERS,
    DemoVoice,
    demo_voice,
)
from app.demo.writer import README_NAME, README_TEXT, DemoFile, WriteResult, demo_files, write_demo_weights

__all__ = [
    "CJK_UNIFIED",
    "DEMO_LORA_RANK",
    "DEMO_MAX_SEC",
    "DEMO_V4_DIT",
    "DEMO_V4_FEATURES",
    "DEMO_V4_VOCODER",
    "DEMO_V4_WNS1_LAYERS",
    "DEMO_VERSIONS",
    "GPT_PHONE_VOCAB",
    "LORA_VERSIONS",
    "README_NAME",
    "README_TEXT",
    "SOVITS_GAINS",
    "SOVITS_HEADERS",
    "SOVITS_SYMBOLS",
    "VOCODER_GAINS",
    "DemoFile",
    "DemoVoice",
    "WriteResult",
    "bert_vocab",
    "build_gpt_checkpoint",
    "build_sovits_checkpoint",
    "build_speaker_state",
    "build_v4_base_checkpoint",
    "build_v4_lora_checkpoint",
    "build_vocoder_v4_state",
    "demo_files",
    "demo_voice",
    "derived_seed",
    "gpt_config",
    "randomize",
    "sovits_config",
    "sovits_v4_config",
    "write_bert",
    "write_demo_weights",
    "write_hubert",
]

"""Which demo voices exist and where their files go: one voice per model version, named as
upstream's training would name a voice called ``demo_<version>``."""

from __future__ import annotations

from dataclasses import dataclass

from app.engine.registry import GPT_DIR_BY_VERSION, PRETRAINED_SOVITS, SOVITS_DIR_BY_VERSION

DEMO_VERSIONS: tuple[str, ...] = ("v1", "v2", "v2Pro", "v2ProPlus", "v4")
# Versions whose demo voice is a LoRA fine-tune on top of the pretrained base.
LORA_VERSIONS = ("v4",)
DEMO_LORA_RANK = 8
# Upstream writes this 2-byte header over the zip's "PK" for these versions (process_ckpt.my_save2);
# v1/v2 fine-tunes stay plain zips.
SOVITS_HEADERS = {"v2Pro": b"05", "v2ProPlus": b"06", "v4": b"04"}


@dataclass(frozen=True)
class DemoVoice:
    """Where the demo voice of one model version lives, relative to the weights root."""

    version: str
    sovits: str
    gpt: str
    base: str | None = None  # the pretrained model a LoRA fine-tune is merged into

    @property
    def symbols(self) -> str:
        return "v1" if self.version == "v1" else "v2"


def demo_voice(version: str) -> DemoVoice:
    """The file names upstream's training would give a voice called ``demo_<version>`` (LoRA files
    end in ``_l<rank>``)."""
    if version not in DEMO_VERSIONS:
        raise ValueError(f"no demo voice for {version!r}; available: {', '.join(DEMO_VERSIONS)}")
    lora = version in LORA_VERSIONS
    rank = f"_l{DEMO_LORA_RANK}" if lora else ""
    return DemoVoice(
        version=version,
        sovits=f"{SOVITS_DIR_BY_VERSION[version]}/demo_{version}_e8_s200{rank}.pth",
        gpt=f"{GPT_DIR_BY_VERSION[version]}/demo_{version}-e15.ckpt",
        base=PRETRAINED_SOVITS[version] if lora else None,
    )

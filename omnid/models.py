"""What each Qwen-Omni-Realtime model accepts, as documented (docs/protocol.md).

Both the daemon's config validation and the simulator read this table, because it is a fact about
the service, not a habit of our client: a voice from another model's list may close the socket, so
the daemon refuses it before connecting, and the simulator refuses it the way the service does.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelInfo:
    name: str
    default_voice: str
    voices: frozenset[str]
    semantic_vad: bool
    search: bool
    tools: bool  # documents function calling (qwen3-omni-flash accepts tools, never calls them)


# qwen3.5 documents 55 voices; these are the ones named in the docs and samples we could read.
# A voice outside every list is only warned about (the list may be incomplete); a voice that
# belongs to another model's list is an error.
_QWEN35_VOICES = frozenset(
    {
        "Tina",
        "Cherry",
        "Serena",
        "Ethan",
        "Chelsie",
        "Momo",
        "Vivian",
        "Moon",
        "Maia",
        "Kai",
        "Nofish",
        "Bella",
        "Jennifer",
        "Ryan",
        "Katerina",
        "Aiden",
        "Mia",
        "Elias",
        "Sunny",
    }
)
_QWEN3_FLASH_VOICES = frozenset(
    {
        "Cherry",
        "Ethan",
        "Nofish",
        "Jennifer",
        "Ryan",
        "Katerina",
        "Elias",
        "Jada",
        "Dylan",
        "Sunny",
        "Li",
        "Marcus",
        "Roy",
        "Peter",
        "Rocky",
        "Kiki",
        "Eric",
    }
)

MODELS: dict[str, ModelInfo] = {
    "qwen3.5-omni-plus-realtime": ModelInfo(
        "qwen3.5-omni-plus-realtime",
        "Tina",
        _QWEN35_VOICES,
        semantic_vad=True,
        search=True,
        tools=True,
    ),
    "qwen3.5-omni-flash-realtime": ModelInfo(
        "qwen3.5-omni-flash-realtime",
        "Tina",
        _QWEN35_VOICES,
        semantic_vad=True,
        search=False,
        tools=True,
    ),
    "qwen3-omni-flash-realtime": ModelInfo(
        "qwen3-omni-flash-realtime",
        "Cherry",
        _QWEN3_FLASH_VOICES,
        semantic_vad=False,
        search=False,
        tools=False,
    ),
}

ALL_VOICES = frozenset().union(*(m.voices for m in MODELS.values()))

WIRE_INPUT_RATE = 16_000
WIRE_OUTPUT_RATE = 24_000
AUDIO_TOKENS_PER_S = 12.5


def image_tokens(width: int, height: int) -> int:
    """Tokens one image costs: 1 per 32×32 pixels, at least 4, at most 1280 (docs/protocol.md)."""
    tiles = -(-width // 32) * -(-height // 32)
    return max(4, min(1280, tiles))

"""Token usage: the `usage` journal record written per response (and, later, read back).

The numbers are the service's own, as received in `response.done`: omnid never estimates
what it is billed for.
"""

from __future__ import annotations

from omnid.protocol import ResponseDone
from omnid.supervisor import Journal


def record_usage(
    journal: Journal, model: str, session_id: str, done: ResponseDone, first_audio_ms: float | str
) -> None:
    u = done.usage
    journal.record(
        "usage",
        f"response {done.response_id} {done.status}: {u.total_tokens} tokens "
        f"(in {u.input_tokens}: audio {u.input_audio_tokens}, image {u.input_image_tokens}, "
        f"text {u.input_text_tokens}; out {u.output_tokens}: audio {u.output_audio_tokens}, "
        f"text {u.output_text_tokens})",
        MODEL=model,
        SESSION=session_id,
        RESPONSE=done.response_id,
        INPUT_TOKENS=u.input_tokens,
        OUTPUT_TOKENS=u.output_tokens,
        TOTAL_TOKENS=u.total_tokens,
        INPUT_TEXT_TOKENS=u.input_text_tokens,
        INPUT_AUDIO_TOKENS=u.input_audio_tokens,
        INPUT_IMAGE_TOKENS=u.input_image_tokens,
        OUTPUT_TEXT_TOKENS=u.output_text_tokens,
        OUTPUT_AUDIO_TOKENS=u.output_audio_tokens,
        SEARCH_COUNT=u.search_count,
        FIRST_AUDIO_MS=first_audio_ms,
    )

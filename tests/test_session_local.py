"""The Session on the local engine (fake checkpoint): spoken replies go back into the prompt verbatim."""
from __future__ import annotations

import asyncio

import pytest

from stepvoice.assistant.config import AssistantConfig
from stepvoice.assistant.session import Session
from stepvoice.engine.messages import Speech


@pytest.fixture(scope="module")
def local(fake_checkpoint):
    from stepvoice.engine.backends.local import LocalBackend

    return LocalBackend.from_spec(str(fake_checkpoint), device="cpu")


def test_a_spoken_reply_returns_to_the_next_prompt_as_the_ids_the_model_produced(local):
    cfg = AssistantConfig()
    cfg.generation.max_new_tokens = 24
    cfg.generation.seed = 5
    session = Session(local, config=cfg)

    async def talk(text):
        return [e async for e in session.respond(text, reply="speech")]

    first = asyncio.run(talk("Tell me a story."))
    generated = list(first[-1].token_ids)
    assert generated and first[-1].reason in ("stop", "length")
    (speech,) = session.history[1].content
    assert isinstance(speech, Speech)
    tok = local.tokenizer
    kept = list(speech.token_ids)
    assert kept == [i for i in generated][: len(kept)] and tok.eot_id not in kept
    asyncio.run(talk("And then?"))
    ids = local.last_prompt_ids
    opener = tok.encode("<|BOT|>assistant\n<tts_start>")
    # The earlier reply sits in the prompt exactly: its opener, the generated ids, <|EOT|>.
    needle = opener + kept + [tok.eot_id]
    assert any(ids[i:i + len(needle)] == needle for i in range(len(ids) - len(needle) + 1))
    assert ids[-len(opener):] == opener  # and the new reply is opened for speech

"""Baichuan2-Chat: a user turn is token 195, an assistant turn token 196, then the bare content.

Pinned against Baichuan's own code:

- ``build_chat_input`` (``generation_utils.py`` of the Baichuan2-7B/13B-Chat model repos): the system
  text comes first with no marker, then each message is ``[195]`` (user) or ``[196]`` (any other
  role) followed by ``tokenizer.encode(content)``; nothing separates turns. When the last message is
  not an assistant's, ``196`` is appended (the generation prompt).
- ``fine-tune/fine-tune.py`` (github.com/baichuan-inc/Baichuan2, ``SupervisedDataset.preprocessing``):
  the same layout (``user_tokens=[195]``, ``assistant_tokens=[196]``) with one ``</s>`` (id 2) after
  the last message. Labels are the assistant content, that final ``</s>``, and ``</s>`` in place of
  every user marker 195 (so the model learns to emit ``</s>`` where the user would speak next); 196
  is never trained.

Ids 195/196 are ``<reserved_106>``/``<reserved_107>`` in the sentencepiece model (user-defined
pieces, so a tokenizer would also produce them from that text); the format emits them as literal ids.
No BOS (the tokenizer has ``add_bos_token: false``). The Jinja export (``templates/baichuan2.jinja``)
writes ids 195/196 as ``<reserved_106>``/``<reserved_107>``, the text of those (user-defined, never
split) pieces, and ``</s>``.
"""

from __future__ import annotations

from typing import Any

from ...errors import ValidationError
from ...messages import Conversation
from ...segments import SegmentBuilder
from ..base import NativeFormat
from ._headers import native_family
from ._info import eos_info

USER_TOKEN = "<reserved_106>"
USER_TOKEN_ID = 195
ASSISTANT_TOKEN = "<reserved_107>"
ASSISTANT_TOKEN_ID = 196
EOS_TOKEN = "</s>"
EOS_TOKEN_ID = 2


class Baichuan2(NativeFormat):
    """Baichuan2-Chat (7B and 13B).

    Segments: the system message's content (no marker); per message an id segment (195 for a user,
    196 for an assistant or a tool result, as ``build_chat_input`` treats every non-user role) and the
    content; the generation prompt is 196. A conversation that ends with an assistant message and no
    generation prompt is closed with ``</s>`` (id 2), trained with that message, as the fine-tune
    script does. Earlier assistant turns get no ``</s>`` in the input; the fine-tune script instead
    labels the next user marker 195 with ``</s>``, so that segment is trained (when the message
    before it is) with ``label_ids=(2,)``. ``continue_final_message`` drops the final ``</s>``, which
    is exactly ``build_chat_input`` with a trailing assistant message.

    There is no tool syntax: a tool list goes into the system message (the library default) and an
    assistant message with tool calls is rejected.
    """

    info = eos_info(
        "baichuan2",
        "baichuan",
        "Baichuan2-Chat: <reserved_106> (id 195) user, <reserved_107> (id 196) assistant, no separators",
        "Baichuan2-Chat generation_utils.py build_chat_input (user_token_id 195, assistant_token_id 196 "
        "from generation_config.json) and baichuan-inc/Baichuan2 fine-tune/fine-tune.py preprocessing "
        "(final </s>, labels)",
        eos=EOS_TOKEN,
        tokens={"user": USER_TOKEN, "assistant": ASSISTANT_TOKEN, "eos": EOS_TOKEN},
    )

    def build(
        self, conv: Conversation, out: SegmentBuilder, *, add_generation_prompt: bool, **kwargs: Any
    ) -> None:
        msgs = conv.messages
        for i, m in enumerate(msgs):
            if m.role == "system":
                out.content(m.text, i, m.trained)
                continue
            if m.tool_calls:
                raise ValidationError("baichuan2 has no tool-call syntax", index=i, rule="tool_call")
            if m.role == "user":
                # the fine-tune script labels every user marker with </s>: predicting it ends the turn before
                ends_turn = i > 0 and msgs[i - 1].role != "system" and msgs[i - 1].trained
                if ends_turn:
                    out.ids(USER_TOKEN, (USER_TOKEN_ID,), i, True, label_ids=(EOS_TOKEN_ID,))
                else:
                    out.ids(USER_TOKEN, (USER_TOKEN_ID,), i)
            else:
                out.ids(ASSISTANT_TOKEN, (ASSISTANT_TOKEN_ID,), i)
            out.content(m.text, i, m.trained)
        last = len(msgs) - 1
        if add_generation_prompt:
            out.ids(ASSISTANT_TOKEN, (ASSISTANT_TOKEN_ID,))
        elif msgs[last].role == "assistant":
            out.ids(EOS_TOKEN, (EOS_TOKEN_ID,), last, msgs[last].trained)


FAMILIES = [
    native_family(
        Baichuan2, ("baichuan2-chat", "baichuan2-7b-chat", "baichuan2-13b-chat"), parser="plain", export="baichuan2.jinja"
    )
]

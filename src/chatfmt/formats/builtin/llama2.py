"""Llama-2-chat, as Meta's own ``llama/generation.py`` (``Llama.chat_completion``) encodes it.

Meta's algorithm (meta-llama/llama, ``llama/generation.py``, Llama 2 release)::

    B_INST, E_INST = "[INST]", "[/INST]"
    B_SYS, E_SYS = "<<SYS>>\\n", "\\n<</SYS>>\\n\\n"

- a leading system message is merged into the first user message:
  ``B_SYS + system + E_SYS + user`` (the system text itself is not stripped);
- roles must then be user, assistant, user, ... (Meta asserts this);
- every (prompt, answer) pair is encoded on its own as
  ``[BOS] + sp.encode(f"{B_INST} {prompt.strip()} {E_INST} {answer.strip()} ") + [EOS]``;
- a final user message is ``[BOS] + sp.encode(f"{B_INST} {prompt.strip()} {E_INST}")``; the model
  generates right after ``[/INST]`` (its first token carries the leading space), so there is no
  separate generation prompt and ``add_generation_prompt`` changes nothing.

BOS/EOS are token ids (1 and 2), never text, and ``sp.encode`` runs once per pair, so each pair starts
with SentencePiece's dummy prefix (``▁[``, id 518). This format emits ``<s>``/``</s>`` as id segments and
everything between them as text segments, so that encoding each run of text between id segments with
``sp.encode`` reproduces Meta's ids exactly. The merged-and-stripped first prompt is split back into
its parts: ``<s>[INST] <<SYS>>\\n`` / system / ``\\n<</SYS>>\\n\\n`` / user (``.rstrip()``-ed; the strip of
the merged string never reaches the user's leading whitespace, and with a blank user message it eats
the ``\\n\\n`` of ``E_SYS``).

Segments: the system prompt and its tags belong to message 0; a pair's ``<s>[INST] `` and `` [/INST]``
belong to the user message; the answer's leading space, content, trailing space and ``</s>`` belong to
the assistant message and are trained with it.

Where transformers with the Hugging Face Llama-2-chat template differs (the vendor wins):

- **Text**: none for valid conversations. The HF template (meta-llama/Llama-2-*-chat-hf
  ``tokenizer_config.json``) renders ``bos + "[INST] " + content.strip() + " [/INST]"`` and
  ``" " + content.strip() + " " + eos``, with the same merged-then-stripped first prompt, which is the
  same string as Meta's pairs with ``<s>``/``</s>`` written out.
- **Token ids**: the HF template yields one string with ``<s>``/``</s>`` as text. transformers 5's
  ``LlamaTokenizer`` encodes the text after each ``<s>`` *without* the dummy prefix (``[`` = 29961
  instead of Meta's ``▁[`` = 518) at the start of every pair; content that spells ``<s>``/``</s>`` is
  parsed as a control token there, while Meta encodes it as plain text (as chatfmt does).
- **Conversations Meta rejects**: a conversation ending with an assistant message (Meta asserts the
  last message is from the user; the HF template renders it; chatfmt renders every pair, which is the
  training form), and a system message with nothing after it (Meta fails with ``IndexError``, the HF
  template renders ``""``, chatfmt raises :class:`~chatfmt.errors.ValidationError`).
- Meta marks dialogs whose contents contain ``[INST]``, ``[/INST]``, ``<<SYS>>`` or ``<</SYS>>`` as
  unsafe and answers them with an error string instead of generating; that is a policy of its
  generation loop, not of the encoding, and is not reproduced.
- The chujiezheng/chat_templates ``llama-2-chat.jinja`` variant also ``trim``\\s the system prompt, so it
  differs from Meta when the system prompt has leading or trailing whitespace.

Llama-2 has no tool syntax: a tool list goes into the system prompt as JSON (see
:func:`~chatfmt.formats.base.inject_tools_as_system`); tool calls and tool results are rejected.

Its Jinja export (``templates/llama-2.jinja``) writes the same text with ``<s>``/``</s>`` written out:
chatfmt's encoding of it gives Meta's ids; transformers 5's tokenizer drops the dummy prefix after ``<s>``.
"""

from __future__ import annotations

from typing import Any

from ...messages import Conversation
from ...segments import SegmentBuilder
from ..base import NativeFormat
from ._headers import native_family
from ._info import eos_info
from ._inst import BOS, END_INST, EOS, INST, SPM_BOS_EOS
from ._turns import check_alternating

B_INST, E_INST = INST, END_INST
B_SYS, E_SYS = "<<SYS>>\n", "\n<</SYS>>\n\n"
BOS_ID, EOS_ID = SPM_BOS_EOS[BOS], SPM_BOS_EOS[EOS]


class Llama2(NativeFormat):
    """Llama-2-chat: ``<s>[INST] {user} [/INST] {assistant} </s>`` per pair, system in ``<<SYS>>``."""

    info = eos_info(
        "llama-2",
        "llama",
        "Llama-2-chat: <s>[INST] <<SYS>>...<</SYS>> user [/INST] answer </s>, per-pair BOS/EOS ids",
        "Meta's llama/generation.py Llama.chat_completion (meta-llama/llama, Llama 2), "
        "ids compared with sentencepiece on the Llama-2 tokenizer.model",
        eos=EOS,
        bos=BOS,
        tokens={"bos": BOS, "eos": EOS},
    )

    def build(self, conv: Conversation, out: SegmentBuilder, *, add_generation_prompt: bool, **kwargs: Any) -> None:
        msgs = conv.messages
        start = check_alternating(conv, self.info.name)
        system = msgs[0] if start == 1 else None
        for i in range(start, len(msgs), 2):
            user = msgs[i]
            if system is not None and i == start:
                out.ids(BOS, (BOS_ID,), 0)
                prompt = user.text.rstrip()
                out.turn(0, f"{B_INST} {B_SYS}", system.text, E_SYS if prompt else E_SYS.rstrip(), system.trained)
                out.turn(i, "", prompt, f" {E_INST}", user.trained)
            else:
                out.ids(BOS, (BOS_ID,), i)
                out.turn(i, f"{B_INST} ", user.text.strip(), f" {E_INST}", user.trained)
            if i + 1 < len(msgs):
                j, answer = i + 1, msgs[i + 1]
                trained = answer.trained
                out.control(" ", j, trained)
                out.content(answer.text.strip(), j, trained)
                out.control(" ", j, trained)
                out.ids(EOS, (EOS_ID,), j, trained)


FAMILIES = [native_family(Llama2, ("llama2", "llama-2-chat"), parser="plain", export="llama-2.jinja")]

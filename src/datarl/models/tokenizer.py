"""A byte-level BPE tokenizer trained locally, saved as an ordinary HF tokenizer.

The embedded default has no hub to download a tokenizer from, so we train one on the
synthetic suite's text in seconds with the `tokenizers` library. It carries a chat
template so that chat-message prompts go through the same code path as real instruct
models (``apply_chat_template``).
"""

from __future__ import annotations

from collections.abc import Iterable

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
USER, ASSISTANT, SYSTEM = "<|user|>", "<|assistant|>", "<|system|>"
SPECIAL_TOKENS = [PAD, BOS, EOS, USER, ASSISTANT, SYSTEM]

# Each turn: role marker, content, EOS. Generation continues after the assistant marker
# and stops at EOS, so the policy's "end of response" is the tokenizer's eos_token.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}"
    + SYSTEM
    + "{% elif message['role'] == 'user' %}"
    + USER
    + "{% else %}"
    + ASSISTANT
    + "{% endif %}"
    "{{ message['content'] }}{{ eos_token }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}" + ASSISTANT + "{% endif %}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048, min_frequency: int = 2):  # -> PreTrainedTokenizerFast
    """Train a byte-level BPE tokenizer on ``texts`` and wrap it as a HF fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 300:
        raise ValueError("vocab_size must be at least 300 (256 bytes + special tokens + merges)")
    tok = Tokenizer(models.BPE())
    # One token per digit: a model this small learns carrying far more easily than with BPE'd numbers.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[USER, ASSISTANT, SYSTEM],
        padding_side="left",
    )
    hf.chat_template = CHAT_TEMPLATE
    return hf

"""Write one tiny random-weight Llama chat model; run by the model build venv's Python (torch, transformers).

Not imported by the lab: ``lab.vllm.models`` runs it as ``python make_model.py SPEC_JSON``, where the spec
names the output directory, the seed, the shape and the tokenizer corpus. The same spec gives the same
weights (the seed fixes the initialisation) and the same tokenizer (byte-level BPE trained on local text).
"""

import json
import sys
from pathlib import Path

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def train_tokenizer(corpus: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: PLC0415

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train(corpus, trainer)
    return tokenizer


def wrap_tokenizer(tokenizer):
    from transformers import PreTrainedTokenizerFast  # noqa: PLC0415

    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        model_max_length=2048,
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def build_model(spec: dict, tokenizer):
    import torch  # noqa: PLC0415
    from transformers import LlamaConfig, LlamaForCausalLM  # noqa: PLC0415

    torch.manual_seed(spec["seed"])
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec["hidden"],
        num_hidden_layers=spec["layers"],
        num_attention_heads=spec["heads"],
        num_key_value_heads=spec["heads"],
        intermediate_size=spec["intermediate"],
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config).to(torch.bfloat16)


def main(spec: dict) -> None:
    out = Path(spec["out"])
    tokenizer = wrap_tokenizer(train_tokenizer(spec["corpus"], spec["vocab"]))
    tokenizer.save_pretrained(out)
    build_model(spec, tokenizer).save_pretrained(out, safe_serialization=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))

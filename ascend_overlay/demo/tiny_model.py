"""Make a tiny Llama model directory with no download: a config, and a byte-level BPE tokenizer
trained in a second on built-in text. vLLM serves it with ``load_format="dummy"`` (random weights),
which is all that checking processes, phases and patches needs."""

from __future__ import annotations

import json
from pathlib import Path

_CORPUS = [
    "The overlay patches vLLM at runtime, in every process, and reports what it did.",
    "Ascend NPUs run vLLM through an out-of-tree platform, custom ops and HCCL.",
    "Hello world! The quick brown fox jumps over the lazy dog 0123456789.",
    "A hotfix is a file dropped in without a new release; it expires when upstream fixes the bug.",
]


def make_tiny_model(directory: str | Path, vocab_size: int = 512) -> Path:
    """Write the model to ``directory`` (idempotent: an existing complete model is kept)."""
    target = Path(directory)
    if (target / "config.json").exists() and (target / "tokenizer.json").exists():
        return target
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, PreTrainedTokenizerFast

    target.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<s>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(_CORPUS * 50, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>")
    fast.save_pretrained(target)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, head_dim=64,
                         max_position_embeddings=512, bos_token_id=0, eos_token_id=1, torch_dtype="bfloat16")
    config.save_pretrained(target)
    (target / "generation_config.json").write_text(json.dumps({"bos_token_id": 0, "eos_token_id": 1}))
    return target


if __name__ == "__main__":
    import sys

    print(make_tiny_model(sys.argv[1] if len(sys.argv) > 1 else ".cache/tiny-llama"))

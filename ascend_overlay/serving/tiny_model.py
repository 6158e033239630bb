"""Make a tiny Llama model directory with no download: a config, a byte-level BPE tokenizer trained in
a second on built-in text, and seeded random weights saved as safetensors.

The weights are noise (the text it writes is noise), but they are *real* saved weights: vLLM can load
them with its default loader, which is what a model bring-up's stage B (``ascend-overlay smoke``) must
exercise, while ``load_format="dummy"`` (stage A, the demo, most e2e tests) skips them. The same seed
gives the same bytes, so two machines make the same model."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

_CORPUS = [
    "The overlay patches vLLM at runtime, in every process, and reports what it did.",
    "Ascend NPUs run vLLM through an out-of-tree platform, custom ops and HCCL.",
    "Hello world! The quick brown fox jumps over the lazy dog 0123456789.",
    "A hotfix is a file dropped in without a new release; it expires when upstream fixes the bug.",
]
WEIGHTS = "model.safetensors"
# A plain chat template, so the OpenAI chat endpoint (and a bring-up's chat request) works on it too.
CHAT_TEMPLATE = ("{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant:{% endif %}")
SEED = 0
# A directory is complete only with all of these. The weights come last (see make_tiny_model): a
# directory made by an older version (no weights) or cut short while writing is made again.
REQUIRED = ("config.json", "tokenizer.json", "tokenizer_config.json", WEIGHTS)


def is_complete(directory: str | Path) -> bool:
    return all((Path(directory) / name).is_file() for name in REQUIRED)


def make_tiny_model(directory: str | Path, vocab_size: int = 512) -> Path:
    """Write the model to ``directory`` (idempotent: an existing complete model is kept)."""
    target = Path(directory)
    if is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}-", dir=target.parent) as tmp:
        _write_model(Path(tmp), vocab_size)
        target.mkdir(exist_ok=True)
        names = sorted(p.name for p in Path(tmp).iterdir())
        # Each file lands with an atomic rename, the weights last: a reader never sees a "complete"
        # directory whose other files are still missing.
        for name in [n for n in names if n != WEIGHTS] + [WEIGHTS]:
            os.replace(Path(tmp) / name, target / name)
    return target


def make_tiny_moe_model(directory: str | Path, vocab_size: int = 512) -> Path:
    """A tiny mixture-of-experts model (Mixtral: 4 experts, 2 per token), config and tokenizer only, for
    ``load_format="dummy"``. vLLM runs data-parallel ranks of a MoE model in lockstep, as one
    ``DPEngineCoreProc`` per rank (dense models get independent engines): this model is what makes
    real DP engine cores on a small machine."""
    target = Path(directory)
    if (target / "config.json").is_file() and (target / "tokenizer.json").is_file():
        return target
    from transformers import MixtralConfig

    target.mkdir(parents=True, exist_ok=True)
    _write_tokenizer(target, vocab_size)
    config = MixtralConfig(vocab_size=vocab_size, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                           num_attention_heads=2, num_key_value_heads=2, head_dim=64, num_local_experts=4,
                           num_experts_per_tok=2, max_position_embeddings=512, bos_token_id=0, eos_token_id=1,
                           torch_dtype="bfloat16")
    config.architectures = ["MixtralForCausalLM"]
    config.save_pretrained(target)
    (target / "generation_config.json").write_text(json.dumps({"bos_token_id": 0, "eos_token_id": 1}))
    return target


def _write_tokenizer(target: Path, vocab_size: int) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<s>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(_CORPUS * 50, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(target)


def _write_model(target: Path, vocab_size: int) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    _write_tokenizer(target, vocab_size)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, head_dim=64,
                         max_position_embeddings=512, bos_token_id=0, eos_token_id=1, torch_dtype="bfloat16")
    # Seeded init on the CPU generator, restored afterwards (the caller's random stream is not ours to move;
    # torch.random.fork_rng would also touch whatever accelerator backend is registered).
    saved = torch.get_rng_state()
    try:
        torch.manual_seed(SEED)
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    finally:
        torch.set_rng_state(saved)
    model.save_pretrained(target, safe_serialization=True)
    (target / "generation_config.json").write_text(json.dumps({"bos_token_id": 0, "eos_token_id": 1}))
    for path in target.iterdir():  # nothing but model files, readable like any other model directory
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.chmod(0o644)


if __name__ == "__main__":
    import sys

    print(make_tiny_model(sys.argv[1] if len(sys.argv) > 1 else ".cache/tiny-llama"))

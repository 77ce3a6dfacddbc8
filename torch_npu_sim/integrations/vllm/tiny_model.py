"""A tiny Llama with a locally trained tokenizer, for serving tests and examples offline.

No model hub is reachable where npusim is usually tried (CI, air-gapped boxes), so the
examples, tests and benchmark build their model here: a byte-level BPE tokenizer trained
on a few paragraphs, a chat template, and a randomly initialised (seeded) Llama whose
head_dim is 32, the smallest vLLM's CPU attention kernels accept.

    python -m torch_npu_sim.integrations.vllm.tiny_model /tmp/tiny-llama
"""
from __future__ import annotations

import argparse
import json
import os

_CORPUS = """\
The simulated NPU runs PyTorch programs on the host while presenting itself as an accelerator.
Each device has its own memory, streams and events, and kernels run in stream order.
Serving engines schedule requests, keep a paged cache of keys and values, and stream tokens back.
A tokenizer turns text into numbers; a model turns numbers into the next number; a sampler picks it.
Hello, how are you today? I am fine, thank you. What is the capital of France? Paris is.
One, two, three, four, five, six, seven, eight, nine, ten. Red, green, blue, yellow, black, white.
The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with one step.
"""

_CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]


def make_tokenizer(path: str, vocab_size: int = 512) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_CORPUS.splitlines() * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="</s>")
    fast.chat_template = _CHAT_TEMPLATE
    fast.save_pretrained(path)


def make_tiny_llama(path: str, *, seed: int = 0, num_layers: int = 2, hidden_size: int = 128,
                    num_heads: int = 4, num_kv_heads: int = 2, dtype: str = "bfloat16",
                    max_position_embeddings: int = 1024) -> str:
    """Writes a seeded random Llama and its tokenizer to `path` (skipped if already there)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    marker = os.path.join(path, "tiny_model.json")
    wanted = dict(seed=seed, num_layers=num_layers, hidden_size=hidden_size, num_heads=num_heads,
                  num_kv_heads=num_kv_heads, dtype=dtype, max_position_embeddings=max_position_embeddings)
    if os.path.exists(marker):
        with open(marker) as f:
            if json.load(f) == wanted:
                return path
    os.makedirs(path, exist_ok=True)
    make_tokenizer(path)
    from transformers import AutoTokenizer
    vocab = len(AutoTokenizer.from_pretrained(path))
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden_size, intermediate_size=hidden_size * 2,
                         num_hidden_layers=num_layers, num_attention_heads=num_heads,
                         num_key_value_heads=num_kv_heads, head_dim=hidden_size // num_heads,
                         max_position_embeddings=max_position_embeddings, bos_token_id=1, eos_token_id=2,
                         tie_word_embeddings=False, torch_dtype=dtype)
    torch.manual_seed(seed)
    with torch.device("cpu"):
        model = LlamaForCausalLM(config)
        # a wider spread than the default init, so that greedy decoding is not one repeated token
        for p in model.parameters():
            if p.dim() == 2:
                torch.nn.init.normal_(p, std=0.08)
    model.to(getattr(torch, dtype)).save_pretrained(path, safe_serialization=True)
    with open(marker, "w") as f:
        json.dump(wanted, f)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(make_tiny_llama(args.path, seed=args.seed))


if __name__ == "__main__":
    main()

"""Makes torchtitan's tokenizer and a small text dataset offline (no hub, no download).

torchtitan 0.3.0 loads a tokenizer from `hf_assets_path` (tokenizer.json plus
tokenizer_config.json naming bos/eos) and the `c4_test` dataset with
`datasets.load_dataset(dataset_path, split="train")`, reading each sample's "text" field.
This writes both from seeded synthetic sentences, so every run sees the same tokens.

    python examples/torchtitan/prepare_assets.py /tmp/titan_assets
    # -> /tmp/titan_assets/tokenizer/{tokenizer.json,tokenizer_config.json}
    #    /tmp/titan_assets/dataset/train.jsonl
"""
import argparse
import json
import os
import random

WORDS = (
    "the a one every some model layer token device memory shard rank gradient step "
    "loss weight bias batch sequence head attention norm optimizer learns computes "
    "reads writes moves gathers scatters reduces trains checks small large fast slow "
    "early late new old first last under over with from into across before after"
).split()
VOCAB_SIZE = 512  # below the debug model's 2048 embeddings


def sentences(rng: random.Random, count: int):
    for _ in range(count):
        words = [rng.choice(WORDS) for _ in range(rng.randint(6, 18))]
        yield " ".join(words).capitalize() + "."


def write_dataset(folder: str, documents: int, seed: int) -> str:
    rng = random.Random(seed)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "train.jsonl")
    with open(path, "w") as f:
        for _ in range(documents):
            f.write(json.dumps({"text": " ".join(sentences(rng, rng.randint(20, 60)))}) + "\n")
    return path


def write_tokenizer(folder: str, corpus: str) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=["<unk>", "<|begin_of_text|>", "<|end_of_text|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    with open(corpus) as f:
        texts = [json.loads(line)["text"] for line in f]
    tok.train_from_iterator(texts, trainer=trainer)
    os.makedirs(folder, exist_ok=True)
    tok.save(os.path.join(folder, "tokenizer.json"))
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>",
                   "add_bos_token": True, "add_eos_token": True}, f)


def prepare(out: str, documents: int = 400, seed: int = 0) -> dict:
    corpus = write_dataset(os.path.join(out, "dataset"), documents, seed)
    tokenizer = os.path.join(out, "tokenizer")
    if not os.path.exists(os.path.join(tokenizer, "tokenizer_config.json")):
        write_tokenizer(tokenizer, corpus)
    return {"tokenizer": tokenizer, "dataset": os.path.dirname(corpus)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder for tokenizer/ and dataset/")
    parser.add_argument("--documents", type=int, default=400)
    args = parser.parse_args()
    print(json.dumps(prepare(os.path.abspath(args.out), args.documents)))

"""Fine-tunes a tiny random-weight Llama with the Hugging Face Trainer for a few steps and
prints the losses and the device as JSON. argv[1]: "cpu" (use_cpu=True) or "device" (the
Trainer's own device choice)."""
import json
import sys
import tempfile

import torch
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

torch.manual_seed(0)
config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32)
model = LlamaForCausalLM(config)
generator = torch.Generator().manual_seed(1)
data = [{"input_ids": ids, "labels": ids} for ids in torch.randint(0, 64, (16, 16), generator=generator)]
args = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=4, max_steps=4, logging_steps=1,
                         learning_rate=1e-3, use_cpu=sys.argv[1] == "cpu", report_to=[], save_strategy="no", seed=0,
                         disable_tqdm=True)
trainer = Trainer(model=model, args=args, train_dataset=data)
trainer.train()
print(json.dumps({"losses": [entry["loss"] for entry in trainer.state.log_history if "loss" in entry],
                  "device": str(next(trainer.model.parameters()).device), "args_device": str(trainer.args.device)}))

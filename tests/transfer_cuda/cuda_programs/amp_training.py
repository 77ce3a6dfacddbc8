"""A CUDA training loop with automatic mixed precision, in the shape of PyTorch's AMP
examples (docs/source/notes/amp_examples.rst: "Typical Mixed Precision Training")."""
import json

import torch
import torch.nn as nn

device_type = "cuda" if torch.cuda.is_available() else "cpu"
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 8)).to(device_type)
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
loss_fn = nn.MSELoss()
scaler = torch.amp.GradScaler(device_type)
generator = torch.Generator().manual_seed(1)
data = [(torch.randn(32, 64, generator=generator), torch.randn(32, 8, generator=generator)) for _ in range(6)]

losses = []
for epoch in range(2):
    for input, target in data:
        input, target = input.to(device_type, non_blocking=True), target.to(device_type)
        optimizer.zero_grad()
        with torch.autocast(device_type=device_type, dtype=torch.float16):
            output = model(input)
            loss = loss_fn(output, target)
        assert output.dtype == torch.float16 and loss.dtype == torch.float32
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(loss.item())
if torch.cuda.is_available():
    torch.cuda.synchronize()
print(json.dumps({"losses": losses, "scale": scaler.get_scale(), "device": str(next(model.parameters()).device),
                  "weight_sum": sum(p.double().sum().item() for p in model.parameters())}))

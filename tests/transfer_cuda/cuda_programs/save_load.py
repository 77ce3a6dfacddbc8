"""torch.save on the device and torch.load(map_location=device), as a CUDA checkpointing script does."""
import json
import os
import tempfile

import torch
import torch.nn as nn

device = "cuda:0" if torch.cuda.is_available() else "cpu"
torch.manual_seed(0)
model = nn.Linear(16, 4).to(device)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
model(torch.randn(8, 16).to(device)).square().mean().backward()
optimizer.step()
path = os.path.join(tempfile.mkdtemp(), "checkpoint.pt")
torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "double": torch.arange(4, dtype=torch.float64, device=device)}, path)
checkpoint = torch.load(path, map_location=device)
restored = nn.Linear(16, 4).to(torch.device(device))
restored.load_state_dict(checkpoint["model"])
on_default = torch.load(path)  # the checkpoint's own locations
on_cpu = torch.load(path, map_location="cpu")
x = torch.randn(3, 16).to(device)
print(json.dumps({"equal": torch.equal(restored(x), model(x)), "out": restored(x).tolist(),
                  "devices": sorted({str(t.device) for t in checkpoint["model"].values()}),
                  "default_devices": sorted({str(t.device) for t in on_default["model"].values()}),
                  "cpu_devices": sorted({str(t.device) for t in on_cpu["model"].values()}),
                  "double_dtype": str(checkpoint["double"].dtype),
                  "exp_avg": checkpoint["optimizer"]["state"][0]["exp_avg"].sum().item()}))

"""CUDA streams and events as PyTorch's CUDA semantics notes use them: work on a side stream,
ordered with wait_stream and events, a tensor recorded on the stream using it, and event timing."""
import json

import torch

torch.manual_seed(0)
a = torch.randn(128, 128).cuda()  # drawn by the CPU generator, as data loaded from disk would be
side = torch.cuda.Stream()
side.wait_stream(torch.cuda.current_stream())
with torch.cuda.stream(side):
    b = torch.relu(a @ a)
    done = torch.cuda.Event()
    done.record()
torch.cuda.current_stream().wait_event(done)
b.record_stream(torch.cuda.current_stream())
start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
start.record()
c = (b * 2 + a).sum(dim=0)
end.record()
end.synchronize()
elapsed = start.elapsed_time(end)
torch.cuda.synchronize()
print(json.dumps({"b": b.sum().item(), "c": c.tolist(), "elapsed_is_a_time": elapsed >= 0.0,
                  "query": end.query(), "devices": torch.cuda.device_count() > 0,
                  "device": str(c.device)}))

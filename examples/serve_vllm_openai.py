"""`vllm serve` on npusim, asked by the OpenAI client: completion, chat and a stream.

Needs the vllm extra: `bash scripts/install_vllm.sh`. The server is the stock vLLM CLI;
the npusim platform plugin is picked because npusim devices exist (no flag needed).

    python examples/serve_vllm_openai.py
"""
import os
import socket
import subprocess
import sys
import tempfile
import time

from openai import OpenAI

from torch_npu_sim.integrations.vllm.tiny_model import make_tiny_llama


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    model = make_tiny_llama(os.path.join(tempfile.gettempdir(), "npusim-tiny-llama"))
    port = free_port()
    cmd = ["vllm", "serve", model, "--port", str(port), "--max-model-len", "512",
           "--kv-cache-memory-bytes", str(64 << 20), "--enforce-eager"]
    print("$", " ".join(cmd), flush=True)
    log = open(os.path.join(tempfile.gettempdir(), "npusim-vllm-serve.log"), "w")
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused")
    try:
        deadline = time.monotonic() + 300
        while True:
            if server.poll() is not None:
                sys.exit(f"the server exited; see {log.name}")
            try:
                client.models.list()
                break
            except Exception:
                if time.monotonic() > deadline:
                    sys.exit(f"the server did not come up; see {log.name}")
                time.sleep(2)
        print(f"server up on port {port} (log: {log.name})\n")
        completion = client.completions.create(model=model, prompt="Hello, how are you", max_tokens=16, temperature=0)
        print("completion:", repr(completion.choices[0].text))
        chat = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi there"}],
                                              max_tokens=16, temperature=0)
        print("chat:      ", repr(chat.choices[0].message.content))
        print("stream:     ", end="")
        for chunk in client.completions.create(model=model, prompt="The quick brown fox", max_tokens=16,
                                               temperature=0, stream=True):
            print(repr(chunk.choices[0].text), end=" ", flush=True)
        print()
    finally:
        server.terminate()
        server.wait(timeout=60)
    with open(log.name) as f:
        text = f.read()
    print("\nthe engine ran on npusim:", "backend=npusim" in text and "NPUSIM KV cache size" in text)


if __name__ == "__main__":
    main()

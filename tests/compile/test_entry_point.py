"""The named backend is found through the torch_dynamo_backends entry point."""


def test_named_backend_found_without_importing_the_plugin(fresh_python):
    # Autoload off: nothing imports torch_npu_sim except the backend lookup itself.
    r = fresh_python("""
        import sys, torch, torch._dynamo
        assert "torch_npu_sim" not in sys.modules
        assert "npusim" in torch._dynamo.list_backends()
        assert "torch_npu_sim" not in sys.modules  # listing does not load the plugin
        x = torch.randn(4, 8)
        out = torch.compile(lambda t: torch.nn.functional.gelu(t).softmax(-1), backend="npusim")(x)
        torch.testing.assert_close(out, torch.nn.functional.gelu(x).softmax(-1))
        assert "torch_npu_sim" in sys.modules  # loaded through the entry point
        y = torch.randn(4, 8, device="npusim")
        out = torch.compile(lambda t: t.sin() + 1, backend="npusim")(y)
        print(out.device, torch.allclose(out.cpu(), y.cpu().sin() + 1))
    """, env={"TORCH_DEVICE_BACKEND_AUTOLOAD": "0"}, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split() == ["npusim:0", "True"]


def test_import_torch_stays_free_of_dynamo(fresh_python):
    r = fresh_python("""
        import sys, torch
        assert "torch_npu_sim" in sys.modules
        print(sorted(m for m in sys.modules if m.startswith(("torch._dynamo", "torch._inductor"))))
    """)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == "[]"


def test_plain_compile_registers_lazily_in_a_fresh_process(fresh_python):
    r = fresh_python("""
        import torch
        x = torch.randn(4, 8, device="npusim")
        out = torch.compile(lambda t: (t * 2).softmax(-1))(x)
        from torch._dynamo.device_interface import get_interface_for_device
        print(out.device, torch.allclose(out.cpu(), (x.cpu() * 2).softmax(-1)), get_interface_for_device("npusim").__name__)
    """, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split() == ["npusim:0", "True", "NpuSimInterface"]

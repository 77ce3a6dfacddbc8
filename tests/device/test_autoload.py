"""`import torch` alone brings up npusim (torch.backends entry point)."""


def test_fresh_interpreter_has_npusim_without_import(fresh_python):
    r = fresh_python("""
        import sys, torch
        assert "torch_npu_sim" in sys.modules
        x = torch.ones(2, device="npusim")
        print(torch.accelerator.current_accelerator().type, x.device, x.is_npusim, torch.npusim.device_count())
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["npusim", "npusim:0", "True", "8"]


def test_autoload_can_be_disabled(fresh_python):
    r = fresh_python("""
        import sys, torch
        print("torch_npu_sim" in sys.modules, hasattr(torch, "npusim"))
    """, env={"TORCH_DEVICE_BACKEND_AUTOLOAD": "0"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False"]


def test_generated_methods(fresh_python):
    r = fresh_python("""
        import torch
        m = torch.nn.Linear(2, 2).npusim()
        t = torch.zeros(3).npusim(1)
        s = torch.zeros(3).untyped_storage().npusim()
        print(m.weight.device, t.device, t.is_npusim, s.device, s.is_npusim)
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["npusim:0", "npusim:1", "True", "npusim:0", "True"]


def test_importing_the_package_before_torch(fresh_python):
    # `import torch_npu_sim` first makes torch's autoload re-enter the half-imported package.
    r = fresh_python("""
        import torch_npu_sim
        import torch
        print(torch.ones(1, device="npusim").device)
    """, env={"PYTHONPATH": ""})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["npusim:0"]

"""Device count, selection, properties and configuration errors."""
import pytest
import torch


def test_default_count_and_properties():
    assert torch.npusim.is_available()
    assert torch.npusim.device_count() == 8
    props = torch.npusim.get_device_properties(3)
    assert props.name == torch.npusim.get_device_name(3) == "NPUSim-1"
    assert props.total_memory == 16 * 2**30
    assert torch.npusim.get_device_capability() == (props.major, props.minor)
    free, total = torch.npusim.mem_get_info(3)
    assert total == props.total_memory and 0 < free <= total
    assert torch.accelerator.device_count() == 8


def test_set_device_and_context():
    assert torch.npusim.current_device() == 0
    with torch.npusim.device(2):
        assert torch.npusim.current_device() == 2
        assert torch.empty(1, device="npusim").device == torch.device("npusim", 2)
        with torch.npusim.device("npusim:5"):
            assert torch.npusim.current_device() == 5
        assert torch.npusim.current_device() == 2
    assert torch.npusim.current_device() == 0
    torch.npusim.set_device(1)
    try:
        assert torch.accelerator.current_device_index() == 1
        assert torch.ones(1, device="npusim").device.index == 1
    finally:
        torch.npusim.set_device(0)
    x = torch.ones(2, device="npusim:4")
    with torch.npusim.device_of(x):
        assert torch.npusim.current_device() == 4


@pytest.mark.parametrize("bad", [8, 100])
def test_out_of_range_device_index_is_a_clear_error(bad):
    with pytest.raises((IndexError, RuntimeError), match="npusim"):
        torch.npusim.set_device(bad)
    assert torch.npusim.current_device() == 0


def test_out_of_range_device_in_tensor_factory():
    with pytest.raises(IndexError, match="Invalid npusim device index 9"):
        torch.empty(3, device="npusim:9")
    with pytest.raises(ValueError, match="Expected an npusim device"):
        torch.npusim.set_device("cpu")


def test_environment_configures_devices(fresh_python):
    r = fresh_python("""
        import torch
        print(torch.npusim.device_count(), torch.npusim.get_device_properties(2).total_memory,
              torch.npusim.get_device_name(0))
    """, env={"NPUSIM_DEVICE_COUNT": "3", "NPUSIM_DEVICE_MEMORY": "256MiB", "NPUSIM_DEVICE_NAME": "TestChip"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["3", str(256 * 2**20), "TestChip"]


def test_invalid_configuration_is_reported_on_use(fresh_python):
    r = fresh_python("""
        import torch
        print(torch.npusim.is_available())
        try:
            torch.ones(1, device="npusim")
        except RuntimeError as e:
            print("error:", e)
    """, env={"NPUSIM_DEVICE_COUNT": "lots"})
    assert r.returncode == 0, r.stderr
    assert "False" in r.stdout
    assert "NPUSIM_DEVICE_COUNT must be an integer" in r.stdout


def test_synchronize_and_launch_accounting():
    before = torch.npusim.launch_count(0)
    x = torch.ones(4, device="npusim")
    (x * 2).cpu()
    torch.npusim.synchronize()
    torch.accelerator.synchronize()
    assert torch.npusim.launch_count(0) > before

"""torch.compile support for npusim."""


def register() -> None:
    """Register Inductor for the npusim device (called when torch_npu_sim is imported)."""


def npusim_backend(gm, example_inputs):
    raise NotImplementedError("the npusim torch.compile backend is not built yet")

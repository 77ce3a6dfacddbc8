"""Testing tools for torch_npu_sim.

``fuzz``: randomized differential testing of the npusim collectives (programs of
collective calls generated with hypothesis, run on long-lived rank processes, checked
against gloo and against the streamed path)."""

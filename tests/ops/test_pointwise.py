"""The unboxed arithmetic kernels (add, sub, mul, div and in-place forms) against the CPU,
on the shapes, layouts and dtypes that pick their fast path or their aliasing path."""
import pytest
import torch

OPS = {
    "add": lambda a, b: a + b,
    "add alpha": lambda a, b: torch.add(a, b, alpha=0.5),
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "add_": lambda a, b: a.clone().add_(b, alpha=2),
    "sub_": lambda a, b: a.clone().sub_(b),
    "mul_": lambda a, b: a.clone().mul_(b),
    "div_": lambda a, b: a.clone().div_(b),
}

OPERANDS = {
    "same shape": lambda: (torch.randn(5, 7), torch.randn(5, 7)),
    "broadcast": lambda: (torch.randn(5, 7), torch.randn(7)),
    "one element": lambda: (torch.randn(1), torch.randn(1)),
    "transposed": lambda: (torch.randn(7, 5).t(), torch.randn(5, 7)),
    "empty": lambda: (torch.randn(0, 3), torch.randn(3)),
    "float64": lambda: (torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)),
    "bfloat16": lambda: (torch.randn(4, 3).bfloat16(), torch.randn(4, 3).bfloat16()),
    "mixed dtypes": lambda: (torch.randn(4, 3), torch.randn(4, 3, dtype=torch.float64)),
    "int64": lambda: (torch.arange(1, 13).reshape(4, 3), torch.arange(1, 4)),
}


@pytest.mark.parametrize("operands", OPERANDS)
@pytest.mark.parametrize("op", OPS)
def test_matches_cpu(op, operands):
    torch.manual_seed(0)
    a, b = OPERANDS[operands]()
    fn = OPS[op]
    try:
        expected = fn(a, b)
    except RuntimeError as e:
        with pytest.raises(RuntimeError, match=str(e)[:40].replace("(", r"\(").replace(")", r"\)")):
            fn(a.to("npusim:2"), b.to("npusim:2"))
        return
    actual = fn(a.to("npusim:2"), b.to("npusim:2"))
    assert actual.device == torch.device("npusim:2")
    assert actual.stride() == expected.stride()
    torch.testing.assert_close(actual.cpu(), expected, rtol=0, atol=0)


def test_inplace_errors_match_cpu():
    a, b = torch.randn(3), torch.randn(2, 3)
    with pytest.raises(RuntimeError, match="doesn't match the broadcast shape"):
        a.add_(b)
    with pytest.raises(RuntimeError, match="doesn't match the broadcast shape"):
        a.to("npusim").add_(b.to("npusim"))
    x = torch.randn(6, device="npusim")
    with pytest.raises(RuntimeError, match="single memory location"):
        x[1:].add_(x[:-1])
    with pytest.raises(RuntimeError, match="unsupported operation"):
        torch.randn(1, device="npusim").expand(3).mul_(torch.randn(3, device="npusim"))
    with pytest.raises(RuntimeError, match="Subtraction, the `-` operator, with two bool tensors"):
        torch.ones(2, dtype=torch.bool, device="npusim") - torch.ones(2, dtype=torch.bool, device="npusim")


def test_gradients_through_fast_path():
    a = torch.randn(4, 3, device="npusim", requires_grad=True)
    b = torch.randn(3, device="npusim", requires_grad=True)
    ((a + b) * a / (b - 3)).sum().backward()
    ac, bc = a.detach().cpu().requires_grad_(), b.detach().cpu().requires_grad_()
    ((ac + bc) * ac / (bc - 3)).sum().backward()
    torch.testing.assert_close(a.grad.cpu(), ac.grad)
    torch.testing.assert_close(b.grad.cpu(), bc.grad)

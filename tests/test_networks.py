"Slow checks of consistency_models.networks: torch.compile of the tiny UNet (CPU needs a C++ compiler; minutes on 2 cores)."
import time
import pytest, torch
from consistency_models.networks import build_network
from consistency_models.parameterization import ConsistencyModel

def _perturbed_tiny(seed=0):
    "The tiny preset at 8x8 with its zero-initialised layers perturbed, so the output depends on every layer."
    torch.manual_seed(seed)
    net = build_network('unet_tiny', img_resolution=8, in_channels=3, model_channels=16)
    with torch.no_grad():
        for p in net.parameters(): p.add_(0.05 * torch.randn_like(p))
    return net

@pytest.mark.slow
def test_compile_matches_eager():
    net = _perturbed_tiny().eval()
    x, c = torch.randn(4, 3, 8, 8), torch.randn(4)
    with torch.no_grad():
        ref = net(x, c)
        t = time.perf_counter(); out = torch.compile(net)(x, c)
        print(f'compile + first call: {time.perf_counter() - t:.1f} s')
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)

@pytest.mark.slow
def test_compile_backward_wrapped():
    "Compiled training step on the wrapped model: same loss and gradients as eager (dropout off)."
    f = ConsistencyModel(_perturbed_tiny()).eval()
    x, sig = torch.randn(4, 3, 8, 8), torch.tensor([0.1, 1., 5., 40.])
    def grads(model):
        f.zero_grad(set_to_none=True); loss = model(x, sig).pow(2).mean(); loss.backward()
        return loss.detach(), [p.grad.clone() for p in f.parameters()]
    l0, g0 = grads(f); l1, g1 = grads(torch.compile(f))
    torch.testing.assert_close(l1, l0, rtol=1e-4, atol=1e-6)
    for a, b in zip(g1, g0): torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)

"""The fused RRDB operator (f2n.cpp_ext) against its specification, the plain
PyTorch block in f2n.nets.rrdbnet: forward, gradients, second order, compile,
export and the fallback when the extension is not built.

The extension is compiled once per session into a session-wide directory (the
autouse F2N_HOME fixture would otherwise give each test an empty cache). It stays
loaded for the rest of the process, so later RRDBNet tests run fused in ``auto``.
"""

import io
import os
import time
from pathlib import Path

import onnx
import pytest
import torch
from functorch.compile import make_boxed_func
from torch._dynamo.backends.common import aot_autograd
from torch.func import functional_call, grad_and_value, jvp

from f2n import cpp_ext
from f2n.cpp_ext import build
from f2n.cpp_ext.__main__ import main as cpp_ext_cli
from f2n.errors import ConfigError, EngineUnavailableError
from f2n.nets.rrdbnet import RRDB, RRDBNet

BF16_ATOL = 0.05  # bf16 keeps 8 mantissa bits; fusing x + 0.2 y rounds once instead of twice


@pytest.fixture(autouse=True)
def auto_after() -> None:
    """Each test sets its mode; afterwards RRDBNet runs fused wherever the library is loaded."""
    yield
    cpp_ext.use_fused_rrdb("auto")


@pytest.fixture(scope="session")
def fused_ext(tmp_path_factory: pytest.TempPathFactory) -> float:
    """Build (CPU; CUDA too when a GPU is visible) and load the extension; returns the build seconds.
    ``$F2N_TEST_CPP_EXT_DIR`` names a build made earlier to reuse (benchmarks/gpu/verify.sh
    builds the CUDA extension once for its figures and these tests)."""
    start = time.perf_counter()
    build_dir = os.environ.get("F2N_TEST_CPP_EXT_DIR") or tmp_path_factory.mktemp("cpp_ext_build")
    try:
        cpp_ext.load(build=True, build_dir=Path(build_dir))
    except EngineUnavailableError as exc:
        pytest.fail(f"the extension must build in CI: {exc}")
    return time.perf_counter() - start



def run(module: torch.nn.Module, x: torch.Tensor, mode: str, monkeypatch: pytest.MonkeyPatch) -> torch.Tensor:
    cpp_ext.use_fused_rrdb(mode)
    return module(x)


def rrdb(nf: int, gc: int, dtype: torch.dtype = torch.float32) -> RRDB:
    torch.manual_seed(nf * 100 + gc)
    block = RRDB(nf, gc).to(dtype)
    with torch.no_grad():  # default init is small; larger weights make differences visible
        for p in block.parameters():
            p.mul_(3.0)
    return block


@pytest.mark.parametrize(
    "n, nf, gc, h, w",
    [(1, 8, 4, 4, 4), (2, 8, 4, 7, 5), (3, 16, 8, 9, 11), (1, 4, 2, 1, 1), (4, 64, 32, 6, 3)],
)
def test_forward_matches_plain_fp32(fused_ext, monkeypatch, n, nf, gc, h, w):
    block = rrdb(nf, gc)
    x = torch.randn(n, nf, h, w)
    with torch.no_grad():  # the inference op (two buffers in turn)
        plain = run(block, x, "off", monkeypatch)
        fused = run(block, x, "on", monkeypatch)
    fused_training = run(block, x.requires_grad_(), "on", monkeypatch)  # the op that keeps its buffers
    assert fused.shape == plain.shape
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused_training.detach(), plain, rtol=1e-5, atol=1e-5)


def test_forward_matches_plain_bf16(fused_ext, monkeypatch):
    block = rrdb(16, 8, torch.bfloat16)
    x = torch.randn(2, 16, 9, 7, dtype=torch.bfloat16)
    with torch.no_grad():
        plain = run(block, x, "off", monkeypatch)
        fused = run(block, x, "on", monkeypatch)
    assert fused.dtype == torch.bfloat16
    torch.testing.assert_close(fused.float(), plain.float(), rtol=0.02, atol=BF16_ATOL)


def test_rrdbnet_output_matches_plain_and_differs_from_identity(fused_ext, monkeypatch):
    torch.manual_seed(1)
    net = RRDBNet(num_block=2, num_feat=8, num_grow_ch=4)
    x = torch.rand(1, 3, 7, 9)
    with torch.no_grad():
        plain = run(net, x, "off", monkeypatch)
        fused = run(net, x, "on", monkeypatch)
    assert fused.shape == (1, 3, 28, 36)
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-5)


def test_a_block_with_hooks_runs_plain_so_that_they_fire(fused_ext, monkeypatch):
    """The fused op never calls the convs: a hook on one (a study's low-rank branch, a feature
    probe) would be skipped silently, so a hooked block takes the plain path."""
    torch.manual_seed(3)
    net = RRDBNet(num_block=2, num_feat=8, num_grow_ch=4).eval()
    x = torch.rand(1, 3, 7, 9)
    with torch.no_grad():
        unhooked = run(net, x, "on", monkeypatch)
    seen = []
    handle = net.body[1].rdb2.conv3.register_forward_hook(lambda module, inputs, out: seen.append(1) or out + 1.0)
    try:
        with torch.no_grad():
            plain = run(net, x, "off", monkeypatch)
            fused = run(net, x, "on", monkeypatch)
    finally:
        handle.remove()
    assert len(seen) == 2 and (plain - unhooked).abs().max() > 1e-4  # the hook fired both times and matters
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-5)  # the unhooked block still runs fused
    with torch.no_grad():  # the hook gone, the fused op is back
        torch.testing.assert_close(run(net, x, "on", monkeypatch), unhooked, rtol=0, atol=0)


def test_cmdsr_modulated_trunk_runs_the_same_through_the_fused_op(fused_ext, monkeypatch):
    """CMDSR hands its θ′ (trunk convs scaled per channel) to the engine as plain weights, never
    as hooks: the fused op reads them like the plain block does (the review's suspicion of a bypass)."""
    from f2n.export.torch_engine import TorchEngine
    from f2n.nets import ConditionNet, ConditionNetConfig, modulated_convs, modulated_weights

    torch.manual_seed(2)
    net = RRDBNet(num_block=2, num_feat=8, num_grow_ch=4).eval()
    with torch.no_grad():
        for p in net.body.parameters():  # a trunk that shows in the output
            p.mul_(3.0)
    config = ConditionNetConfig(num_feat=8, num_layers=2, modulate=("body.",))
    condition_net = ConditionNet(modulated_convs(net, config.modulate), config)
    with torch.no_grad():
        condition_net.head.weight.normal_(0, 2.0)
        condition_net.head.bias.normal_(0, 0.5)
        theta_prime = {k: v.clone() for k, v in modulated_weights(net, condition_net, torch.rand(4, 3, 16, 16)).items()}
    x = torch.rand(1, 3, 12, 10)
    out = {}
    for mode in ("off", "on"):
        cpp_ext.use_fused_rrdb(mode)
        engine = TorchEngine(RRDBNet(num_block=2, num_feat=8, num_grow_ch=4).eval())
        engine.set_weights({k: v.detach() for k, v in net.state_dict().items()})
        base = engine.run(x)
        engine.set_weights(theta_prime)
        out[mode] = engine.run(x)
    assert (out["off"] - base).abs().max() > 1e-4  # θ′ does change the output
    torch.testing.assert_close(out["on"], out["off"], rtol=1e-5, atol=1e-5)


def _grads(block: RRDB, x: torch.Tensor, mode: str, monkeypatch) -> list[torch.Tensor]:
    x = x.clone().requires_grad_()
    out = run(block, x, mode, monkeypatch)
    weight = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)  # not a plain sum
    return list(torch.autograd.grad((out * weight).sum(), [x, *block.parameters()]))


def test_gradients_match_plain(fused_ext, monkeypatch):
    block = rrdb(8, 4, torch.float64)
    x = torch.randn(2, 8, 5, 6, dtype=torch.float64)
    plain = _grads(block, x, "off", monkeypatch)
    fused = _grads(block, x, "on", monkeypatch)
    assert len(fused) == 31
    for got, want in zip(fused, plain):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def _op_inputs() -> tuple[torch.Tensor, ...]:
    block = rrdb(2, 2, torch.float64)
    params = [p.detach().clone().requires_grad_() for p in block.parameters()]
    x = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    return (x, *params)


def _op(x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
    return cpp_ext.fused_rrdb(x, params[0::2], params[1::2])


def test_gradcheck(fused_ext):
    assert torch.autograd.gradcheck(_op, _op_inputs())


def test_gradgradcheck(fused_ext):
    assert torch.autograd.gradgradcheck(_op, _op_inputs(), fast_mode=True)


def _maml_meta_grads(net: RRDBNet, lq: torch.Tensor, hq: torch.Tensor, mode: str, monkeypatch) -> list[torch.Tensor]:
    """One inner SGD step on (lq, hq), outer loss on a second pair, gradient w.r.t. the initial weights."""
    cpp_ext.use_fused_rrdb(mode)
    params = dict(net.named_parameters())
    inner = (functional_call(net, params, (lq,)) - hq).abs().mean()
    grads = torch.autograd.grad(inner, list(params.values()), create_graph=True)
    adapted = {name: p - 0.5 * g for (name, p), g in zip(params.items(), grads)}
    outer = (functional_call(net, adapted, (lq.flip(-1),)) - hq.flip(-1)).square().mean()
    return list(torch.autograd.grad(outer, list(params.values())))


def test_maml_second_order_gradient_matches_plain(fused_ext, monkeypatch):
    torch.manual_seed(2)
    net = RRDBNet(num_block=1, num_feat=8, num_grow_ch=4).double()
    lq = torch.rand(2, 3, 5, 5, dtype=torch.float64)
    hq = torch.rand(2, 3, 20, 20, dtype=torch.float64)
    plain = _maml_meta_grads(net, lq, hq, "off", monkeypatch)
    fused = _maml_meta_grads(net, lq, hq, "on", monkeypatch)
    body = [i for i, (name, _) in enumerate(net.named_parameters()) if name.startswith("body.")]
    assert any(plain[i].abs().max() > 0 for i in body)
    for got, want in zip(fused, plain):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_torch_func_grad_and_value_matches_plain(fused_ext, monkeypatch):
    """The runtime's adaptation step differentiates with torch.func.grad_and_value."""
    torch.manual_seed(3)
    net = RRDBNet(num_block=1, num_feat=8, num_grow_ch=4).double()
    lq = torch.rand(2, 3, 6, 5, dtype=torch.float64)
    hq = torch.rand(2, 3, 24, 20, dtype=torch.float64)
    params = {name: p.detach() for name, p in net.named_parameters()}

    def loss(p: dict[str, torch.Tensor]) -> torch.Tensor:
        return (functional_call(net, p, (lq,)) - hq).abs().mean()

    cpp_ext.use_fused_rrdb("off")
    plain_grads, plain_loss = grad_and_value(loss)(params)
    cpp_ext.use_fused_rrdb("on")
    fused_grads, fused_loss = grad_and_value(loss)(params)
    torch.testing.assert_close(fused_loss, plain_loss, rtol=1e-12, atol=1e-12)
    for name in params:
        torch.testing.assert_close(fused_grads[name], plain_grads[name], rtol=1e-9, atol=1e-12)


def test_torch_func_jvp_takes_the_plain_block(fused_ext, monkeypatch):
    """Forward mode (torch.func.jvp, Meta-SGD's exact meta-gradient) has no rule in the fused op:
    with the op loaded a JVP through RRDBNet's biases came out wrong by 2e-4 relative, silently."""
    torch.manual_seed(4)
    net = RRDBNet(num_block=1, num_feat=8, num_grow_ch=4).double()
    lq = torch.rand(2, 3, 6, 5, dtype=torch.float64)
    biases = {name: p.detach() for name, p in net.named_parameters() if name.endswith(".bias")}
    tangents = {name: torch.randn_like(b) for name, b in biases.items()}

    def jvp_of_output() -> tuple[torch.Tensor, torch.Tensor]:
        return jvp(lambda b: functional_call(net, b, (lq,)), (biases,), (tangents,))

    cpp_ext.use_fused_rrdb("off")
    plain = jvp_of_output()
    cpp_ext.use_fused_rrdb("on")
    fused = jvp_of_output()
    for got, want in zip(fused, plain):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_torch_compile_sees_through_the_op(fused_ext, monkeypatch):
    cpp_ext.use_fused_rrdb("on")
    block = rrdb(8, 4)
    x = torch.randn(2, 8, 6, 5, requires_grad=True)
    graphs: list[torch.fx.GraphModule] = []

    def keep(gm: torch.fx.GraphModule, _inputs):
        graphs.append(gm)
        return make_boxed_func(gm.forward)

    backend = aot_autograd(fw_compiler=keep, bw_compiler=keep)
    compiled = torch.compile(block, backend=backend, fullgraph=True)
    out = compiled(x)
    (grad_compiled,) = torch.autograd.grad(out.sum(), [x])
    forward_ops = {str(node.target) for node in graphs[0].graph.nodes}
    assert "f2n.rrdb.default" in forward_ops  # traced through the fake kernel, not decomposed
    assert "aten.convolution_backward.default" in {str(node.target) for node in graphs[1].graph.nodes}
    cpp_ext.use_fused_rrdb("off")
    ref = block(x)
    (grad_ref,) = torch.autograd.grad(ref.sum(), [x])
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_compiled, grad_ref, rtol=1e-4, atol=1e-5)


def _onnx_graph(net: torch.nn.Module, mode: str, monkeypatch) -> onnx.GraphProto:
    cpp_ext.use_fused_rrdb(mode)
    buffer = io.BytesIO()
    torch.onnx.export(net, (torch.rand(1, 3, 8, 8),), buffer, dynamo=False, do_constant_folding=False)
    return onnx.load_from_string(buffer.getvalue()).graph


def test_onnx_export_is_the_plain_graph(fused_ext, monkeypatch):
    net = RRDBNet(num_block=1, num_feat=8, num_grow_ch=4).eval()
    fused = _onnx_graph(net, "on", monkeypatch)
    plain = _onnx_graph(net, "off", monkeypatch)
    assert "Conv" in {n.op_type for n in fused.node}
    assert not [n for n in fused.node if n.domain not in ("", "ai.onnx")]
    assert fused.SerializeToString() == plain.SerializeToString()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_forward_and_gradients_match_plain(fused_ext, monkeypatch):
    from f2n.export.fp32_mode import ieee_fp32

    block = rrdb(16, 8).cuda()
    x = torch.randn(3, 16, 13, 9, device="cuda")
    with ieee_fp32():  # compare fp32 with fp32, not TF32
        plain = _grads(block, x, "off", monkeypatch)
        fused = _grads(block, x, "on", monkeypatch)
        for got, want in zip(fused, plain):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
        with torch.no_grad():
            torch.testing.assert_close(run(block, x, "on", monkeypatch), run(block, x, "off", monkeypatch))


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"))])
def test_channels_last_weights_and_input_give_the_nchw_result(fused_ext, monkeypatch, device):
    """The torch engine keeps CUDA weights channels_last; the fused op takes them (it works
    in NCHW and converts the weights once per call, see fused_rrdb)."""
    block = rrdb(16, 8).to(device)
    x = torch.randn(2, 16, 11, 7, device=device)
    with torch.no_grad():
        want = run(block, x, "on", monkeypatch)
        got = run(block.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last), "on", monkeypatch)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


# --- without the extension -------------------------------------------------------------


@pytest.fixture
def not_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process in which the extension was never loaded."""
    monkeypatch.setattr(build, "_loaded", {})


def test_auto_falls_back_to_plain_when_not_loaded(not_loaded, monkeypatch):
    block = rrdb(8, 4)
    x = torch.randn(1, 8, 5, 5)
    with torch.no_grad():
        auto = run(block, x, "auto", monkeypatch)
        plain = run(block, x, "off", monkeypatch)
    assert torch.equal(auto, plain)


def test_on_without_extension_says_how_to_build(not_loaded, monkeypatch):
    with pytest.raises(EngineUnavailableError, match="python -m f2n.cpp_ext build"):
        run(rrdb(8, 4), torch.randn(1, 8, 3, 3), "on", monkeypatch)


def test_autocast_takes_the_plain_block(fused_ext, monkeypatch):
    block = rrdb(8, 4)
    x = torch.randn(1, 8, 5, 5)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        fused = run(block, x, "on", monkeypatch)
        plain = run(block, x, "off", monkeypatch)
    assert torch.equal(fused, plain)  # the fused op would have convolved in float32


def test_unknown_mode_is_a_config_error(monkeypatch):
    with pytest.raises(ConfigError, match="'fast'.*auto, on, off"):
        run(rrdb(8, 4), torch.randn(1, 8, 3, 3), "fast", monkeypatch)


def test_load_without_build_finds_nothing_in_an_empty_cache(not_loaded, tmp_path):
    with pytest.raises(EngineUnavailableError, match="not built.*python -m f2n.cpp_ext build"):
        cpp_ext.load(build=False, build_dir=tmp_path, cuda=False)
    assert not cpp_ext.is_loaded()


def test_build_cli_without_compiler_prints_one_line(not_loaded, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("CXX", "f2n-no-such-compiler")
    code = cpp_ext_cli(["build", "--no-cuda", "--build-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == EngineUnavailableError.exit_code
    assert err.count("\n") == 1 and "f2n-no-such-compiler" in err
    assert not list(tmp_path.iterdir())


def test_cache_dir_is_keyed_by_torch_version_and_sources(monkeypatch, tmp_path):
    monkeypatch.setenv("F2N_HOME", str(tmp_path))
    cpu_dir = cpp_ext.default_build_dir(cuda=False)
    assert cpu_dir.parent == tmp_path / "cpp_ext"
    assert torch.__version__ in cpu_dir.name and "cpu" in cpu_dir.name
    assert cpu_dir != cpp_ext.default_build_dir(cuda=True)


def test_cuda_cache_dir_is_keyed_by_gpu_architecture(monkeypatch, tmp_path):
    """A library built for one GPU architecture has no kernels for another: the CUDA
    build folder names the architectures, from $TORCH_CUDA_ARCH_LIST or the visible GPUs."""
    monkeypatch.setenv("F2N_HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.0")
    ampere = cpp_ext.default_build_dir(cuda=True)
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "9.0")
    hopper = cpp_ext.default_build_dir(cuda=True)
    assert ampere != hopper and "sm80" in ampere.name and "sm90" in hopper.name
    assert build.cuda_arch_tag("9.0;8.0 8.6+PTX", []) == "sm80-86ptx-90"  # torch's separators, sorted, PTX kept apart
    assert build.cuda_arch_tag(None, [(8, 9), (8, 9)]) == "sm89"  # visible GPUs when the list is unset
    assert build.cuda_arch_tag("", []) == "sm-none"


def test_rrdbnet_takes_the_registered_op_and_reads_no_environment_per_call(monkeypatch):
    """The network knows no extension and no variable: the op registered from above decides."""
    from f2n.nets.rrdbnet import register_fused_rrdb

    class Zeros:  # a stand-in op whose output cannot come from the plain block
        def applies(self, x: torch.Tensor) -> bool:
            return True

        def __call__(self, x, weights, biases):
            return torch.zeros_like(x)

    block, x = rrdb(8, 4), torch.randn(1, 8, 5, 5)
    previous = register_fused_rrdb(Zeros())
    try:
        monkeypatch.setenv(cpp_ext.FUSED_ENV, "off")  # read by load() only, never per call
        with torch.no_grad():
            assert torch.equal(block(x), torch.zeros_like(x))
    finally:
        register_fused_rrdb(previous)
    with torch.no_grad():
        assert not torch.equal(block(x), torch.zeros_like(x))

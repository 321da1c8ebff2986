"""The FastSwish Triton kernels compiled ahead of time for real GPUs (A100: sm_80, H100: sm_90), with no GPU here.

`triton.compile` lowers each kernel to PTX and assembles a cubin (the ELF a GPU loads) on this CPU-only machine.
Compiled as a launch with 16-byte-aligned buffers and a length divisible by 16 would specialise them (what Triton
does for any tensor torch allocates), every kernel, dtype and architecture must read and write memory in 128-bit
vectors: `ld.global.v4.b32` / `st.global.v4.b32` (4 fp32 or 8 half-precision values per instruction), which is
what makes an elementwise kernel run at memory bandwidth.
"""

from __future__ import annotations

import re

import pytest

triton = pytest.importorskip("triton", reason="Triton is not installed (it comes with torch's Linux wheels)")
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from activations.fastswish import ALPHA  # noqa: E402
from activations.fastswish_triton import BLOCK, _backward_kernel, _forward_kernel  # noqa: E402

ARCHITECTURES = {"sm_80 (A100)": 80, "sm_90 (H100)": 90}
DTYPES = ("fp32", "fp16", "bf16")  # the kernels' KERNEL_DTYPES
ALIGNED = [["tt.divisibility", 16]]


def _compile(kernel: str, dtype: str, capability: int):
    fn, pointers = {"forward": (_forward_kernel, 2), "backward": (_backward_kernel, 3)}[kernel]
    names = list(fn.arg_names)
    signature = {name: f"*{dtype}" for name in names[:pointers]}
    signature |= {names[pointers]: "i32", "alpha": "constexpr", "BLOCK": "constexpr"}
    attrs = {(i,): ALIGNED for i in range(pointers + 1)}  # aligned pointers, n % 16 == 0
    source = ASTSource(fn=fn, signature=signature, constexprs={"alpha": ALPHA, "BLOCK": BLOCK}, attrs=attrs)
    return triton.compile(source, target=GPUTarget("cuda", capability, 32))


@pytest.fixture(autouse=True)
def _quiet_fp_fusion_notice(monkeypatch):
    monkeypatch.setenv("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9's default, stated so it stops warning


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", ["forward", "backward"])
def test_kernels_compile_to_cubin_with_128_bit_memory_access(kernel, dtype, arch):
    compiled = _compile(kernel, dtype, ARCHITECTURES[arch])
    cubin, ptx = compiled.asm["cubin"], compiled.asm["ptx"]
    assert cubin[:4] == b"\x7fELF" and len(cubin) > 1000
    assert f".target sm_{ARCHITECTURES[arch]}" in ptx
    loads = set(re.findall(r"ld\.global[.\w]*", ptx))
    stores = set(re.findall(r"st\.global[.\w]*", ptx))
    assert loads == {"ld.global.v4.b32"}, loads  # every load 128 bits wide, none scalar
    assert stores == {"st.global.v4.b32"}, stores


MLP_SHAPES = {"4-32-16-4 tanh, mse": ((4, 32, 16, 4), "tanh", "mse"),
              "12-24-16-10 gelu, cross-entropy": ((12, 24, 16, 10), "gelu", "cross_entropy")}  # fmt: skip


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
@pytest.mark.parametrize("shape", list(MLP_SHAPES))
def test_the_fused_mlp_step_compiles_to_cubin_in_ieee_fp32(shape, arch):
    """The whole MLP's forward and backward in one kernel, and the AdamW kernel, for A100 and H100: its dots stay
    IEEE fp32 (no TF32 conversion in the PTX), so the GPU step matches the CPU kernel and torch."""
    from speedlab.native import triton_mlp

    widths, activation, loss = MLP_SHAPES[shape]
    fn = triton_mlp._mlp_step_kernel
    names = list(fn.arg_names)
    signature = {name: "*fp32" for name in names[:15]}
    signature["y_ptr"] = "*fp32" if loss == "mse" else "*i64"
    signature["batch"] = "i32"
    constexprs = dict(zip(["F0", "H1", "H2", "F3"], widths, strict=True))
    constexprs |= dict(zip(["P0", "P1", "P2", "P3"], map(triton_mlp.padded, widths), strict=True))
    constexprs |= {"ACT": triton_mlp.ACTIVATIONS[activation], "LOSS": triton_mlp.LOSSES[loss],
                   "BLOCK": triton_mlp.BLOCK}  # fmt: skip
    signature |= dict.fromkeys(constexprs, "constexpr")
    source = ASTSource(fn=fn, signature=signature, constexprs=constexprs)
    compiled = triton.compile(source, target=GPUTarget("cuda", ARCHITECTURES[arch], 32))
    ptx = compiled.asm["ptx"]
    assert compiled.asm["cubin"][:4] == b"\x7fELF" and f".target sm_{ARCHITECTURES[arch]}" in ptx
    assert "tf32" not in ptx and "atom.global" in ptx  # IEEE fp32 products; gradients added atomically
    adam = triton_mlp._adamw_kernel
    names = list(adam.arg_names)
    signature = {name: "*fp32" for name in names[:6]} | {
        "n": "i32",
        "lr": "fp32",
        "beta1": "fp32",
        "beta2": "fp32",
        "eps": "fp32",
        "BLOCK": "constexpr",
    }
    adam_source = ASTSource(fn=adam, signature=signature, constexprs={"BLOCK": triton_mlp.ADAM_BLOCK})
    assert triton.compile(adam_source, target=GPUTarget("cuda", ARCHITECTURES[arch], 32)).asm["cubin"][:4] == (
        b"\x7fELF"
    )

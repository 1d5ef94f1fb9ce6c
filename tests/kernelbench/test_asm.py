"""The readers of compiled kernels behind the static check, on hand-written PTX, TTGIR and ptxas text
shaped like Triton 3.8's output for sm_90."""
import pytest

from refbench.kernelbench import asm as kernel_asm

PTXAS_LOG = """ptxas info    : Compiling entry function '_conv_gemm_kernel' for 'sm_90a'
ptxas info    : Function properties for _conv_gemm_kernel
    384 bytes stack frame, 392 bytes spill stores, 388 bytes spill loads
ptxas info    : Used 255 registers, used 1 barriers, 384 bytes cumulative stack size
"""

PTX = """
	@%p9 ld.global.b16 { %rs1 }, [ %rd19 + 0 ];
$L__BB0_3:                              // =>This Loop Header: Depth=1
	cp.async.cg.shared.global [ %r38 + 0 ], [ %rd6 + 0 ], 0x10, %r39;
	@%p1 ld.global.L1::evict_last.v2.b32 { %r1, %r2 }, [ %rd1 + 0 ];
	wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {...};
	@%p2 bra 	$L__BB0_3;
	@%p3 ld.global.v4.b32 { %r5, %r6, %r7, %r8 }, [ %rd9 + 0 ];
$L__BB0_9:
	bra.uni 	$L__BB0_3;
"""


def test_ptxas_resources():
    assert kernel_asm.ptxas_resources(PTXAS_LOG) == {"registers": 255, "stack_bytes": 384, "spill_bytes": 780}
    with pytest.raises(ValueError, match="no ptxas resource report"):
        kernel_asm.ptxas_resources("ptxas info    : 0 bytes gmem")


def test_global_loads_know_width_kind_and_loop():
    loads = kernel_asm.global_loads(PTX)
    assert [(load.bytes, load.in_loop, load.kind) for load in loads] == [
        (2, False, "ld"),  # before the loop
        (16, True, "cp.async"),
        (8, True, "ld"),
        # after the loop's own back edge, but inside the region of the later `bra.uni` back to it
        (16, True, "ld"),
    ]
    assert kernel_asm.load_widths(PTX) == {"widest_load_bytes": 16, "narrowest_main_load_bytes": 8,
                                           "async_copies": True}
    assert kernel_asm.uses_wgmma(PTX) and not kernel_asm.uses_wgmma(PTX.replace("wgmma", "mma"))


def test_without_a_loop_every_load_is_a_main_load():
    ptx = "\tld.global.v4.b32 { %r1, %r2, %r3, %r4 }, [ %rd1 + 0 ];\n\t@%p1 ld.global.b32 { %r5 }, [ %rd2 + 0 ];\n"
    assert kernel_asm.load_widths(ptx)["narrowest_main_load_bytes"] == 4
    assert kernel_asm.load_widths("ret;")["widest_load_bytes"] is None


def _ttgir(inner_wait: int, outer_drain: bool, nested: bool = True, copies: bool = True) -> str:
    copy = "      %a = ttg.async_copy_global_to_local %p, %q mask %m : tensor<128x32x!tt.ptr<bf16>> -> <>\n"
    body = (
        "      %w = ttg.async_wait %a {num = 2 : i32}\n"
        + (copy if copies else "      %a = tt.load %p : tensor<128x32x!tt.ptr<bf16>>\n")
        + "      %d = ttng.warp_group_dot %a, %b, %acc {inputPrecision = 0 : i32, isAsync = true} : x\n"
        + f"      %e:3 = ttng.warp_group_dot_wait %d, %a, %b {{pendings = {inner_wait} : i32}} : x\n"
        + "      scf.yield %e#0 : tensor<128x64xf32, #mma>\n"
    )
    inner = "    %acc2 = scf.for %c = %c0 to %I step %c32 iter_args(%acc = %x) -> (tensor<128x64xf32>) : i32 {\n" + \
        body + "    } loc(#loc1)\n"
    if not nested:
        return "  tt.func public @k() {\n" + inner + "  }\n"
    drain = "    %z:1 = ttng.warp_group_dot_wait %acc2 {pendings = 0 : i32} : x\n" if outer_drain else ""
    return ("  tt.func public @k() {\n"
            "  %o = scf.for %rs = %c0 to %n step %c1 iter_args(%acc0 = %x) -> (tensor<128x64xf32>) : i32 {\n"
            + inner + drain + "    scf.yield %acc2 : tensor<128x64xf32, #mma>\n  } loc(#loc2)\n  }\n")


@pytest.mark.parametrize("text, verdict", [
    (_ttgir(1, outer_drain=False, nested=False), "yes"),
    (_ttgir(1, outer_drain=True), "per outer step"),  # the loop over taps drains the channel loop
    (_ttgir(1, outer_drain=False), "yes"),
    (_ttgir(0, outer_drain=False, nested=False, copies=False), "no"),  # synchronous loads
    ("  tt.func public @k() {\n    %y = tt.load %p : tensor<128xf32>\n  }\n", "-"),
], ids=["one-loop", "per-tap-drain", "nested-no-drain", "synchronous", "no-dot"])
def test_pipelining(text, verdict):
    assert kernel_asm.pipelining(text) == verdict


def test_blocks_per_sm():
    # 128 threads at 168 registers: 168 * 32 = 5376 per warp, 21504 a block: three fit in 65536.
    assert kernel_asm.blocks_per_sm("sm_90", registers=168, shared_bytes=0, num_warps=4) == 3
    # 100 KB of shared memory (plus 1 KB reserved) a block: two fit in 228 KB.
    assert kernel_asm.blocks_per_sm("sm_90", registers=32, shared_bytes=100 * 1024, num_warps=4) == 2
    # 32 warps a block: two fit in 64 warps.
    assert kernel_asm.blocks_per_sm("sm_90", registers=16, shared_bytes=0, num_warps=32) == 2

"""GPU checks and latencies: golden outputs on CUDA (float32 and half dtypes, each scan
backend), the selective-scan vectors and gradients on CUDA, a chunk-size sweep of the chunked
scan, a block-size sweep of the Triton scan against mamba_ssm's and the chunked scan,
``mambairv2 bench`` latencies of light/base x4 at 256² and 512² (float32 and bf16 autocast) and
a training step (light x4, batch 32 × 64², bf16), each with the ``triton``, ``mamba_ssm`` (when
importable) and ``chunked`` scan backends in the same run.

Usage (on a CUDA machine)::

    python benchmarks/gpu_check.py --golden ../shared/golden --out gpu.json

Without a GPU, ``--only compile`` compiles the Triton scan kernels for sm_90 (H100/H200) with
Triton's own ptxas and records registers and spills::

    python benchmarks/gpu_check.py --golden ../shared/golden --out compile.json --only compile

Each part is guarded, so a failure is recorded in the JSON and the others still run.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, List

import torch

import mambairv2
from mambairv2.ops import implementation, mamba_ssm_available, selective_scan
from mambairv2.ops import scan_chunked, scan_triton

PARTS = ["compile", "golden", "grads", "sweep", "triton_sweep", "bench", "train"]
CASES = ["light_x2", "light_x3", "light_x4", "full_x2", "full_x3", "full_x4", "full_denoise",
         "full_jpeg_gray", "full_real_x4"]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def guarded(results: Dict[str, Any], key: str, fn: Callable[[], Any]) -> None:
    t0 = time.time()
    try:
        results[key] = fn()
    except Exception as exc:  # noqa: BLE001 - recorded, the other parts go on
        results[key] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
    print(f"[{time.time() - t0:6.1f} s] {key}: {json.dumps(results[key])[:600]}", flush=True)


def golden(folder: Path, backends: List[str]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for case in CASES:
        io = torch.load(folder / f"{case}_io.pt", weights_only=True)
        for dname, dtype in DTYPES.items():
            model = mambairv2.load_model(folder / f"{case}.pth", device="cuda", dtype=dtype)
            for backend in backends:
                errs = []
                for k in "ab":
                    with torch.no_grad(), implementation(selective_scan=backend):
                        y = model(io[f"input_{k}"].to("cuda", dtype))
                    errs.append((y.double().cpu() - io[f"output_{k}"]).abs().max().item())
                out[f"{case}/{dname}/{backend}"] = max(errs)
    return out


def scan_grads(backends: List[str]) -> Dict[str, Any]:
    """Forward and every gradient of each backend against the reference scan, on CUDA."""
    g = torch.Generator().manual_seed(0)
    b, d, n, L = 2, 8, 4, 300
    args = dict(u=torch.randn(b, d, L, generator=g), delta=torch.randn(b, d, L, generator=g),
                A=-torch.rand(d, n, generator=g) - 0.1, B=torch.randn(b, n, L, generator=g),
                C=torch.randn(b, n, L, generator=g), D=torch.randn(d, generator=g),
                delta_bias=torch.randn(d, generator=g))
    res = {}
    for dtype in (torch.float64, torch.float32):
        grads = {}
        for backend in ["reference"] + backends:
            if backend == "mamba_ssm" and dtype == torch.float64:
                continue
            ts = {k: v.to("cuda", dtype).requires_grad_() for k, v in args.items()}
            y = selective_scan(**ts, delta_softplus=True, backend=backend)
            (y * torch.linspace(-1, 1, L, device="cuda", dtype=dtype)).sum().backward()
            grads[backend] = (y.detach(), {k: v.grad for k, v in ts.items()})
        for backend in grads:
            if backend == "reference":
                continue
            yerr = (grads["reference"][0] - grads[backend][0]).abs().max().item()
            gerr = {k: (grads["reference"][1][k] - grads[backend][1][k]).abs().max().item() for k in args}
            res[f"{dtype}/{backend}"] = {"y_err": yerr, "grad_err": max(gerr.values()), "grad_errs": gerr}
    return res


def model_grads(backends: List[str]) -> Dict[str, Any]:
    """Whole light x4 model in train mode (seeded Gumbel routing), 32² input, float32: output and
    every parameter gradient of each backend against the chunked scan's."""
    model = mambairv2.create_model("light", scale=4).cuda().train()
    x = torch.rand(2, 3, 32, 32, device="cuda", generator=torch.Generator(device="cuda").manual_seed(0))
    runs = {}
    for backend in ["chunked"] + [b for b in backends if b != "chunked"]:
        model.zero_grad()
        torch.manual_seed(1)
        with implementation(selective_scan=backend):
            y = model(x)
            y.square().mean().backward()
        runs[backend] = (y.detach(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
    out = {}
    ref_y, ref_g = runs.pop("chunked")
    for backend, (y, grads) in runs.items():
        rel = {k: ((g - ref_g[k]).abs().max() / ref_g[k].abs().max().clamp_min(1e-30)).item() for k, g in grads.items()}
        out[backend] = {"y_err": (y - ref_y).abs().max().item(), "grad_rel_err_max": max(rel.values()),
                        "worst_param": max(rel, key=rel.get)}
    return out


def chunk_sweep(sizes=(256, 512), chunks=(8, 16, 32, 64, 128)) -> Dict[str, Any]:
    out = {}
    for size in sizes:
        model = mambairv2.create_model("light", scale=4).cuda().eval()
        x = torch.rand(1, 3, size, size, device="cuda")
        for T in chunks:
            scan_chunked.GPU_TOKENS_PER_STEP = max(1, (size * size) // T)
            with torch.no_grad(), implementation(selective_scan="chunked"):
                model(x)
                torch.cuda.synchronize()
                times = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    model(x)
                    torch.cuda.synchronize()
                    times.append(time.perf_counter() - t0)
            out[f"light_x4/{size}/T{T}"] = min(times)
    scan_chunked.GPU_TOKENS_PER_STEP = 8192
    return out


def _scan_args(batch: int, dim: int, n: int, length: int, dtype: torch.dtype) -> Dict[str, torch.Tensor]:
    """Random scan arguments laid out as the model passes them (u, Δ token-major, B/C slices of
    one projection); A, D and the bias float32 as under autocast."""
    g = torch.Generator(device="cuda").manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g, device="cuda")
    u = r(batch, length, dim).to(dtype).transpose(1, 2)
    delta = (r(batch, length, dim) - 4).to(dtype).transpose(1, 2)
    proj = r(batch, length, 2 * n).to(dtype)
    return dict(u=u, delta=delta, A=-torch.rand(dim, n, generator=g, device="cuda") * 8,
                B=proj[..., :n].transpose(1, 2), C=proj[..., n:].transpose(1, 2),
                D=r(dim), delta_bias=r(dim) * 0.1)


def _time(fn: Callable[[], Any], repeats: int = 5) -> float:
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


# scan shapes of the timed models: (batch, d_inner, d_state, L)
SCAN_SHAPES = {"light_x4_512": (1, 48, 8, 512 * 512), "base_x4_512": (1, 348, 16, 512 * 512),
               "light_x4_train_32x64": (32, 48, 8, 64 * 64)}
TRITON_SETTINGS = ("FORWARD_BLOCK_L", "FORWARD_ELEMENTS", "BACKWARD_BLOCK_L", "BACKWARD_ELEMENTS",
                   "NUM_WARPS", "TARGET_PROGRAMS", "MIN_SEGMENT")

# (BLOCK_L, ELEMENTS, NUM_WARPS) tried: a few, each compiles anew (seconds)
FORWARD_SWEEP = [(32, 2048, 4), (64, 1024, 4), (64, 2048, 4), (64, 4096, 8), (128, 4096, 8)]
BACKWARD_SWEEP = [(32, 1024, 4), (32, 2048, 4), (64, 2048, 4), (64, 4096, 8)]


def triton_sweep(backends: List[str]) -> Dict[str, Any]:
    """Scan-only latencies at the models' shapes (float32 and bf16 inputs): the Triton scan's
    forward over block sizes, warps and segment targets, its forward+backward over backward block
    sizes, and the other backends' for comparison. The settings are restored afterwards."""
    saved = {k: getattr(scan_triton, k) for k in TRITON_SETTINGS}
    out: Dict[str, Any] = {"defaults": saved}
    try:
        for shape_name, (batch, dim, n, length) in SCAN_SHAPES.items():
            train = "train" in shape_name
            for dname in ("float32", "bfloat16"):
                a = _scan_args(batch, dim, n, length, DTYPES[dname])
                key = f"{shape_name}/{dname}"

                def fwd(backend):
                    return lambda: selective_scan(**a, delta_softplus=True, backend=backend)

                def fwd_bwd(backend):
                    leaves = {k: v.detach().requires_grad_() for k, v in a.items()}
                    gy = torch.randn_like(leaves["u"])

                    def step():
                        y = selective_scan(**leaves, delta_softplus=True, backend=backend)
                        torch.autograd.backward(y, gy)
                    return step

                for backend in backends:
                    with torch.no_grad():
                        out[f"{key}/forward/{backend}"] = _time(fwd(backend))
                    if train:
                        out[f"{key}/forward_backward/{backend}"] = _time(fwd_bwd(backend))
                print(f"  {key}: " + ", ".join(f"{b} {out[f'{key}/forward/{b}'] * 1e3:.2f} ms" for b in backends),
                      flush=True)
                if "triton" not in backends or dname != "float32":
                    continue  # the block-size sweep in float32 only (each setting compiles anew)
                for block_l, elements, warps in FORWARD_SWEEP:
                    scan_triton.FORWARD_BLOCK_L, scan_triton.FORWARD_ELEMENTS = block_l, elements
                    scan_triton.NUM_WARPS = warps
                    with torch.no_grad():
                        out[f"{key}/forward/triton/L{block_l}_E{elements}_W{warps}"] = _time(fwd("triton"))
                for k, v in saved.items():
                    setattr(scan_triton, k, v)
                for target in (0, 256, 1024, 4096):
                    scan_triton.TARGET_PROGRAMS = target
                    with torch.no_grad():
                        out[f"{key}/forward/triton/target{target}"] = _time(fwd("triton"))
                scan_triton.TARGET_PROGRAMS = saved["TARGET_PROGRAMS"]
                if train:
                    for block_l, elements, warps in BACKWARD_SWEEP:
                        scan_triton.BACKWARD_BLOCK_L, scan_triton.BACKWARD_ELEMENTS = block_l, elements
                        scan_triton.NUM_WARPS = warps
                        out[f"{key}/forward_backward/triton/L{block_l}_E{elements}_W{warps}"] = _time(fwd_bwd("triton"))
                    for k, v in saved.items():
                        setattr(scan_triton, k, v)
    finally:
        for k, v in saved.items():
            setattr(scan_triton, k, v)
    return out


def compile_check(arch: int = 90) -> Dict[str, Any]:
    """Compiles the Triton scan kernels for ``sm_{arch}`` without a GPU (Triton's front end, its
    LLVM and its bundled ptxas) at the default block sizes for the light (N = 8) and base
    (N = 16) models, and records registers and spills from ``ptxas -v``."""
    import tempfile

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.backends.nvidia import compiler as nvidia
    from triton.compiler import ASTSource

    from mambairv2.ops import scan_triton_kernels as kernels

    bin_dir = Path(nvidia.__file__).parent / "bin"
    ptxas = next((p for p in (bin_dir / "ptxas-blackwell", bin_dir / "ptxas") if p.exists()), None)
    inputs = ("u_ptr", "delta_ptr", "B_ptr", "C_ptr", "y_ptr", "dy_ptr")
    out: Dict[str, Any] = {"triton": triton.__version__, "arch": f"sm_{arch}"}
    for fn, modes in ((kernels.scan_forward_kernel,
                       [dict(SAVE_STATES=False, HAS_INIT=False, LOCAL_END=True),
                        dict(SAVE_STATES=False, HAS_INIT=True, LOCAL_END=False),
                        dict(SAVE_STATES=True, HAS_INIT=True, LOCAL_END=False)]),
                      (kernels.scan_backward_kernel, [{}])):
        forward = fn is kernels.scan_forward_kernel
        for n in (8, 16):
            for in_type, fp64 in (("fp32", False), ("bf16", False), ("fp64", True)):
                for mode in modes:
                    blocks = scan_triton._blocks(48 if n == 8 else 348, n,
                                                 scan_triton.FORWARD_BLOCK_L if forward else scan_triton.BACKWARD_BLOCK_L,
                                                 scan_triton.FORWARD_ELEMENTS if forward else scan_triton.BACKWARD_ELEMENTS)
                    consts = dict(HAS_D=True, HAS_BIAS=True, SOFTPLUS=True, FP64=fp64, **mode, **blocks)
                    ct = "fp64" if fp64 else "fp32"
                    signature = {}
                    for param in fn.params:
                        if param.is_constexpr:
                            signature[param.name] = "constexpr"
                        elif param.name.endswith("_ptr"):
                            signature[param.name] = "*" + (in_type if param.name in inputs else ct)
                        else:
                            signature[param.name] = "i32"
                    names = list(signature)
                    src = ASTSource(fn=fn, signature=signature,
                                    constexprs={(names.index(k),): v for k, v in consts.items()})
                    key = f"{fn.__name__}/N{n}/{in_type}/" + ",".join(k for k, v in mode.items() if v)
                    t0 = time.time()
                    try:
                        compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32),
                                                  options={"num_warps": scan_triton.NUM_WARPS})
                    except Exception as exc:  # noqa: BLE001 - recorded
                        out[key] = {"error": f"{type(exc).__name__}: {exc}"[:1500]}
                        continue
                    row: Dict[str, Any] = {"compile_s": round(time.time() - t0, 1), "blocks": blocks}
                    if ptxas is not None:
                        with tempfile.TemporaryDirectory() as tmp:
                            ptx = Path(tmp) / "k.ptx"
                            ptx.write_text(compiled.asm["ptx"])
                            r = subprocess.run([str(ptxas), "-v", f"--gpu-name=sm_{arch}a", str(ptx),
                                                "-o", str(Path(tmp) / "k.cubin")],
                                               capture_output=True, text=True)
                        row["ptxas"] = " ".join(line.split(":", 1)[-1].strip() for line in r.stderr.splitlines()
                                                if "registers" in line or "spill" in line)
                    out[key] = row
                    print(f"  {key}: {row}", flush=True)
    return out


def bench(variant: str, size: int, dtype: str, backends: List[str], json_dir: Path,
          train: bool = False, batch: int = 1) -> Dict[str, Any]:
    """``mambairv2 bench`` of one configuration, the first backend timed and the others
    compared in the same run."""
    tag = "train" if train else "fwd"
    path = json_dir / f"bench_{tag}_{variant}_{size}_b{batch}_{dtype}_{'-'.join(backends)}.json"
    cmd = [sys.executable, "-m", "mambairv2", "bench", "--variant", variant, "--scale", "4", "--size",
           str(size), "--batch", str(batch), "--device", "cuda", "--dtype", dtype, "--backend", backends[0],
           "--warmup", "2", "--repeats", "5", "--json", str(path)]
    for other in backends[1:]:
        cmd += ["--compare", other]
    if train:
        cmd.append("--train")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        return {"error": proc.stderr[-1500:]}
    return json.loads(path.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--golden", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--skip", default="", help=f"comma-separated parts to skip, of {','.join(PARTS)}")
    ap.add_argument("--only", default="", help="comma-separated parts to run (default: all)")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    only = set(filter(None, args.only.split(","))) or set(PARTS)
    parts = [p for p in PARTS if p in only and p not in skip]
    cuda = torch.cuda.is_available()
    triton_reason = scan_triton.triton_unavailable_reason()
    res: Dict[str, Any] = {"torch": torch.__version__, "device": torch.cuda.get_device_name() if cuda else None,
                           "mamba_ssm": mamba_ssm_available(), "triton": triton_reason or "available",
                           "triton_settings": {k: getattr(scan_triton, k) for k in TRITON_SETTINGS},
                           "parts": parts}
    # timed backends: triton first (what `mambairv2 bench` reports), the others compared in the same run
    timed = (["triton"] if triton_reason is None else []) + (["mamba_ssm"] if res["mamba_ssm"] else []) + ["chunked"]
    print(json.dumps(res), flush=True)

    def save() -> None:
        args.out.write_text(json.dumps(res, indent=1))

    if "compile" in parts:
        guarded(res, "compile_sm90", compile_check)
        save()
    if not cuda:
        res["note"] = "no CUDA device: only the compile part can run"
        save()
        return
    if "golden" in parts:
        guarded(res, "golden", lambda: golden(args.golden, timed))
    if "grads" in parts:
        guarded(res, "scan_grads", lambda: scan_grads(timed))
        guarded(res, "model_grads", lambda: model_grads(timed))
    if "sweep" in parts:
        guarded(res, "chunk_sweep", chunk_sweep)
    save()
    if "triton_sweep" in parts:
        guarded(res, "triton_sweep", lambda: triton_sweep(timed))
        save()
    jd = args.out.parent
    if "bench" in parts:
        for variant in ("light", "base"):
            for size in (256, 512):
                for dtype in ("float32", "bfloat16"):
                    guarded(res, f"bench/{variant}/{size}/{dtype}",
                            lambda: bench(variant, size, dtype, timed, jd))
                    save()
    if "train" in parts:
        guarded(res, "train/light/64/b32/bfloat16",
                lambda: bench("light", 64, "bfloat16", timed, jd, train=True, batch=32))
        save()


if __name__ == "__main__":
    main()

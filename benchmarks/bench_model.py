"""Model throughput: inference and training step, images/s, against the eager fp32 NCHW baseline.

For each preset, image size and batch size: images/s of the plain eager float32 NCHW network
(the baseline) and of each optimisation measured beside it in the same run (channels_last,
inference_mode, bf16 autocast, torch.compile, thread count), their ratio to the baseline, the
GFLOP per image counted from the layer shapes, and the achieved GFLOP/s as a fraction of this
device's measured matrix-multiply rate. Cells whose estimated step time exceeds --max-step-s are
skipped and listed (the paper preset at 256 px on a 2-core CPU takes minutes per step).

    python benchmarks/bench_model.py                      # the full grid on the available device
    python benchmarks/bench_model.py --presets small --sizes 128 --batches 8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

from galseg.unet import build, preset_args


def conv_gflop_per_image(model: torch.nn.Module, size: int) -> float:
    """Forward GFLOP of one image, from the shapes of every convolution (2 FLOP per multiply-add)."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, torch.nn.ConvTranspose2d):
            h, w = inputs[0].shape[-2:]  # each input pixel scatters a k x k kernel
        else:
            h, w = output.shape[-2:]
        k = module.kernel_size[0] * module.kernel_size[1]
        total += 2 * module.in_channels * module.out_channels * k * h * w // module.groups

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)
    ]
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size, device=next(model.parameters()).device))
    for h in handles:
        h.remove()
    return total / 1e9


def matmul_gflops(device: torch.device, dtype: torch.dtype) -> float:
    """This device's dense matrix-multiply rate, GFLOP/s (the ceiling the nets are measured against)."""
    n = 4096 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    _sync(device)
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < 1.0:
        a @ b
        reps += 1
    _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(model, x, *, train: bool, autocast_dtype, no_grad_mode, seconds: float) -> float:
    """Images per second over at least ``seconds`` (and at least two timed steps) after warm-up."""
    device = x.device
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4) if train else None
    target = torch.zeros(x.shape[0], *x.shape[2:], dtype=torch.long, device=device)
    amp = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else nullcontext()

    def step():
        if train:
            with amp:
                loss = F.cross_entropy(model(x).float(), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        else:
            with no_grad_mode(), amp:
                model(x)

    model.train(train)
    step()
    _sync(device)
    steps, start = 0, time.perf_counter()
    while steps < 2 or time.perf_counter() - start < seconds:
        step()
        steps += 1
    _sync(device)
    return steps * x.shape[0] / (time.perf_counter() - start)


def variants(device: torch.device, compile_: bool, bf16_native: bool) -> dict[str, dict]:
    """The baseline and each optimisation, as (memory format, autocast dtype, grad mode, compile).

    bf16 is left out where this device's bf16 matmul is slower than its fp32 one (CPUs without
    bf16 instructions emulate it, 50x slower here): measuring it would only burn minutes.
    """
    base = {
        "channels_last": False,
        "autocast": None,
        "grad": torch.no_grad,
        "compile": False,
        "threads": None,
    }
    out = {
        "baseline fp32 NCHW": base,
        "channels_last": {**base, "channels_last": True},
        "inference_mode": {**base, "grad": torch.inference_mode},
    }
    if bf16_native:
        out["bf16 autocast"] = {**base, "autocast": torch.bfloat16}
        out["channels_last + bf16"] = {**base, "channels_last": True, "autocast": torch.bfloat16}
    if device.type == "cpu" and (os.cpu_count() or 1) > 1:
        out["1 thread"] = {**base, "threads": 1}
    if compile_:
        out["torch.compile"] = {**base, "compile": True}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="small,paper")
    parser.add_argument("--sizes", default="64,128,256")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per measurement")
    parser.add_argument(
        "--max-step-s", type=float, default=15.0, help="skip cells whose baseline step is slower"
    )
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile (slow to compile)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/bench_model.json"))
    args = parser.parse_args()

    device = torch.device(args.device)
    threads = torch.get_num_threads()
    peak = matmul_gflops(device, torch.float32)
    peak_bf16 = matmul_gflops(device, torch.bfloat16)
    print(
        f"device {device} ({platform.processor() or platform.machine()}, {threads} threads), torch "
        f"{torch.__version__}: matmul {peak:.0f} GFLOP/s fp32, {peak_bf16:.0f} GFLOP/s bf16"
    )
    rows, skipped = [], []
    for preset in args.presets.split(","):
        for size in map(int, args.sizes.split(",")):
            for batch in map(int, args.batches.split(",")):
                model = build(preset_args(preset)).to(device)
                gflop = conv_gflop_per_image(model, size)
                for mode in ("inference", "train"):
                    flop_per_image = gflop * (3 if mode == "train" else 1)
                    estimate = flop_per_image * batch / peak
                    if estimate > args.max_step_s:
                        skipped.append(
                            f"{preset} {size}px batch {batch} {mode} (~{estimate:.0f} s/step at peak)"
                        )
                        continue
                    base_rate = None
                    for name, v in variants(device, args.compile, peak_bf16 > peak).items():
                        if mode == "train" and v["grad"] is torch.inference_mode:
                            continue
                        net = build(preset_args(preset)).to(device)
                        if v["channels_last"]:
                            net = net.to(memory_format=torch.channels_last)
                        if v["compile"]:
                            net = torch.compile(net)
                        x = torch.rand(batch, 3, size, size, device=device)
                        if v["channels_last"]:
                            x = x.contiguous(memory_format=torch.channels_last)
                        if v["threads"]:
                            torch.set_num_threads(v["threads"])
                        try:
                            rate = measure(
                                net,
                                x,
                                train=mode == "train",
                                autocast_dtype=v["autocast"],
                                no_grad_mode=v["grad"],
                                seconds=args.seconds,
                            )
                        except RuntimeError as exc:  # e.g. bf16 kernels missing on an old CPU
                            print(f"  {preset} {size}px b{batch} {mode} {name}: failed ({str(exc)[:80]})")
                            continue
                        finally:
                            torch.set_num_threads(threads)
                        base_rate = base_rate or rate
                        ceiling = peak_bf16 if v["autocast"] else peak
                        row = {
                            "preset": preset,
                            "size": size,
                            "batch": batch,
                            "mode": mode,
                            "variant": name,
                            "images_per_s": rate,
                            "ratio_to_baseline": rate / base_rate,
                            "gflop_per_image": flop_per_image,
                            "gflop_per_s": rate * flop_per_image,
                            "fraction_of_matmul_peak": rate * flop_per_image / ceiling,
                        }
                        rows.append(row)
                        share = 100 * row["fraction_of_matmul_peak"]
                        print(
                            f"{preset:6s} {size:4d}px b{batch:<3d} {mode:9s} {name:22s} {rate:9.2f} img/s "
                            f"x{row['ratio_to_baseline']:5.2f}  {flop_per_image:7.2f} GFLOP/img "
                            f"{row['gflop_per_s']:8.1f} GFLOP/s ({share:.0f}% of matmul)",
                            flush=True,
                        )
    for line in skipped:
        print(f"skipped: {line}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "device": str(device),
                "threads": threads,
                "torch": torch.__version__,
                "matmul_gflops_fp32": peak,
                "matmul_gflops_bf16": peak_bf16,
                "rows": rows,
                "skipped": skipped,
            },
            indent=1,
        )
    )
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

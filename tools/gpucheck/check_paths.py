"""Check the GPU measurement paths on whatever device this machine has (a GPU, or a CPU to rehearse):

    python tools/gpucheck/check_paths.py [--device cuda|cpu] [--size tiny|small] [--archs 3] [--repeats 30]
                                         [--seq-len 128] [--no-ray] [--out DIR]

For a few archs of a random llama (``tiny``: the tests' model; ``small``: ~100M parameters, so that a GPU prefill is
not all launch overhead) and the largest arch: prefill latency (median and CV over the repeats; CUDA events on a
GPU), the memory footprint (exact weights, KV bytes per token, measured prefill peak) and energy per call and per
token through NVML; then, when Ray imports, the same archs measured as Ray tasks (``num_gpus=1`` each on CUDA) by the
code ``nasbench profile --engine ray`` runs. Prints one JSON object (also ``DIR/gpucheck.json`` with ``--out``): per
arch its values, and ``unavailable``: each meter that gave no value, with the reason it gave. Exit 0 when every path
ran (a meter without a value is a finding, not a failure); an exception ends it with a traceback.

Needs torch and transformers only (no DuckDB, lm-eval or data files), so it runs on a bare GPU machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # run as a file from the repository root, nasbench need not be installed

import torch  # noqa: E402

SIZES: dict[str, dict[str, Any]] = {
    "tiny": {},
    "small": dict(vocab_size=32000, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                  num_key_value_heads=4, head_dim=64, intermediate_size=2048, max_position_embeddings=1024),
}
GROUPS = ("latency", "memory", "energy")


def measure_in_process(space: Any, archs: list[dict[str, Any]], device: str, dtype: torch.dtype, seq_len: int,
                       repeats: int) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Per arch: latency (median, CV), memory parts, energy per call and token; and the meters that gave nothing."""
    from transformers import AutoModelForCausalLM

    from nasbench.profile.latency import measure_energy, measure_latency, memory_footprint
    from nasbench.space import arch_id
    from nasbench.supernet import Supernet

    supernet = Supernet(AutoModelForCausalLM.from_pretrained(space.model.hf, dtype=dtype), space)
    results, unavailable = [], {}
    for arch in archs:
        dense = supernet.extract(arch).to(device).eval()
        lat = measure_latency(dense, seq_len=seq_len, repeats=repeats)
        fp = memory_footprint(dense, seq_len=seq_len)
        ids = torch.randint(0, dense.config.vocab_size, (1, seq_len), generator=torch.Generator().manual_seed(0))
        ids = ids.to(device)
        with torch.inference_mode():
            energy = measure_energy(lambda: dense(input_ids=ids, use_cache=False), device)
        if fp.prefill_peak_mb is None:
            unavailable["memory prefill peak"] = fp.method
        if energy.joules is None:
            unavailable["energy"] = str(energy.reason)
        results.append({"arch_id": arch_id(arch), "params": space.params(arch), "flops_per_token":
                        space.flops(arch, seq_len), "latency_ms": lat.median_ms, "latency_cv": lat.cv,
                        "latency_iqr_ms": lat.iqr_ms, "timer": "cuda-events" if device.startswith("cuda")
                        else "perf_counter", "weights_mb": fp.weights_mb, "kv_bytes_per_token": fp.kv_bytes_per_token,
                        "prefill_peak_mb": fp.prefill_peak_mb, "memory_method": fp.method,
                        "energy_j_per_call": energy.joules, "energy_j_per_token":
                        None if energy.joules is None else energy.joules / seq_len, "energy_calls": energy.calls})
        del dense
    return results, unavailable


def measure_with_ray(space: Any, archs: list[dict[str, Any]], device: str, dtype: str, seq_len: int,
                     repeats: int) -> dict[str, Any]:
    """The same archs as Ray tasks (``profile_arch``, as ``--engine ray`` submits them): rows per arch, or why not."""
    try:
        import ray
    except ImportError:
        return {"skipped": "ray is not installed: pip install nasbench[ray]"}
    from contextlib import nullcontext

    from nasbench.profile import ProfileConfig
    from nasbench.profile.ray_engine import Job, local_cluster, profile_arch
    from nasbench.supernet import SupernetRef

    config = ProfileConfig(n=0, metrics=GROUPS, latency_seq_len=seq_len, latency_repeats=repeats, device=device,
                           dtype=dtype)
    job = Job(space, config, SupernetRef.pretrained(), None, frozenset(GROUPS), None, 1)  # the base model
    gpu = device.startswith("cuda")
    start = time.perf_counter()
    session = nullcontext() if ray.is_initialized() else local_cluster(
        num_gpus=torch.cuda.device_count() if gpu else 0)
    with session:
        task = ray.remote(profile_arch).options(num_cpus=1, num_gpus=1 if gpu else 0, max_retries=1)
        done = ray.get([task.remote(job, arch, [(g, "") for g in GROUPS]) for arch in archs])
    return {"tasks": len(done), "seconds": round(time.perf_counter() - start, 1), "software": done[0][1],
            "rows": [{r["metric"]: r["value"] for r in rows} for rows, _ in done],
            "reasons": sorted({r["extra"]["reason"] for rows, _ in done for r in rows
                               if r["value"] is None and r.get("extra", {}).get("reason")})}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", help="default: cuda where there is one, else cpu")
    p.add_argument("--size", choices=tuple(SIZES), default="tiny")
    p.add_argument("--archs", type=int, default=3, help="sampled archs (the largest is added)")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--no-ray", action="store_true", help="skip the Ray tasks")
    p.add_argument("--out", type=Path, help="also write DIR/gpucheck.json")
    args = p.parse_args(argv)
    from nasbench.models import tiny_space

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype_name = "bfloat16" if device.startswith("cuda") else "float32"
    start = time.perf_counter()
    space = tiny_space(Path(tempfile.mkdtemp(prefix="gpucheck-")), "llama", seed=0, **SIZES[args.size])
    archs = [*space.sample(args.archs, seed=0), space.largest()]
    results, unavailable = measure_in_process(space, archs, device, getattr(torch, dtype_name), args.seq_len,
                                              args.repeats)
    report: dict[str, Any] = {
        "device": device, "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
        "dtype": dtype_name, "size": args.size, "seq_len": args.seq_len, "repeats": args.repeats,
        "torch": torch.__version__, "archs": results,
        "latency_cv_max": max(r["latency_cv"] for r in results), "unavailable": unavailable}
    if not args.no_ray:
        report["ray"] = measure_with_ray(space, archs, device, dtype_name, args.seq_len, args.repeats)
    report["seconds"] = round(time.perf_counter() - start, 1)
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpucheck.json").write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

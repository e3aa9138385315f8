"""This machine: its measured matmul rate, ``--precision auto`` / ``--dtype auto`` (measure bf16 and fp32, pick), and
what it is (:func:`machine`: the CPU model and the flags that decide bf16 speed, recorded with every measurement and
training run).

CPUs differ by an order of magnitude here: with AMX or AVX-512 BF16, bf16 matmuls run 3-6x faster than fp32; on an
AVX2-only CPU they are emulated and run 10-100x slower. So the precision is measured, never assumed. The same rates
are the one denominator of every utilisation the benches print (``nasbench bench train``'s step, ``nasbench bench
profile``'s perplexity pass): achieved FLOP/s over :func:`matmul_rate` in the same dtype.
"""

from __future__ import annotations

import time
from functools import lru_cache

import torch

__all__ = ["matmul_rate", "resolve_precision", "machine", "BF16_MIN_SPEEDUP"]

#: ``auto`` picks bf16-mixed when its matmuls are at least this much faster than fp32 (autocast adds casts).
BF16_MIN_SPEEDUP = 1.5


@lru_cache(maxsize=None)
def matmul_rate(dtype: torch.dtype = torch.float32, device: str = "cpu", m: int = 2048, k: int = 576,
                n: int = 1536, seconds: float = 0.5, windows: int = 5) -> float:
    """Achieved GFLOP/s of ``[m, k] @ [k, n]`` in ``dtype`` (default: a SmolLM2 MLP projection over 2,048 tokens),
    the best of ``windows`` timed windows over about ``seconds`` after a warm-up; cached per process. The best, not
    the mean: a shared or throttling CPU's rate moves by 20% between runs, and a utilisation over the best rate is
    the conservative one."""
    a = torch.randn(m, k, device=device).to(dtype)
    b = torch.randn(k, n, device=device).to(dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(2):
        a @ b
    sync()
    best = 0.0
    for _ in range(windows):
        count, start = 0, time.perf_counter()
        while True:
            a @ b
            count += 1
            if count % 4 == 0:
                sync()
                elapsed = time.perf_counter() - start
                if elapsed >= seconds / windows:
                    break
        best = max(best, 2.0 * m * k * n * count / elapsed / 1e9)
    return best


def resolve_precision(precision: str, device: str = "cpu") -> str:
    """``precision`` itself, or for ``auto`` the faster of ``bf16-mixed`` and ``fp32`` on ``device``."""
    if precision != "auto":
        return precision
    fast = matmul_rate(torch.bfloat16, device) >= BF16_MIN_SPEEDUP * matmul_rate(torch.float32, device)
    return "bf16-mixed" if fast else "fp32"


def machine() -> dict[str, str]:
    """``cpu`` (model name), ``cpu_flags`` (of avx2, avx512f, avx512_bf16, amx_bf16, amx_tile), ``threads``."""
    model, flags = "unknown", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model == "unknown":
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    return {"cpu": model, "cpu_flags": ",".join(f for f in wanted if f in flags),
            "threads": str(torch.get_num_threads())}

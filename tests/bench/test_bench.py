"""The speed checks of ``nasbench bench``, called as library functions on a tiny random model (their verbs are
tested beside the stage each one measures)."""

from __future__ import annotations

import pytest
import torch

from nasbench.bench import bench_profile, bench_train
from nasbench.precision import matmul_rate


def test_bench_train_reports_throughput_against_the_measured_matmul_rate(tiny_with_data):
    space, _ = tiny_with_data
    result = bench_train(space, batch_size=2, seq_len=16, repeats=1, precision="fp32")
    assert result["tokens_per_s"] > 0 and result["matmul_gflop_s"] > 0 and result["ratio"] > 0
    assert 0 < result["utilization"] < 1.5 and result["teacher_s"] > 0  # kl: the frozen teacher runs
    assert result["step_s"] == pytest.approx(result["teacher_s"] + result["students_s"])
    plain = bench_train(space, kd="none", peft="full", batch_size=2, seq_len=16, repeats=1, precision="fp32",
                        dense=False)
    assert plain["teacher_s"] == 0 and "ratio" not in plain


def test_bench_profile_shares_its_matmul_rate_with_bench_train(tiny_with_data) -> None:
    """One denominator for every utilisation the benches print: ``nasbench.precision.matmul_rate`` in the dtype."""
    space, data = tiny_with_data
    result = bench_profile(space, ppl_tokens=64, seq_len=32, latency_seq_len=8, repeats=2, data_dir=data,
                           dtype=torch.float32, protocol_archs=0)
    assert result["matmul_gflop_s"] == matmul_rate(torch.float32)  # cached per process: the very same measurement
    expected = result["ppl_tokens_per_s"] * result["flops_per_token"] / (result["matmul_gflop_s"] * 1e9)
    assert result["flop_bound_fraction"] == pytest.approx(expected)
    assert result["archs_per_hour"] is None and 0 < result["flop_bound_fraction"] < 1.5

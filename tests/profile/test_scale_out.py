"""Scale-out without a cluster: the Ray flags' errors, the energy meter's stated reasons, the cost table from the
space's FLOPs, and the GPU check script rehearsed on CPU."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from nasbench.cli import main
from nasbench.errors import NasBenchError
from nasbench.profile import latency
from nasbench.profile.latency import measure_energy

REPO = Path(__file__).resolve().parents[2]


def test_ray_flags_need_engine_ray(capsys, tiny_with_data, tmp_path) -> None:
    space, data = tiny_with_data
    capsys.readouterr()
    for verb in (["profile", space.path, "--n", "0"], ["build", space.path, "--shards", str(tmp_path / "shards")]):
        base = [*verb, "--data-dir", str(data), "--db", str(tmp_path / "x.duckdb")]
        for extra, fragment in ((["--address", "auto"], "--address: needs --engine ray (got 'auto')"),
                                (["--cpus-per-task", "2"], "--cpus-per-task: needs --engine ray (got 2)"),
                                (["--engine", "ray", "--cpus-per-task", "0"], "--cpus-per-task: must be >= 1 (got 0)"),
                                (["--engine", "ray", "--device", "cuda:1"],
                                 "--device: with the ray engine every task")):
            assert main([*base, *extra]) == 2
            err = capsys.readouterr().err
            assert err.startswith("nasbench: error: ") and fragment in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x.duckdb").exists()  # refused before any work


def test_engine_ray_without_ray_installed_says_how_to_install(capsys, tiny_with_data, monkeypatch) -> None:
    space, data = tiny_with_data
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as without the extra
    for verb in (["profile", space.path, "--n", "0"], ["build", space.path, "--shards", str(data / "shards")]):
        code = main([*verb, "--engine", "ray", "--data-dir", str(data), "--db", str(data / "y.duckdb")])
        err = capsys.readouterr().err
        assert code == 2 and "pip install nasbench[ray]" in err and len(err.strip().splitlines()) == 1, err


def test_energy_off_cuda_is_a_stated_null() -> None:
    calls = []
    energy = measure_energy(lambda: calls.append(1), "cpu")
    assert energy.joules is None and "not a CUDA device (cpu)" in energy.reason and calls == []
    assert energy.extra(16) == {"meter": "nvml total energy", "reason": energy.reason}


def test_energy_without_the_nvml_library_names_nvml_error() -> None:
    pytest.importorskip("pynvml")
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the library is found")
    energy = measure_energy(lambda: None, "cuda")
    assert energy.joules is None and energy.reason.startswith("NVML unavailable: NVMLError"), energy.reason


class _FakeNVML(types.SimpleNamespace):
    """pynvml's surface: a counter in millijoules that grows by 250 mJ per read after the first."""

    class NVMLError(Exception):
        pass

    def __init__(self, supported: bool = True) -> None:
        super().__init__(reads=0, shutdowns=0, supported=supported)

    def nvmlInit(self) -> None:
        pass

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: object) -> int:
        if not self.supported:
            raise _FakeNVML.NVMLError("Not Supported")
        self.reads += 1
        return 1_000_000 + 250 * max(0, self.reads - 2)  # the support probe and the 'before' read see the same


def test_energy_per_call_from_the_counter_and_errors_not_swallowed(monkeypatch) -> None:
    fake = _FakeNVML()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setattr(latency, "_nvml_handle", lambda nvml, device: "handle")
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    calls = []
    energy = measure_energy(lambda: calls.append(1), "cuda", min_seconds=0.0)
    # warm-up + one timed call; the counter moved 250 mJ over the one timed call
    assert len(calls) == 2 and energy.calls == 1 and energy.joules == pytest.approx(0.25) and fake.shutdowns == 1
    assert energy.extra(128)["j_per_token"] == pytest.approx(0.25 / 128)
    unsupported = _FakeNVML(supported=False)
    monkeypatch.setitem(sys.modules, "pynvml", unsupported)
    energy = measure_energy(lambda: None, "cuda")
    assert energy.joules is None and "no energy counter on this GPU" in energy.reason and unsupported.shutdowns == 1

    def broken() -> None:
        raise RuntimeError("CUDA error: an illegal memory access")

    monkeypatch.setitem(sys.modules, "pynvml", _FakeNVML())
    with pytest.raises(RuntimeError, match="illegal memory access"):  # a bug is no missing meter
        measure_energy(broken, "cuda")


def test_cost_of_the_llama_8b_benchmark_follows_from_its_flops() -> None:
    from nasbench.pipeline.cost import CostAssumptions, cost_estimate, cost_table
    from nasbench.space import load_space

    space = load_space(REPO / "spaces" / "llama-3.1-8b.yaml")
    a = CostAssumptions(gpu="h100", train_mfu=0.4)
    est = cost_estimate(space, tokens=[30_000_000, 300_000_000], archs=2000, assumptions=a)
    largest = space.flops(space.largest(), 512)
    assert 7e9 < est["reference_params"] < 9e9 and est["train_flops_per_token_by_subnet"]["largest"] == largest
    f = est["train_flops_per_token_by_subnet"]
    students = f["largest"] + f["smallest"] + 2 * f["sampled_mean"]  # LoRA: 2F plus attention's second operand
    assert 2 * students + f["largest"] < est["train_flops_per_token"] < 2.1 * students + f["largest"]
    short, long = est["training"]
    assert long["gpu_hours"] == pytest.approx(10 * short["gpu_hours"])
    assert short["gpu_hours"] == pytest.approx(30e6 * est["train_flops_per_token"] / (989e12 * 0.4) / 3600)
    full = cost_estimate(space, tokens=[30_000_000], archs=2000, assumptions=CostAssumptions(peft="full"))
    assert full["training"][0]["gpu_hours"] > short["gpu_hours"]
    table = cost_table(est, [1, 8])
    assert "| supernet training, 30M tokens |" in table and "| profiling 2,000 archs |" in table
    assert "wall clock, 8 GPUs" in table and math.isfinite(est["profile"]["gpu_hours"])


def test_cost_cli_prints_the_table_and_checks_its_flags(capsys) -> None:
    space = str(REPO / "spaces" / "llama-3.1-8b.yaml")
    assert main(["cost", space, "--tokens", "30M,300M", "--gpus", "1,8", "--total", "2000"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| work | FLOPs | GPU-hours | wall clock, 1 GPU | wall clock, 8 GPUs |")
    assert main(["cost", space, "--format", "json", "--total", "2k"]) == 0
    assert json.loads(capsys.readouterr().out)["profile"]["archs"] == 2000
    for argv, fragment in ((["--tokens", "30X"], "--tokens: must be a count"), (["--train-mfu", "1.5"], "(0, 1]"),
                           (["--gpu", "tpu"], "--gpu: must be one of")):
        assert main(["cost", space, *argv]) == 2
        err = capsys.readouterr().err
        assert fragment in err and len(err.strip().splitlines()) == 1, err
    with pytest.raises(NasBenchError, match="whole count"):
        from nasbench.pipeline.cost import parse_count

        parse_count("0.5", "--total")


def test_gpu_check_script_runs_on_cpu_and_states_the_missing_meters(tmp_path) -> None:
    done = subprocess.run([sys.executable, str(REPO / "tools" / "gpucheck" / "check_paths.py"), "--device", "cpu",
                           "--archs", "2", "--repeats", "5", "--seq-len", "16", "--no-ray", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "gpucheck.json").read_text())
    assert report == json.loads(done.stdout)
    assert report["device"] == "cpu" and len(report["archs"]) == 3 and "ray" not in report
    for arch in report["archs"]:
        assert arch["latency_ms"] > 0 and arch["latency_cv"] >= 0 and arch["timer"] == "perf_counter"
        assert arch["weights_mb"] > 0 and arch["energy_j_per_token"] is None
    assert "not a CUDA device" in report["unavailable"]["energy"]

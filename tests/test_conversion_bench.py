"""A toy run of bench/conversion.py: every arm measured, goal lines printed, parity within 1e-4."""

from __future__ import annotations

import torch
from bench_loader import load_bench


def test_quick_run_measures_every_arm_and_prints_the_goals(tmp_path):
    before = torch.get_num_threads()
    try:
        out = load_bench("conversion").main(["--quick", "--json", str(tmp_path / "c.json")])
    finally:
        torch.set_num_threads(before)
    (result,) = out["results"]
    for arm in ("pytorch", "onnx", "int8-dynamic", "int8-static"):
        assert 0 <= result[arm]["accuracy"] <= 1 and result[arm]["size_bytes"] > 0
        assert result[arm]["latency_ms_b1"] > 0 and result[arm]["latency_ms_b16"] > 0
    assert result["parity_max_abs"] <= 1e-4 and out["goals"]["onnx_parity"]["met"]
    assert result["int8-dynamic"]["size_ratio_vs_onnx_fp32"] < 1 and len(result["paired"]["onnx"]) == 6
    assert out["table"].count("goal ") == 6 and (tmp_path / "c.json").is_file()

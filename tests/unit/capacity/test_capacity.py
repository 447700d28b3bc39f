"""`capacity` end to end in-process: the contract's arithmetic, policy choosing the option, monotonicity in the
rate, agreement with `plan`, multi-node and MoE replicas, and bad input."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from planner.app import capacity, plan
from planner.capacity.search import Load
from planner.errors import InputError
from planner.schemas import PlanRequest

ROOT = Path(__file__).resolve().parents[3]
PRICES = str(ROOT / "examples" / "site" / "prices.yaml")
POLICY = str(ROOT / "examples" / "site" / "capacity-policy.yaml")
LLAMA8 = "meta-llama/Llama-3.1-8B-Instruct"
THREE = ["H100", "L40S", "A100"]


def run(model: str = LLAMA8, rate: float = 20.0, gpus: list[str] | None = None, rules: list[str] | None = None,
        ttft: float | None = 2000.0, itl: float | None = 50.0, inp: int = 1000, out: int = 200,
        **pins: object) -> dict:
    tmpl = PlanRequest.model_validate({"model": model, "rules": rules or [], "pinned": pins})
    load = Load(rate=rate, input_len=inp, output_len=out, slo_ttft_ms=ttft, slo_itl_ms=itl, percentile=95)
    return capacity(tmpl, load, THREE if gpus is None else gpus)


@pytest.fixture(scope="module")
def unpriced() -> dict:
    return run()


@pytest.fixture(scope="module")
def priced() -> dict:
    return run(rules=[PRICES])


def test_contract_arithmetic(unpriced: dict) -> None:
    d = unpriced
    assert d["request"] == {"model": LLAMA8, "rate": 20.0, "input_len": 1000, "output_len": 200,
                            "slo": {"ttft_ms": 2000.0, "itl_ms": 50.0, "percentile": 95}}
    assert d["options"] and d["best"] == 0
    for o in d["options"]:
        assert o["replicas"] * o["gpus_per_replica"] == o["total_gpus"]
        per = o["per_replica"]
        assert per["rate"] * o["replicas"] == pytest.approx(20.0, rel=1e-3)  # the replicas carry the load
        assert per["rate"] < per["max_rate"] and per["utilization"] == pytest.approx(per["rate"] / per["max_rate"],
                                                                                   rel=1e-3)
        for k in ("ttft_ms", "itl_ms"):
            assert o[k]["low"] <= o[k]["expected"] <= o[k]["high"]
        band = per["max_rate_range"]  # the pack's calibrated throughput band: 0.595 .. 1.056 of expected (0.5.0)
        assert band["expected"] == per["max_rate"]
        assert band["low"] == pytest.approx(0.595 * per["max_rate"], rel=1e-3)
        assert band["high"] == pytest.approx(1.056 * per["max_rate"], rel=1e-3)
        slo_ok = o["ttft_ms"]["high"] <= 2000 and o["itl_ms"]["high"] <= 50
        at_risk = o["ttft_ms"]["expected"] <= 2000 and o["itl_ms"]["expected"] <= 50
        assert o["meets_slo"] == ("yes" if slo_ok else "at-risk" if at_risk else "no")
        assert o["config"]["tensor_parallel_size"] * o["config"]["pipeline_parallel_size"] * \
            o["config"]["data_parallel_size"] == o["gpus_per_replica"]
        assert o["serve_command"].startswith("vllm serve " + LLAMA8)
        assert o["cost_per_hour"] is None and o["cost_per_million_output_tokens"] is None
    assert any(o["pareto"] for o in d["options"])
    assert {w["code"] for w in d["warnings"]} >= {"W-CAPACITY-UNPRICED"}


def test_fewest_replicas_meeting_the_slo(unpriced: dict) -> None:
    """One replica fewer than reported would not meet the SLOs (checked by evaluating it again)."""
    from planner.capacity import search

    best = unpriced["options"][0]
    assert best["meets_slo"] == "yes"
    if best["replicas"] > 1:
        tmpl = PlanRequest.model_validate({"model": LLAMA8})
        load = Load(rate=20.0, input_len=1000, output_len=200, slo_ttft_ms=2000.0, slo_itl_ms=50.0, percentile=95)
        from planner.hardware.catalog import resolve_gpu
        from planner.models.sources import load_model
        from planner.policy.loader import load_packset

        shapes, _ = search.shapes_for_gpu(tmpl, resolve_gpu(best["catalog_id"]), load_packset(()),
                                          load_model(LLAMA8), load, 16)
        shape = next(s for s in shapes if s.key == best["key"])
        assert search.evaluate(shape, load, best["replicas"] - 1).meets_slo != "yes"


def test_unpriced_best_is_the_fewest_gpus_by_the_vendor_rule(unpriced: dict) -> None:
    best = unpriced["options"][0]
    meeting = [o for o in unpriced["options"] if o["meets_slo"] == "yes"]
    assert best["total_gpus"] == min(o["total_gpus"] for o in meeting)
    dec = unpriced["decisions"]["capacity_option"]
    assert dec["by"] == "cap.best.fewest-gpus-meeting-slo" and dec["value"].endswith(best["key"])


def test_prices_give_cost_and_the_cheapest_option(priced: dict) -> None:
    prices = {"h100-sxm-80gb": 2.99, "a100-sxm-80gb": 1.79, "l40s-48gb": 0.99}  # examples/site/prices.yaml
    for o in priced["options"]:
        hourly = prices[o["catalog_id"]] * o["total_gpus"]
        assert o["cost_per_hour"] == pytest.approx(hourly, rel=1e-6)
        tokens_per_hour = 20.0 * 200 * 3600
        assert o["cost_per_million_output_tokens"] == pytest.approx(hourly / tokens_per_hour * 1e6, rel=1e-3)
    best = priced["options"][0]
    meeting = [o for o in priced["options"] if o["meets_slo"] == "yes"]
    assert best["cost_per_hour"] == min(o["cost_per_hour"] for o in meeting)
    dec = priced["decisions"]["capacity_option"]
    assert dec["by"] == "cap.best.cheapest-meeting-slo"
    assert any(s["rule"] == "cap.best.fewest-gpus-meeting-slo" for s in dec["superseded"])


def test_a_price_change_moves_the_choice(tmp_path: Path, priced: dict) -> None:
    """H100 at $50/h: the cheapest option meeting the SLOs is no longer on H100."""
    pack = tmp_path / "dear-h100.yaml"
    pack.write_text("schema: 1\nname: dear\nversion: 1.0.0\nlayer: site\nparams:\n  gpu_hourly_price_usd:\n"
                    "    h100-sxm-80gb: 50.0\n    a100-sxm-80gb: 1.79\n    l40s-48gb: 0.99\n")
    before = priced["options"][0]["catalog_id"]
    after = run(rules=[str(pack)])["options"][0]
    assert before == "h100-sxm-80gb" and after["catalog_id"] != "h100-sxm-80gb"


def test_site_policy_prefers_forbids_and_caps() -> None:
    d = run(model="meta-llama/Llama-3.1-70B-Instruct", rate=4.0, gpus=["H100", "A100", "B200"], ttft=None,
            itl=80.0, rules=[PRICES, POLICY])
    assert all(o["catalog_id"] != "b200-180gb" for o in d["options"])
    assert any(x["key"].startswith("b200-180gb/") and x["reasons"][0].startswith("site.capacity.no-b200")
               for x in d["dropped"])
    assert all(o["gpus_per_replica"] <= 8 for o in d["options"])
    best = d["options"][0]
    assert best["catalog_id"] == "h100-sxm-80gb"
    assert d["decisions"]["capacity_option"]["by"] == "cap.best.preferred-meeting-slo"


def test_twice_the_rate_never_needs_fewer_gpus() -> None:
    for gpus in (["H100"], ["L40S"], THREE):
        prev_best, prev_by_key = 0, {}
        for rate in (2.0, 4.0, 8.0, 16.0, 32.0):
            d = run(rate=rate, gpus=gpus)
            by_key = {o["key"]: o["total_gpus"] for o in d["options"]}
            assert all(by_key[k] >= n for k, n in prev_by_key.items() if k in by_key), (gpus, rate)
            best = d["options"][0]["total_gpus"]
            assert best >= prev_best, (gpus, rate)
            prev_best, prev_by_key = best, by_key


def test_the_chosen_option_planned_at_its_concurrency_meets_the_itl_slo(unpriced: dict) -> None:
    best = unpriced["options"][0]
    cfg = best["config"]
    req = PlanRequest.model_validate({
        "model": LLAMA8, "gpu": best["catalog_id"], "gpus": best["gpus_per_replica"],
        "concurrency": max(1, math.ceil(best["per_replica"]["concurrency"])), "input_len": 1000, "output_len": 200,
        "pinned": {"tensor_parallel_size": cfg["tensor_parallel_size"],
                   "pipeline_parallel_size": cfg["pipeline_parallel_size"], "kv_cache_dtype": cfg["kv_cache_dtype"]}})
    p = plan(req)
    assert p.feasible
    assert p.performance.itl_ms.expected <= 50.0
    # plan's mean ITL never exceeds capacity's 95th-percentile ITL at the same load
    assert p.performance.itl_ms.expected <= best["itl_ms"]["expected"] * 1.05


def test_an_slo_nothing_meets_names_the_closest() -> None:
    d = run(itl=0.5)
    assert d["best"] is None
    assert all(o["meets_slo"] == "no" for o in d["options"])
    w = next(w for w in d["warnings"] if w["code"] == "W-CAPACITY-SLO")
    assert "closest" in w["message"]
    # the closest is the option whose expected ITL misses the 0.5 ms SLO by the least (TTFT has no SLO here)
    misses = [o["itl_ms"]["expected"] / 0.5 for o in d["options"]]
    assert misses[0] == pytest.approx(min(misses), rel=1e-4)


def test_multi_node_replicas_use_generate_launch_shapes() -> None:
    d = run(model="meta-llama/Llama-3.1-405B", rate=1.0, gpus=["H100"], ttft=None, itl=None)
    assert d["options"]
    o = d["options"][0]
    assert o["gpus_per_replica"] == 16 and o["nodes_per_replica"] == 2 and o["launch"]["multi_node"]
    assert "--pipeline-parallel-size 2" in o["serve_command"] or "--tensor-parallel-size 16" not in o["serve_command"]


def test_moe_replicas_keep_in_engine_data_and_expert_parallelism() -> None:
    d = run(model="Qwen/Qwen3-30B-A3B", rate=10.0, gpus=["H100"], ttft=None, itl=100.0)
    layouts = {(o["config"]["data_parallel_size"], o["config"]["enable_expert_parallel"]) for o in d["options"]}
    assert (1, False) in layouts and any(dp > 1 and ep for dp, ep in layouts)


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"rate": 0.0}, "--rate 0"),
    ({"rate": -3.0}, "--rate -3"),
    ({"ttft": -1.0}, "--slo-ttft-ms -1"),
    ({"itl": 0.0}, "--slo-itl-ms 0"),
    ({"gpus": ["H1000"]}, "unknown GPU 'H1000'"),
])
def test_bad_input_is_one_clear_error(kwargs: dict, needle: str) -> None:
    with pytest.raises(InputError, match=needle.replace("-", r"\-").replace("'", "'")):
        run(**kwargs)


def test_a_price_map_with_an_unknown_id_is_refused(tmp_path: Path) -> None:
    pack = tmp_path / "typo.yaml"
    pack.write_text("schema: 1\nname: typo\nversion: 1.0.0\nlayer: site\nparams:\n  gpu_hourly_price_usd:\n"
                    "    h100-sxm: 2.5\n")
    with pytest.raises(InputError, match=r"gpu_hourly_price_usd \(set by pack typo\): unknown GPU id 'h100-sxm'"):
        run(rules=[str(pack)])


def test_fp8_weights_are_searched_only_when_the_site_opts_in(tmp_path: Path) -> None:
    plain = run(model="meta-llama/Llama-3.1-70B-Instruct", rate=5.0, gpus=["H100"], ttft=None, itl=60.0)
    assert all(o["config"]["quantization"] is None for o in plain["options"])
    pack = tmp_path / "fp8.yaml"
    pack.write_text("schema: 1\nname: fp8ok\nversion: 1.0.0\nlayer: site\n"
                    "params:\n  capacity_search_fp8_weights: true\n")
    both = run(model="meta-llama/Llama-3.1-70B-Instruct", rate=5.0, gpus=["H100"], ttft=None, itl=60.0,
               rules=[str(pack)])
    fp8 = [o for o in both["options"] if o["config"]["quantization"] == "fp8"]
    assert fp8 and all(o["key"].endswith("/fp8") and "--quantization fp8" in o["serve_command"] for o in fp8)
    # 70B in FP8 is ~70 GB of weights instead of ~140 GB: its fewest GPUs never exceed the bf16 ones
    assert min(o["total_gpus"] for o in fp8) <= min(o["total_gpus"] for o in plain["options"])

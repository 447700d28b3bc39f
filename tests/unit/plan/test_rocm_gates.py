"""What vLLM refuses on AMD GPUs (ROCm), version by version, through `vllm-planner plan --gpu MI300X ...`.

Each expectation was read from the vLLM release wheels (0.6.4 to 0.34.0) and is cited next to the test:

* `vllm/platforms/rocm.py` `RocmPlatform.supported_quantization`, checked by `Platform.verify_quantization`
  (`vllm/platforms/interface.py`): a method outside it stops start-up with
  "<method> quantization is currently not supported in rocm" (vLLM 0.6.4: `vllm/config.py`
  `rocm_supported_quantization`, "... not supported in ROCm.").
* FP8 GEMMs on ROCm need gfx942/gfx950: `fp8.py`/`fbgemm_fp8.py` never use Marlin on ROCm, the ROCm FP8
  scaled-mm kernels need MI3xx, and `torch._scaled_mm` raises "only supported on ... ROCm MI300+".
* The KV cache: the HIP cache kernels' ROCm build dispatches only fp8/fp8_e4m3
  (`csrc/quantization/fp8/amd/quant_utils.cuh` `DISPATCH_BY_KV_CACHE_DTYPE`: "Unsupported data type of kv cache").
* Capability: `RocmPlatform.get_device_capability()` is the gfx target's (major, minor): gfx90a 9.0, gfx942 9.4,
  gfx950 9.5 (`_capability_from_gcn_arch`), which is what vLLM's `get_min_capability()` checks compare.

Exit codes: 0 a plan that fits, 3 a plan vLLM would refuse (the reason names the gate and quotes vLLM).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.clirun import run

ROOT = Path(__file__).resolve().parents[3]
LLAMA8 = "meta-llama/Llama-3.1-8B-Instruct"
MODELOPT_FP8 = "nvidia/Llama-3.1-70B-Instruct-FP8"  # hf_quant_config.json quant_algo FP8 -> vLLM's "modelopt"
NVFP4 = "nvidia/Qwen3-235B-A22B-NVFP4"  # quant_algo NVFP4 -> vLLM's "modelopt_fp4"
BLOCK_FP8 = "Qwen/Qwen3-30B-A3B-FP8"  # quant_method fp8, weight_block_size [128, 128]


def plan_json(*args: str, code: int = 0) -> dict:
    rc, out, err = run("plan", *args, "--json")
    assert rc == code, err or out[:2000]
    return json.loads(out)


def refused(p: dict, rule: str, *quotes: str) -> None:
    """The plan is infeasible because the gate `rule` refused it, and the reason quotes vLLM."""
    assert not p["feasible"]
    reason = p["infeasible_reason"] or ""
    assert rule in reason, reason
    for q in quotes:
        assert q in reason, reason
    assert p["serve_command"].startswith("# nothing to run")


def fired(p: dict) -> set[str]:
    return {f["rule"] for f in p["audit"]["firings"]}


def checkpoint(tmp_path: Path, quantization_config: dict, name: str = "ckpt") -> str:
    """A Llama-3.1-8B-shaped checkpoint directory whose config.json carries `quantization_config`."""
    cfg = json.loads((ROOT / "planner/models/catalog/meta-llama/Llama-3.1-8B-Instruct/config.json").read_text())
    cfg["quantization_config"] = quantization_config
    d = tmp_path / name
    d.mkdir()
    (d / "config.json").write_text(json.dumps(cfg))
    return str(d)


SITE_BYTES = """\
schema: 1
name: test-rocm-bytes
version: 1.0.0
layer: site
rules:
  - id: site.test.int8-bytes
    description: Test only - size these methods like int8 so the plan reaches the launch gates.
    stage: baseline
    when:
      model: {fact: model, quantization: {in: [experts_int8, inc, torchao, gguf]}}
    then:
      - set: linear_bytes_per_param
        value: {param: wbytes_int8}
"""


@pytest.fixture()
def site_bytes(tmp_path: Path) -> str:
    p = tmp_path / "site-bytes.yaml"
    p.write_text(SITE_BYTES)
    return str(p)


# ---------------------------------------------------------------- catalog facts the gates match on


def test_amd_gpus_carry_their_gfx_target_and_rocm_capability() -> None:
    """The gpu fact of an MI300X plan: gfx942 and capability 9.4 (vLLM: gfx942 -> (9, 4)), not CUDA's 8.0 fallback."""
    from planner.machine import resolve_hardware
    from planner.plan.context import gpu_fact
    from planner.schemas import PlanRequest

    for gpu, gfx, cc in (("MI250X", "gfx90a", 9.0), ("MI300X", "gfx942", 9.4), ("MI325X", "gfx942", 9.4),
                         ("MI355X", "gfx950", 9.5)):
        fact = gpu_fact(resolve_hardware(PlanRequest(model=LLAMA8, gpu=gpu)))
        assert (fact["vendor"], fact["gfx_arch"], fact["compute_capability"]) == ("amd", gfx, cc)
    assert "gfx_arch" not in gpu_fact(resolve_hardware(PlanRequest(model=LLAMA8, gpu="H100")))
    p = plan_json("--model", LLAMA8, "--gpu", "MI300X")
    assert p["feasible"] and p["config"]["quantization"] is None and p["config"]["dtype"] == "bfloat16"
    assert p["audit"]["params"]["fp8_weights_min_capability"] == {
        "value": 9.4, "set_by": "rule:baseline.rocm.fp8-weights-min-capability"}
    h100 = plan_json("--model", LLAMA8, "--gpu", "H100")
    assert "baseline.rocm.fp8-weights-min-capability" not in fired(h100)


# ---------------------------------------------------------------- quantization methods vLLM refuses on ROCm


def test_method_never_on_rocms_list_is_refused(tmp_path: Path, site_bytes: str) -> None:
    """experts_int8 is in QUANTIZATION_METHODS of every release but never in RocmPlatform.supported_quantization."""
    ckpt = checkpoint(tmp_path, {"quant_method": "experts_int8"})
    p = plan_json("--model", ckpt, "--gpu", "MI300X", "--rules", site_bytes, code=3)
    refused(p, "gate.rocm.quant.unsupported", "'experts_int8 quantization is currently not supported in rocm'")
    ok = plan_json("--model", ckpt, "--gpu", "H100", "--rules", site_bytes)  # CUDA lists it
    assert ok["feasible"]


@pytest.mark.parametrize(("version", "code"), [("0.20.0", 3), ("0.21.0", 0)])
def test_modelopt_fp8_needs_vllm_0_21_on_rocm(version: str, code: int) -> None:
    """'modelopt' joins RocmPlatform.supported_quantization in 0.21.0 (absent in 0.20.0)."""
    p = plan_json("--model", MODELOPT_FP8, "--gpu", "MI300X", "--vllm-version", version, code=code)
    if code:
        refused(p, "gate.rocm.quant.unsupported.before-0-21",
                "'modelopt quantization is currently not supported in rocm'")
    else:
        assert p["feasible"] and p["config"]["quantization"] == "modelopt"


@pytest.mark.parametrize(("version", "code"), [("0.19.0", 3), ("0.20.0", 0)])
def test_nvfp4_needs_vllm_0_20_on_rocm(version: str, code: int) -> None:
    """'modelopt_fp4' joins ROCm's list in 0.20.0; 0.10.2-0.19 list petit_nvfp4, but the modelopt_fp4 override is
    probed first (config/model.py overrides order), so the checkpoint still resolves to modelopt_fp4."""
    p = plan_json("--model", NVFP4, "--gpu", "MI300X", "--vllm-version", version, code=code)
    if code:
        refused(p, "gate.rocm.quant.modelopt-fp4.before-0-20",
                "'modelopt_fp4 quantization is currently not supported in rocm'")
    else:
        assert p["feasible"]


def test_nvfp4_on_mi355x_is_emulated() -> None:
    """gfx950 has FP4 matrix cores, but vLLM's only ROCm NVFP4 linear kernel is EmulationNvFp4LinearKernel
    (dequantize to BF16): the speed model uses the BF16 peak, not FP4."""
    p = plan_json("--model", NVFP4, "--gpu", "MI355X")
    assert p["feasible"]
    assert p["audit"]["params"]["compute_dtype"] == {"value": "bf16", "set_by": "rule:baseline.rocm.nvfp4-emulated"}
    b200 = plan_json("--model", NVFP4, "--gpu", "B200")
    assert b200["audit"]["params"]["compute_dtype"]["value"] == "fp4"


@pytest.mark.parametrize(("version", "code"), [("0.11.0", 3), ("0.20.0", 0), ("0.25.0", 3)])
def test_gptq_marlin_name_on_rocm(tmp_path: Path, version: str, code: int) -> None:
    """'gptq_marlin' is on ROCm's list from 0.14.0 to 0.24.0 only."""
    ckpt = checkpoint(tmp_path, {"quant_method": "gptq_marlin", "bits": 4, "group_size": 128, "sym": True})
    p = plan_json("--model", ckpt, "--gpu", "MI300X", "--vllm-version", version, code=code)
    if version == "0.11.0":
        refused(p, "gate.rocm.quant.marlin-names.before-0-14",
                "'gptq_marlin quantization is currently not supported in rocm'")
    elif code:
        refused(p, "gate.rocm.quant.gptq-marlin", "'gptq_marlin quantization is currently not supported in rocm'")
    else:
        assert p["feasible"]


def test_awq_marlin_name_needs_vllm_0_14_on_rocm(tmp_path: Path) -> None:
    ckpt = checkpoint(tmp_path, {"quant_method": "awq_marlin", "bits": 4, "group_size": 128, "zero_point": True})
    old = plan_json("--model", ckpt, "--gpu", "MI300X", "--vllm-version", "0.11.0", code=3)
    refused(old, "gate.rocm.quant.marlin-names.before-0-14",
            "'awq_marlin quantization is currently not supported in rocm'")
    assert plan_json("--model", ckpt, "--gpu", "MI300X", "--vllm-version", "0.15.0")["feasible"]


def test_plain_awq_and_gptq_plan_on_rocm(tmp_path: Path) -> None:
    """AWQ/GPTQ checkpoints stay awq/gptq on ROCm (the Marlin overrides need CUDA) and both are listed."""
    awq = checkpoint(tmp_path, {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True}, "awq")
    gptq = checkpoint(tmp_path, {"quant_method": "gptq", "bits": 4, "group_size": 128, "sym": True}, "gptq")
    for ckpt in (awq, gptq):
        for version in ("0.6.4", "0.11.0", "0.33.0"):
            assert plan_json("--model", ckpt, "--gpu", "MI300X", "--vllm-version", version)["feasible"]


@pytest.mark.parametrize(("version", "rule"), [
    ("0.11.0", "gate.rocm.quant.bitsandbytes.before-0-12"),       # not listed before 0.12
    ("0.15.0", "gate.rocm.quant.bitsandbytes-gfx9.before-0-17"),  # 0.12-0.16: only `if not on_gfx9()`
    ("0.19.0", None),                                             # listed unconditionally from 0.17
])
def test_bitsandbytes_on_rocm(tmp_path: Path, version: str, rule: str | None) -> None:
    ckpt = checkpoint(tmp_path, {"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"})
    p = plan_json("--model", ckpt, "--gpu", "MI300X", "--vllm-version", version, code=3 if rule else 0)
    if rule:
        refused(p, rule, "'bitsandbytes quantization is currently not supported in rocm'")
    else:
        assert p["feasible"] and p["config"]["quantization"] == "bitsandbytes"


@pytest.mark.parametrize(("method", "version", "code", "rule"), [
    ("inc", "0.25.0", 3, "gate.rocm.quant.inc.before-0-28"),  # 'inc' listed from 0.28.0
    ("inc", "0.29.0", 0, None),
    ("torchao", "0.8.5", 3, "gate.rocm.quant.torchao.before-0-10-2"),  # 'torchao' listed from 0.10.2
    ("torchao", "0.11.0", 0, None),
    ("gguf", "0.6.4", 3, "gate.rocm.quant.gguf-0-6-4"),  # 0.6.4's rocm_supported_quantization lacks it
    ("gguf", "0.11.0", 0, None),
])
def test_version_gated_methods(tmp_path: Path, site_bytes: str, method: str, version: str, code: int,
                               rule: str | None) -> None:
    ckpt = checkpoint(tmp_path, {"quant_method": method})
    p = plan_json("--model", ckpt, "--gpu", "MI300X", "--vllm-version", version, "--rules", site_bytes, code=code)
    if rule:
        refused(p, rule, f"'{method} quantization is currently not supported in",
                "ROCm." if version == "0.6.4" else "rocm'")
    else:
        assert p["feasible"]


# ---------------------------------------------------------------- FP8 needs gfx942/gfx950


def test_fbgemm_fp8_needs_fp8_gemms(tmp_path: Path) -> None:
    """fbgemm FP8 (per-channel weights, per-token activations): no FP8 GEMM on gfx90a, fine on gfx942."""
    ckpt = checkpoint(tmp_path, {"quant_method": "fbgemm_fp8"})
    p = plan_json("--model", ckpt, "--gpu", "MI250X", code=3)
    refused(p, "gate.rocm.fp8-gemm-needs-gfx942", "gfx90a", "ROCm MI300+")
    assert plan_json("--model", ckpt, "--gpu", "MI300X")["feasible"]


def test_block_fp8_on_mi250x_plans_with_a_warning() -> None:
    """A block-quantized FP8 checkpoint loads on gfx90a through the Triton block-FP8 kernel (slow), so the plan
    stands but warns; on MI300X there is nothing to say."""
    p = plan_json("--model", BLOCK_FP8, "--gpu", "MI250X", "--gpus", "2")
    assert p["feasible"]
    assert "W-ROCM-FP8-NO-FP8-GEMM" in {w["code"] for w in p["warnings"]}
    mi300 = plan_json("--model", BLOCK_FP8, "--gpu", "MI300X")
    assert "W-ROCM-FP8-NO-FP8-GEMM" not in {w["code"] for w in mi300["warnings"]}


def test_no_fp8_weight_fix_offered_below_gfx942() -> None:
    """Llama-3.3-70B in BF16 does not fit one MI250X GCD (64 GiB): the fixes offer a 4-bit checkpoint, not online
    FP8 (which would reach torch._scaled_mm and fail on gfx90a)."""
    p = plan_json("--model", "meta-llama/Llama-3.3-70B-Instruct", "--gpu", "MI250X", code=3)
    flags = " ".join(f["flags"] for f in p["fixes"])
    assert "--quantization fp8" not in flags
    assert any("4-bit" in f["change"] for f in p["fixes"])


# ---------------------------------------------------------------- KV cache dtypes


@pytest.mark.parametrize(("version", "code", "rule"), [
    ("0.33.0", 3, "gate.rocm.kv-fp8-e5m2"),             # ROCM_ATTN first from 0.19: HIP reshape_and_cache
    ("0.8.5", 3, "gate.rocm.kv-fp8-e5m2.before-0-11"),  # V0 ROCmFlashAttention / V1 triton_attn: HIP writers
    ("0.15.0", 0, None),  # 0.11-0.18: TRITON_ATTN views the cache as fp8_dtype() (e4m3fnuz): starts, stored e4m3
])
def test_fp8_e5m2_kv_cache_on_rocm(version: str, code: int, rule: str | None) -> None:
    p = plan_json("--model", LLAMA8, "--gpu", "MI300X", "--kv-cache-dtype", "fp8_e5m2", "--vllm-version", version,
                  code=code)
    if rule:
        refused(p, rule, "'Unsupported data type of kv cache: fp8_e5m2'")
    else:
        assert p["feasible"] and p["config"]["kv_cache_dtype"] == "fp8_e5m2"


def test_fp8_kv_cache_plans_on_mi300x() -> None:
    """--kv-cache-dtype fp8 (e4m3; stored as float8_e4m3fnuz on gfx94x, RocmPlatform.fp8_dtype()) is accepted,
    one byte per element like on CUDA; on an H100 fp8_e5m2 is fine too."""
    p = plan_json("--model", LLAMA8, "--gpu", "MI300X", "--kv-cache-dtype", "fp8")
    auto = plan_json("--model", LLAMA8, "--gpu", "MI300X")
    assert p["feasible"] and p["memory"]["kv_cache_tokens"] > 1.9 * auto["memory"]["kv_cache_tokens"]
    assert plan_json("--model", LLAMA8, "--gpu", "H100", "--kv-cache-dtype", "fp8_e5m2")["feasible"]


# ---------------------------------------------------------------- names rocm-smi / amd-smi print


@pytest.mark.parametrize(("name", "catalog_id"), [
    ("AMD Instinct MI300X", "mi300x"),
    ("AMD Instinct MI300X OAM", "mi300x"),   # rocm-smi --showproductname "Card series"
    ("MI300X-O", "mi300x"),                  # amd-smi static MARKET_NAME
    ("AMD Instinct MI355X", "mi355x"),
    ("MI355X", "mi355x"),
    ("AMD Instinct MI250X/MI250", "mi250x-gcd"),
    ("AMD INSTINCT MI200 (MCM) OAM LC MBA HPE C2", "mi250x-gcd"),  # rocm-smi on HPE MI250X nodes
])
def test_rocm_smi_names_plan(name: str, catalog_id: str) -> None:
    p = plan_json("--model", LLAMA8, "--gpu", name)
    assert p["hardware"]["catalog_id"] == catalog_id and p["hardware"]["vendor"] == "amd"
    assert p["feasible"]

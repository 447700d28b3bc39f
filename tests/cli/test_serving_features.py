"""Serving features end to end (issue 19): each flag changes the plan's memory and speed the way vLLM does, bad
combinations are one-line errors, and every generated command passes vLLM's own parser for its version.

Memory figures are hand calculations from vLLM's code (the per-feature unit tests in tests/unit/features spell out
each term); speed is checked for direction and monotonicity, which physics fixes, not for a fitted value."""

from __future__ import annotations

import itertools
import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from tests.clirun import one_error_line, run
from tests.vllm_parser import assert_vllm_accepts

LLAMA = ("--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "h100-sxm-80gb")
EAGLE3 = str(Path(__file__).resolve().parents[1] / "data" / "speculative" / "eagle3-llama3.1-8b")
GiB = 1 << 30


def plan(*args: str) -> dict[str, Any]:
    rc, out, err = run("plan", *args, "--json")
    assert rc in (0, 3), err
    return json.loads(out)


def test_lora_slots_are_weights_on_the_gpu_as_vllm_allocates_them() -> None:
    # vLLM 0.33 create_lora_weights: one lora_a per slice of a merged module, lora_b per slice, per slot, in the
    # model dtype (bf16 = 2 B). Llama-3.1-8B, rank r per layer:
    #   qkv_proj:  3 x (r x 4096)  +  (4096 + 1024 + 1024) x r  = 18,432 r
    #   o_proj:    r x 4096  +  4096 x r                         =  8,192 r
    #   gate_up:   2 x (r x 4096)  +  (14336 + 14336) x r        = 36,864 r
    #   down_proj: r x 14336  +  4096 x r                        = 18,432 r      -> 81,920 r per layer
    # embed_tokens and lm_head (wrapped by default for Llama): (128,256 + 4,096) x r each, not split over TP.
    # The 69,632 per layer (1.06 GiB) counts one lora_a per merged module, which vLLM does not do.
    slots, rank = 4, 64
    hand = (32 * 81_920 + 2 * (128_256 + 4_096)) * rank * slots * 2
    assert hand == 1_477_705_728
    base = plan(*LLAMA)
    lora = plan(*LLAMA, "--enable-lora", "--max-loras", str(slots), "--max-lora-rank", str(rank))
    assert lora["memory"]["per_gpu"]["weights_bytes"] - base["memory"]["per_gpu"]["weights_bytes"] == hand
    assert lora["memory"]["per_gpu"]["kv_cache_bytes"] < base["memory"]["per_gpu"]["kv_cache_bytes"] - hand + 1
    assert lora["performance"]["itl_ms"]["expected"] > base["performance"]["itl_ms"]["expected"]
    assert "--enable-lora --max-loras 4 --max-lora-rank 64" in lora["serve_command"]


def test_mtp_adds_the_mtp_layer_and_its_kv_and_speeds_up_decoding_at_low_load() -> None:
    # DeepSeek-V3 at TP8: one MTP module (a copy of the last MoE layer, FP8 linears, plus eh_proj 2H -> H in bf16
    # and three norms; embed/lm_head shared) = 1,664,887,808 B per GPU, worked out term by term in
    # tests/unit/features/test_speculative.py. Its MLA layer adds 576 x 2 B of KV per token.
    args = ("--model", "deepseek-ai/DeepSeek-V3", "--gpu", "h200-sxm-141gb", "--gpus", "8", "--tp", "8")
    base = plan(*args)
    mtp = plan(*args, "--speculative-config", '{"method": "mtp", "num_speculative_tokens": 1}')
    assert mtp["memory"]["per_gpu"]["weights_bytes"] - base["memory"]["per_gpu"]["weights_bytes"] == 1_664_887_808
    assert mtp["memory"]["kv_bytes_per_token"] == base["memory"]["kv_bytes_per_token"] * 62 // 61
    assert mtp["performance"]["itl_ms"]["expected"] < base["performance"]["itl_ms"]["expected"]
    assert mtp["features"]["speculative"]["method"] == "mtp"


def _itl(*args: str) -> float:
    return plan(*LLAMA, *args)["performance"]["itl_ms"]["expected"]


def test_speculation_gain_only_falls_with_concurrency_and_the_plan_says_when_it_slows_down() -> None:
    spec = ("--speculative-config", json.dumps({"method": "eagle3", "model": EAGLE3, "num_speculative_tokens": 3}))
    gains = []
    for c in ("1", "8", "64", "256"):
        gains.append(_itl("--concurrency", c) / _itl("--concurrency", c, *spec))
    assert gains[0] > 1.3  # EAGLE-3 at k=3 pays at batch 1
    assert all(a >= b for a, b in itertools.pairwise(gains)), gains
    ngram = plan(*LLAMA, "--concurrency", "256", "--speculative-config",
                 '{"method": "ngram", "num_speculative_tokens": 5, "prompt_lookup_max": 4}')
    assert any(w["code"] == "W-SPEC-SLOWER" for w in ngram["warnings"])
    assert ngram["features"]["speculative"]["speedup"] < 1
    assert ngram["features"]["speculative"]["break_even_batch"] > 1


def test_a_higher_acceptance_rate_never_slows_speculation() -> None:
    spec = ("--speculative-config", '{"method": "ngram", "num_speculative_tokens": 3}')
    itls = [_itl("--concurrency", "4", *spec, "--spec-acceptance-rate", a) for a in ("0.1", "0.4", "0.7", "0.9")]
    assert itls == sorted(itls, reverse=True)


def test_cpu_offload_moves_weights_off_the_gpu_and_every_gib_costs_host_link_time() -> None:
    # 4 GiB on Llama-3.1-8B TP1 bf16: whole parameters layer by layer (436,224,000 B each) until the budget is
    # crossed: 9 layers + layer 9's qkv, o, gate_up and the crossing down_proj = 4,362,223,616 B
    # (tests/unit/features/test_offload.py); H100 SXM: PCIe Gen5 x16 = 64e9 B/s per direction (datasheet).
    base = plan(*LLAMA)
    off = plan(*LLAMA, "--cpu-offload-gb", "4")
    moved = 4_362_223_616
    assert base["memory"]["per_gpu"]["weights_bytes"] - off["memory"]["per_gpu"]["weights_bytes"] == moved
    assert off["features"]["cpu_offload"]["offloaded_bytes"] == moved
    # each decode step reads the moved bytes over the link instead of HBM: at least bytes / link bandwidth slower
    slower = off["performance"]["itl_ms"]["expected"] - base["performance"]["itl_ms"]["expected"]
    assert slower > moved / 64e9 * 1000
    itls = [_itl("--cpu-offload-gb", str(g)) for g in (0, 1, 2, 4, 8)]
    assert itls == sorted(itls) and len(set(itls)) == len(itls)


def test_offload_is_offered_only_when_nothing_else_on_these_gpus_fits() -> None:
    rc, out, _ = run("plan", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "rtx-3050", "--json")
    assert rc == 3
    fixes = json.loads(out)["fixes"]
    same_gpus = [f for f in fixes if "--gpus" not in f["flags"]]
    assert [f["change"].split(" + ")[0] for f in same_gpus] == ["CPU weight offload"]
    assert "ITL" in same_gpus[0]["detail"]
    rc, out, _ = run("plan", *LLAMA, "--json")  # it fits: no fix at all
    assert rc == 0 and not json.loads(out)["fixes"]


def test_prefix_hits_shorten_ttft_and_need_prefix_caching() -> None:
    args = (*LLAMA, "--concurrency", "16", "--input-len", "8000")
    ttft = [plan(*args, "--prefix-hit-rate", h)["performance"]["ttft_ms"]["expected"] for h in ("0", "0.5", "0.9")]
    assert ttft[0] > ttft[1] > ttft[2]
    rc, _, err = run("plan", *args, "--prefix-hit-rate", "0.5", "--no-enable-prefix-caching")
    assert rc == 2 and "--prefix-hit-rate" in one_error_line(err)
    rc, _, err = run("plan", *args, "--prefix-hit-rate", "0.5", "--vllm-version", "0.6.4")  # V0: off by default
    assert rc == 2 and "0.6.4" in one_error_line(err)


def test_multimodal_profile_run_holds_the_encoder_batch_as_the_019_log_shows() -> None:
    # llm-d-planner's vLLM 0.19.0 log of google/gemma-3-27b-it on an H100 (shared/calibration/vllm_launches.json):
    # peak activation 3.99 GiB. vLLM encodes 8192 // 256 = 32 dummy images and holds their outputs while the
    # decoder's dummy run peaks: 32 x 256 x 5376 x 2 B + 32 x 3 x 896^2 x 2 B of pixels = 242,221,056 B.
    args = ("--model", "google/gemma-3-27b-it", "--gpu", "h100-sxm-80gb", "--vllm-version", "0.19.0",
            "--max-model-len", "8192", "--gpu-memory-utilization", "0.95")
    with_images = plan(*args)["memory"]["per_gpu"]["activation_peak_bytes"]
    text_only = plan(*args, "--limit-mm-per-prompt", '{"image": 0}')["memory"]["per_gpu"]["activation_peak_bytes"]
    assert with_images - text_only == 242_221_056
    assert abs(with_images / GiB - 3.99) / 3.99 < 0.03


@pytest.mark.parametrize("args, needle", [
    (("--max-loras", "4"), "--max-loras 4: has no effect without --enable-lora"),
    (("--enable-lora", "--max-lora-rank", "7"), "--max-lora-rank"),
    (("--speculative-config", "{method: ngram}"), "--speculative-config: not valid JSON"),
    (("--speculative-config", '["ngram"]'), "expected a JSON object"),
    (("--speculative-config", '{"method": "eagle3", "model": "org/not-here", "num_speculative_tokens": 3}'),
     "neither a local directory nor a bundled catalog id"),
    (("--speculative-config", '{"method": "ngram", "num_speculative_tokens": 3}', "--vllm-version", "0.6.4"),
     "0.6.4"),
    (("--speculative-config", '{"method": "mtp", "num_speculative_tokens": 1}'), "has no MTP layers"),
    (("--spec-acceptance-rate", "0.5"), "needs --speculative-config"),
    (("--limit-mm-per-prompt", '{"image": 2}'), "text-only model"),
])
def test_impossible_feature_flags_are_one_line_errors(args: tuple[str, ...], needle: str) -> None:
    rc, _, err = run("plan", *LLAMA, *args)
    assert rc == 2
    assert needle in one_error_line(err)


FEATURES = ("--enable-lora", "--max-loras", "2", "--max-lora-rank", "32", "--cpu-offload-gb", "2",
            "--speculative-config", '{"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_max": 4}',
            "--no-enable-prefix-caching")


@pytest.mark.parametrize("version", ["0.11.0", "0.19.0", "0.33.0"])
def test_generated_commands_with_features_pass_vllms_parser(tmp_path: Path, version: str) -> None:
    from tests.cli.test_generate import serve_commands

    out = tmp_path / "gen"
    rc, _, err = run("generate", *LLAMA, *FEATURES, "--vllm-version", version, "-o", str(out))
    assert rc == 0, err
    cmds = serve_commands(out)
    assert len(cmds) >= 4
    for argv in cmds:
        assert_vllm_accepts(argv, version)
        spec = argv[argv.index("--speculative-config") + 1]
        assert json.loads(spec)["method"] == "ngram"
        assert "--no-enable-prefix-caching" in argv and "--cpu-offload-gb" in argv
    # the profile replays the same server
    first = json.loads((out / "plan.json").read_text())
    rc, again, err = run("plan", "--profile", str(out / "profile.yaml"), "--json")
    assert rc == 0, err
    replay = json.loads(again)
    assert (replay["plan_id"], replay["serve_command"]) == (first["plan_id"], first["serve_command"])


def test_the_multimodal_limit_reaches_the_command_as_one_json_word() -> None:
    p = plan("--model", "google/gemma-3-27b-it", "--gpu", "h100-sxm-80gb", "--limit-mm-per-prompt", '{"image": 2}')
    argv = shlex.split(p["serve_command"])
    assert_vllm_accepts(argv, p["vllm_version"])
    assert json.loads(argv[argv.index("--limit-mm-per-prompt") + 1]) == {"image": 2}


def test_qwen25_vl_with_every_limit_zero_loads_no_vision_tower() -> None:
    # vllm qwen2_vl.py Qwen2VLForConditionalGeneration.__init__: `self.visual = None` when no image or video limit
    # is set, so the ViT's weights never reach the GPU. Qwen2.5-VL's ViT is about 675M parameters (the Qwen2.5-VL
    # technical report, arXiv 2502.13923, table 1): about 1.35e9 B in bf16.
    args = ("--model", "Qwen/Qwen2.5-VL-7B-Instruct", "--gpu", "h100-sxm-80gb")
    full = plan(*args, "--limit-mm-per-prompt", '{"image": 1}')["memory"]["per_gpu"]["weights_bytes"]
    text = plan(*args, "--limit-mm-per-prompt", '{"image": 0, "video": 0}')["memory"]["per_gpu"]["weights_bytes"]
    assert abs((full - text) - 675e6 * 2) / (675e6 * 2) < 0.01

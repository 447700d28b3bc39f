"""Issue 8's bad-input matrix: every hostile or broken input is exit 2 (3 when valid but too big), one
`error:` line naming the problem, no traceback, no hang, and nothing written anywhere we can see.

Each case runs in-process under a 30 s alarm (a hang fails the case) in a scratch directory that is
also TMPDIR and the YAML cache's home; after the case that directory must hold only the inputs.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.clirun import one_error_line, run

ROOT = Path(__file__).resolve().parents[2]
LLAMA_CFG = json.loads((ROOT / "planner/models/catalog/meta-llama/Llama-3.1-8B-Instruct/config.json").read_text())
CODESTRAL = ROOT / "planner/models/catalog/mistralai/Mamba-Codestral-7B-v0.1/config.json"
QWEN = ["--model", "Qwen/Qwen3-8B"]
H100 = ["--gpu", "H100"]


def model_dir(root: Path, name: str, content: str | bytes) -> str:
    d = root / name
    d.mkdir()
    (d / "config.json").write_bytes(content.encode() if isinstance(content, str) else content)
    return str(d)


def config_dir(root: Path) -> str:
    (root / "m" / "config.json").mkdir(parents=True)
    return str(root / "m")


def cfg(**changes: object) -> str:
    c = {**LLAMA_CFG, **changes}
    return json.dumps({k: v for k, v in c.items() if v is not ...})


def pack(root: Path, name: str, body: str) -> str:
    p = root / name
    p.write_text("schema: 1\nname: evil\nversion: 1.0.0\nlayer: site\n" + body)
    return str(p)


def text_file(root: Path, name: str, content: str | bytes) -> str:
    p = root / name
    p.write_bytes(content.encode() if isinstance(content, str) else content)
    return str(p)


ALIAS_BOMB = "x:\n  a: &a [l, l, l, l, l, l, l, l, l]\n" + "".join(
    f"  {chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))

ANCHOR_CHAIN = "".join(f"x{i}: &a{i} " + "[" * 60 + (f"*a{i - 1}" if i else "1") + "]" * 60 + "\n" for i in range(30))
MANY_RULES = "rules:\n" + "".join(f"  - id: site.r{i}\n    description: d\n    stage: recommend\n    when:\n"
                                  f"      g: {{fact: gpu}}\n    then:\n      - warn: W-{i}\n        message: m\n"
                                  for i in range(2001))

# (id, build(root) -> argv, expected exit code, text the error line must contain)
Case = tuple[str, Callable[[Path], list[str]], int, str]
CASES: list[Case] = [
    # --- config.json
    ("config-missing", lambda r: ["plan", "--model", str(r), *H100], 2, "config.json: no such file"),
    ("config-is-a-directory", lambda r: ["plan", "--model", config_dir(r), *H100], 2,
     "config.json: is a directory"),
    ("config-not-json", lambda r: ["plan", "--model", model_dir(r, "m", "{not json"), *H100], 2, "not valid JSON"),
    ("config-list", lambda r: ["plan", "--model", model_dir(r, "m", "[1, 2]"), *H100], 2, "expected a JSON object"),
    ("config-empty", lambda r: ["plan", "--model", model_dir(r, "m", ""), *H100], 2, "not valid JSON"),
    ("config-binary", lambda r: ["plan", "--model", model_dir(r, "m", bytes(range(256)) * 4), *H100], 2,
     "not UTF-8"),
    ("config-deep", lambda r: ["plan", "--model", model_dir(r, "m", "[" * 100_000 + "]" * 100_000), *H100], 2,
     "nested too deeply"),
    ("config-huge", lambda r: ["plan", "--model", model_dir(r, "m", '{"a": "' + "x" * (65 << 20) + '"}'), *H100],
     2, "larger than the 64 MiB"),
    ("layers-missing", lambda r: ["plan", "--model", model_dir(r, "m", cfg(num_hidden_layers=...)), *H100], 2,
     "num_hidden_layers: missing"),
    ("layers-zero", lambda r: ["plan", "--model", model_dir(r, "m", cfg(num_hidden_layers=0)), *H100], 2,
     "num_hidden_layers: expected a positive integer"),
    ("layers-1e12", lambda r: ["plan", "--model", model_dir(r, "m", cfg(num_hidden_layers=10**12)), *H100], 2,
     "num_hidden_layers: expected a positive integer (at most"),
    ("hidden-negative", lambda r: ["plan", "--model", model_dir(r, "m", cfg(hidden_size=-4096)), *H100], 2,
     "hidden_size: expected a positive integer"),
    ("hidden-nan", lambda r: ["plan", "--model", model_dir(r, "m", cfg(hidden_size=1).replace(
        '"hidden_size": 1', '"hidden_size": NaN')), *H100], 2, "hidden_size: expected a positive integer, got nan"),
    ("hidden-infinity", lambda r: ["plan", "--model", model_dir(r, "m", cfg(hidden_size=1).replace(
        '"hidden_size": 1', '"hidden_size": Infinity')), *H100], 2, "got inf"),
    ("hidden-string", lambda r: ["plan", "--model", model_dir(r, "m", cfg(hidden_size="big")), *H100], 2,
     "hidden_size: expected a positive integer, got 'big'"),
    ("heads-zero", lambda r: ["plan", "--model", model_dir(r, "m", cfg(num_attention_heads=0)), *H100], 2,
     "num_attention_heads"),
    ("kv-heads-not-dividing", lambda r: ["plan", "--model", model_dir(r, "m", cfg(num_key_value_heads=3)), *H100],
     2, "num_key_value_heads: expected a divisor of num_attention_heads 32"),
    ("dtype-unknown", lambda r: ["plan", "--model", model_dir(r, "m", cfg(torch_dtype="int3")), *H100], 2,
     "torch_dtype"),
    ("quant-unknown", lambda r: ["plan", "--model", model_dir(r, "m", cfg(quantization_config={
        "quant_method": "alien"})), *H100], 2, "alien"),
    ("rope-theta-infinity", lambda r: ["plan", "--model", model_dir(r, "m", cfg(rope_theta=1.0).replace(
        '"rope_theta": 1.0', '"rope_theta": Infinity')), *H100], 2, "rope_theta: expected a finite number"),
    # --- model ids that are paths or traversal attempts
    ("model-traversal", lambda r: ["plan", "--model", "../../../../etc/passwd", *H100], 2, "no such model"),
    ("model-abs-file", lambda r: ["plan", "--model", "/etc/passwd", *H100], 2, "/etc/passwd"),
    ("model-etc-dir", lambda r: ["plan", "--model", "/etc", *H100], 2, "/etc/config.json: no such file"),
    ("model-url", lambda r: ["plan", "--model", "http://evil.example/x", *H100], 2, "http://evil.example/x"),
    ("model-shell", lambda r: ["plan", "--model", "org/m;rm -rf ~", *H100], 2, "org/m;rm -rf ~"),
    ("model-dash", lambda r: ["plan", "--model", "org/-m", *H100], 2, "org/-m"),
    # --- GPUs, counts, utilization
    ("gpu-unknown", lambda r: ["plan", *QWEN, "--gpu", "H100X"], 2, "H100X"),
    ("gpu-empty", lambda r: ["plan", *QWEN, "--gpu", ""], 2, "--gpu: String should have at least 1 character"),
    ("gpus-zero", lambda r: ["plan", *QWEN, *H100, "--gpus", "0"], 2, "--gpus"),
    ("gpus-negative", lambda r: ["plan", *QWEN, *H100, "--gpus", "-8"], 2, "--gpus"),
    ("nodes-zero", lambda r: ["plan", *QWEN, *H100, "--nodes", "0"], 2, "--nodes"),
    ("per-node-zero", lambda r: ["plan", *QWEN, *H100, "--gpus-per-node", "0"], 2, "--gpus-per-node"),
    ("gpus-vs-nodes", lambda r: ["plan", *QWEN, *H100, "--gpus", "20", "--nodes", "2", "--gpus-per-node", "8"], 2,
     "does not fit in 2 node(s) of 8 GPUs"),
    ("vram-nan", lambda r: ["plan", *QWEN, "--vram-gib", "nan"], 2, "--vram-gib: Input should be a finite number"),
    ("vram-negative", lambda r: ["plan", *QWEN, "--vram-gib", "-1"], 2, "--vram-gib"),
    ("util-zero", lambda r: ["plan", *QWEN, *H100, "--gpu-memory-utilization", "0"], 2, "--gpu-memory-utilization"),
    ("util-above-1", lambda r: ["plan", *QWEN, *H100, "--gpu-memory-utilization", "1.01"], 2,
     "--gpu-memory-utilization"),
    ("util-nan", lambda r: ["plan", *QWEN, *H100, "--gpu-memory-utilization", "nan"], 2, "finite number"),
    ("concurrency-zero", lambda r: ["plan", *QWEN, *H100, "--concurrency", "0"], 2, "--concurrency"),
    ("input-len-negative", lambda r: ["plan", *QWEN, *H100, "--input-len", "-1"], 2, "--input-len"),
    # --- impossible parallelism, dtypes, quantizations, versions
    ("tp-not-dividing-heads", lambda r: ["plan", *QWEN, *H100, "--gpus", "8", "--tp", "3"], 2,
     "not divisible by tensor_parallel_size 3"),
    ("tp-above-gpus", lambda r: ["plan", *QWEN, *H100, "--tp", "4"], 2, "needs more than the 1 GPU"),
    ("pp-above-layers", lambda r: ["plan", *QWEN, *H100, "--pp", "1000"], 2, "exceeds the model's 36 layers"),
    ("tp-zero", lambda r: ["plan", *QWEN, *H100, "--tp", "0"], 2, "--tp"),
    ("dtype-pin", lambda r: ["plan", *QWEN, *H100, "--dtype", "int7"], 2, "--dtype"),
    ("kv-dtype-pin", lambda r: ["plan", *QWEN, *H100, "--kv-cache-dtype", "int3"], 2, "int3"),
    ("quant-pin", lambda r: ["plan", *QWEN, *H100, "--quantization", "banana"], 2, "--quantization banana"),
    ("version-garbage", lambda r: ["plan", *QWEN, *H100, "--vllm-version", "banana"], 2, "banana"),
    ("version-ancient", lambda r: ["plan", *QWEN, *H100, "--vllm-version", "0.0.1"], 2, "older than 0.6.4"),
    ("flag-not-in-version", lambda r: ["plan", *QWEN, *H100, "--vllm-version", "0.8.5", "--kv-cache-dtype",
                                       "fp8_inc"], 2, "vLLM 0.8.5 accepts only"),
    ("len-above-model", lambda r: ["plan", *QWEN, *H100, "--max-model-len", "10000000"], 2,
     "exceeds the model's maximum length"),
    ("too-big-to-fit", lambda r: ["plan", "--model", "meta-llama/Llama-3.1-405B", "--gpu", "RTX 4090"], 3, ""),
    # --- profiles
    ("profile-not-yaml", lambda r: ["plan", "--profile", text_file(r, "p.yaml", "model: [")], 2, "invalid YAML"),
    ("profile-list", lambda r: ["plan", "--profile", text_file(r, "p.yaml", "- a\n")], 2, "YAML mapping"),
    ("profile-unknown-key", lambda r: ["plan", "--profile", text_file(r, "p.yaml", "model: m\nshell: ls\n")], 2,
     "unknown profile field 'shell'"),
    ("profile-python-tag", lambda r: ["plan", "--profile", text_file(
        r, "p.yaml", "model: !!python/object/apply:os.system ['touch pwned']\n")], 2, "p.yaml"),
    ("profile-bad-value", lambda r: ["plan", "--profile", text_file(r, "p.yaml", "model: Qwen/Qwen3-8B\ngpu: H100\n"
                                                                                "concurrency: lots\n")], 2,
     "concurrency"),
    # --- rule packs
    ("pack-python-tag", lambda r: ["plan", *QWEN, *H100, "--rules", pack(
        r, "p.yaml", "params: !!python/object/apply:os.system ['touch pwned']\n")], 2, "p.yaml"),
    ("pack-alias-bomb", lambda r: ["plan", *QWEN, *H100, "--rules", pack(r, "p.yaml", ALIAS_BOMB)], 2,
     "aliases expand to more than"),
    ("pack-recursive", lambda r: ["plan", *QWEN, *H100, "--rules", pack(r, "p.yaml", "params: &a {x: *a}\n")], 2,
     "p.yaml"),
    ("pack-deep", lambda r: ["plan", *QWEN, *H100, "--rules", pack(r, "p.yaml", "x: " + "[" * 5000 + "]" * 5000)],
     2, "nested"),
    ("pack-anchor-depth", lambda r: ["plan", *QWEN, *H100, "--rules", pack(r, "p.yaml", ANCHOR_CHAIN)], 2,
     "nested deeper than 64 levels"),
    ("pack-too-many-rules", lambda r: ["plan", *QWEN, *H100, "--rules", pack(r, "p.yaml", MANY_RULES)], 2,
     "2001 rules is more than the 2000"),
    ("profile-rules-not-a-list", lambda r: ["plan", "--profile", text_file(
        r, "p.yaml", "model: Qwen/Qwen3-8B\ngpu: H100\nrules: {a: 1}\n")], 2, "rules must be a list of file paths"),
    ("pack-huge", lambda r: ["plan", *QWEN, *H100, "--rules", pack(r, "p.yaml", "# " + "x" * (5 << 20) + "\n")], 2,
     "larger than 4 MiB"),
    ("pack-unknown-verb", lambda r: ["plan", *QWEN, *H100, "--rules", pack(
        r, "p.yaml", "rules:\n  - id: site.x\n    description: d\n    stage: recommend\n    when:\n"
                     "      g: {fact: gpu}\n    then:\n      - exec: 'rm -rf /'\n")], 2, "unknown verb 'exec'"),
    ("pack-not-mapping", lambda r: ["plan", *QWEN, *H100, "--rules", text_file(r, "p.yaml", "- 1\n")], 2,
     "must be a mapping"),
    ("pack-binary", lambda r: ["plan", *QWEN, *H100, "--rules", text_file(r, "p.yaml", b"\xff\xfe\x00\x01")], 2,
     "p.yaml"),
    ("pack-missing", lambda r: ["plan", *QWEN, *H100, "--rules", str(r / "nope.yaml")], 2, "nope.yaml"),
    # --- nvidia-smi captures
    ("smi-empty", lambda r: ["plan", *QWEN, "--from-file", text_file(r, "s.txt", "")], 2, "s.txt"),
    ("smi-binary", lambda r: ["plan", *QWEN, "--from-file", text_file(r, "s.txt", bytes(range(256)))], 2,
     "not a UTF-8 text file"),
    ("smi-garbage", lambda r: ["plan", *QWEN, "--from-file", text_file(r, "s.txt", "hello\nworld\n" * 100)], 2,
     "no GPUs recognised"),
    ("smi-directory", lambda r: ["plan", *QWEN, "--from-file", str(r)], 2, "is a directory"),
    ("smi-xml-entities", lambda r: ["detect", "--from-file", text_file(
        r, "s.xml", '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                    "<nvidia_smi_log><gpu><product_name>&e;</product_name></gpu></nvidia_smi_log>")], 2, "s.xml"),
    # --- AMD captures (rocm-smi, amd-smi); a GPU block whose values are all unusable is still a GPU (rc 0)
    ("rocm-smi-banner-only", lambda r: ["detect", "--from-file", text_file(
        r, "r.txt", "==== ROCm System Management Interface ====\n==== End of ROCm SMI Log ====\n")], 2, "r.txt"),
    ("rocm-smi-driver-missing", lambda r: ["plan", *QWEN, "--from-file", text_file(
        r, "r.txt", "ERROR:root:Driver not initialized (amdgpu not found in modules)\n")], 2,
     'rocm-smi failed: "ERROR:root:Driver not initialized'),
    ("rocm-smi-json-wrong-types", lambda r: ["detect", "--from-file", text_file(
        r, "r.json", '{"card0": {"VRAM Total Memory (B)": [1, 2], "Card Series": {"x": null}}}')], 0, ""),
    ("rocm-smi-json-truncated", lambda r: ["detect", "--from-file", text_file(
        r, "r.json", '{"card0": {"Card Series": "AMD Instinct MI300X", "VRAM Total Memory (B)": "2061')], 2, "r.json"),
    ("amd-smi-no-gpus", lambda r: ["detect", "--from-file", text_file(
        r, "a.txt", "GPU: 0\n    ASIC:\n        MARKET_NAME: N/A\n")], 0, ""),
    ("amd-smi-negative-vram", lambda r: ["detect", "--from-file", text_file(
        r, "a.txt", "GPU: 0\n    VRAM:\n        SIZE: -5 MB\n")], 0, ""),
    # --- vLLM logs
    ("log-binary", lambda r: ["check-log", text_file(r, "v.log", bytes(range(256)) * 10)], 2, "v.log"),
    ("log-empty", lambda r: ["check-log", text_file(r, "v.log", "")], 2, "v.log"),
    # --- output paths
    ("output-is-file", lambda r: ["generate", *QWEN, *H100, "-o", text_file(r, "f", "x")], 2, "not a directory"),
    ("output-under-file", lambda r: ["generate", *QWEN, *H100, "-o", text_file(r, "f", "x") + "/d"], 2,
     "cannot write"),
    ("audit-log-is-dir", lambda r: ["plan", *QWEN, *H100, "--audit-log", str(r)], 2, "audit"),
]


@pytest.fixture()
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "inputs"
    root.mkdir()
    monkeypatch.chdir(root)
    monkeypatch.setenv("TMPDIR", str(root))
    monkeypatch.setenv("VLLM_PLANNER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    yield root


def _alarm(signum: int, frame: object) -> None:
    raise TimeoutError("hung for 30 s")


@pytest.mark.parametrize(("build", "code", "needle"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(scratch: Path, build: Callable[[Path], list[str]], code: int, needle: str) -> None:
    argv = build(scratch)
    before = sorted(p.relative_to(scratch) for p in scratch.rglob("*"))
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(30)
    try:
        rc, out, err = run(*argv)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert rc == code, (rc, err[-500:])
    if code == 2:
        line = one_error_line(err)
        assert needle in line, line
        assert out == ""
    else:
        assert "Traceback" not in err
    after = sorted(p.relative_to(scratch) for p in scratch.rglob("*"))
    assert after == before, "the command wrote files"
    assert not Path("pwned").exists()


def test_infinity_where_it_is_legitimate_plans(scratch: Path) -> None:
    """Mamba-Codestral's time_step_limit holds Infinity: the config is valid and plans."""
    d = model_dir(scratch, "codestral", CODESTRAL.read_bytes())
    rc, out, err = run("plan", "--model", d, *H100, "--json")
    assert rc == 0, err
    assert json.loads(out)["feasible"]

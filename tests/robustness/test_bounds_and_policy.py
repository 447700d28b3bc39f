"""Issue 22 items 7, 8, 9 and 11 (lint): bounded work on every input path, no file read that the user did
not name, and policy that cannot claim what it does not do.

- Item 7: a 4 MiB pack is refused before it is parsed (values counted from the event stream); a rule
  joining six candidate aliases is refused at load, and the reference evaluator has the engine's timeout;
  a config with 100,000 layers plans in seconds; a sweep takes at most 64 lengths.
- Item 8: a profile's `rules: ["/"]` and an audit record's `packs[].source: "/"` are never walked; a
  `--facts` FIFO or /dev/zero is refused, not read.
- Item 9: a `--rules` pack cannot claim `layer: vendor`; a recommended layout no candidate has is a pack
  error naming the rule (never a decision the plan does not run); recommended quantizations are checked.
- Item 11: blank override reasons and control characters in pack text are errors in lint and at load.

Every case finishes in under 5 s and 500 MB. Where the unbounded code would hang or eat memory, the case
runs in a subprocess with a deadline and an address-space limit, or in-process under a timer, so that it
fails fast instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.clirun import one_error_line, run

ROOT = Path(__file__).resolve().parents[2]
LLAMA_ID = "meta-llama/Llama-3.1-8B-Instruct"
LLAMA_CFG = json.loads((ROOT / "planner/models/catalog/meta-llama/Llama-3.1-8B-Instruct/config.json").read_text())
H100 = ["--gpu", "H100"]
SECONDS = 5.0
PEAK_MB = 500
SITE = "schema: 1\nname: s\nversion: 1.0.0\nlayer: site\n"


@dataclass
class Result:
    rc: int
    out: str
    err: str
    seconds: float
    peak_mb: float


def _limits() -> None:  # in the child: an address-space cap, so an unbounded read fails instead of swapping
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


def cli(*args: str, deadline: float = 15.0, env: dict[str, str] | None = None) -> Result:
    """`vllm-planner ARGS` in a child process: its exit code, output, wall time and peak RSS. A child still
    running after `deadline` seconds is killed (rc -9)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        p = subprocess.Popen([sys.executable, "-m", "planner.cli", *args], stdin=subprocess.DEVNULL, stdout=out,
                             stderr=err, env={**os.environ, **(env or {})}, preexec_fn=_limits,
                             start_new_session=True)
        while True:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - t0 > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(p.pid, 0)
                break
            time.sleep(0.02)
        seconds = time.monotonic() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        with contextlib.suppress(ProcessLookupError):  # a worker left behind by a killed run
            os.killpg(p.pid, signal.SIGKILL)
        out.seek(0)
        err.seek(0)
        return Result(p.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"),
                      seconds, usage.ru_maxrss / 1024)


class TookTooLong(Exception):  # noqa: N818 - the name is the failure message
    pass


@contextlib.contextmanager
def within(seconds: float = SECONDS) -> Iterator[None]:
    """Fail an in-process step that runs past `seconds` (a timer interrupts the Python loop doing the work)."""
    def ring(signum: int, frame: object) -> None:
        raise TookTooLong(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    t0 = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert time.monotonic() - t0 < seconds


@pytest.fixture(autouse=True)
def _scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "site.d").mkdir()
    monkeypatch.setenv("VLLM_PLANNER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("VLLM_PLANNER_SITE_DIR", str(tmp_path / "site.d"))
    monkeypatch.delenv("VLLM_PLANNER_RULES", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


# ------------------------------------------------------------------------------------------ item 7


def big_pack(tmp_path: Path) -> str:
    """A site pack just under the 4 MiB YAML cap, made of ~470,000 tiny params (a bad param: the error path)."""
    lines = [SITE, "params:\n"]
    size, i = sum(map(len, lines)), 0
    while size < (4 << 20) - 64:
        line = f"  p{i}: 1\n"
        lines.append(line)
        size += len(line)
        i += 1
    return write(tmp_path / "big.yaml", "".join(lines))


@pytest.mark.parametrize("command", [["plan", "--model", LLAMA_ID, *H100, "--rules"], ["rules", "lint"]],
                         ids=["plan", "lint"])
def test_a_4_mib_pack_is_refused_in_seconds(tmp_path: Path, command: list[str]) -> None:
    r = cli(*command, big_pack(tmp_path))
    assert r.rc == 2, (r.rc, r.err[-300:])
    assert "big.yaml: holds more than 50,000 YAML values" in r.err.splitlines()[0]
    assert r.seconds < SECONDS and r.peak_mb < PEAK_MB, (r.seconds, r.peak_mb)


SIX_CANDIDATES = SITE + (
    "rules:\n  - id: site.s.six\n    description: six candidates at once\n    stage: sizing\n    when:\n"
    + "".join(f"      c{i}: {{fact: candidate}}\n" for i in range(6))
    + "    then:\n      - warn: W-SIX\n        message: six\n")


def test_a_join_of_six_candidate_aliases_is_refused_at_load(tmp_path: Path) -> None:
    """The same bound for both evaluators: the pack never reaches an engine."""
    pack = write(tmp_path / "six.yaml", SIX_CANDIDATES)
    rc, _, err = run("rules", "lint", pack)
    assert rc == 2 and "6 aliases of 'candidate' facts; a rule may match at most 2" in err
    with within():
        rc, _, err = run("plan", "--model", LLAMA_ID, *H100, "--gpus", "8", "--rules", pack)
    assert rc == 2 and "a rule may match at most 2 facts of one type" in one_error_line(err)


def test_the_reference_evaluator_stops_at_the_engine_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rules that bypass the loader's bound (compiled by hand) still end, in $VLLM_PLANNER_ENGINE_TIMEOUT."""
    from planner.errors import RuleEngineError
    from planner.policy import reference
    from planner.policy.compiler import CPattern, CRule

    monkeypatch.setenv("VLLM_PLANNER_ENGINE_TIMEOUT", "0.5")
    rule = CRule(id="site.s.six", stage="sizing", priority=500, layer="site", pack="s", order=1,
                 patterns=tuple(CPattern(alias=f"c{i}", fact="candidate", conds=()) for i in range(6)), actions=())
    facts = [{"type": "candidate", "id": f"candidate:{i}", "key": str(i)} for i in range(40)]
    t0 = time.monotonic()
    with within(3.0), pytest.raises(RuleEngineError, match=r"did not finish the sizing stage within 0\.5 s"):
        reference.evaluate((rule,), facts)
    assert time.monotonic() - t0 < 2.0


def deep_model(tmp_path: Path, **extra: object) -> str:
    d = tmp_path / "deep"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({**LLAMA_CFG, "num_hidden_layers": 100_000, **extra}))
    return str(d)


@pytest.mark.parametrize("quant", [None, {"quant_method": "fp8", "modules_to_not_convert": [
    *(f"model.layers.{i}.mlp" for i in range(0, 200, 2)), "lm_head"]}], ids=["plain", "fp8-unconverted-list"])
def test_a_config_with_100000_layers_plans_in_seconds(tmp_path: Path, quant: dict | None) -> None:
    """The documented maximum: per-layer work is done once per class of alike layers, not per layer and
    layout (the unconverted-modules list is compiled once, not matched per layer)."""
    model = deep_model(tmp_path, **({"quantization_config": quant} if quant else {}))
    with within():
        rc, out, err = run("plan", "--model", model, *H100, "--gpus", "8", "--json")
    assert rc in (0, 3), err[-500:]
    assert json.loads(out)["model"]["params"] > 10**12


def test_unconverted_module_patterns_are_bounded_per_layer(tmp_path: Path) -> None:
    """Wildcard and regex entries are matched per layer: their count times the layers is capped."""
    model = deep_model(tmp_path, quantization_config={"quant_method": "fp8", "modules_to_not_convert": [
        f"re:model.layers.{i}[0-9]*.mlp" for i in range(10)]})
    with within():
        rc, _, err = run("plan", "--model", model, *H100)
    assert rc == 2 and "the planner matches at most 20,000 pattern-layer pairs" in one_error_line(err)


def test_a_sweep_takes_at_most_64_lengths() -> None:
    lens = ",".join(str(1024 + i) for i in range(20_000))
    with within():
        rc, out, err = run("sweep", "--model", LLAMA_ID, *H100, "--max-model-lens", lens)
    assert rc == 2 and out == ""
    assert "--max-model-lens: 20,000 lengths; a sweep tries at most 64" in one_error_line(err)


# ------------------------------------------------------------------------------------------ item 8


@pytest.fixture()
def no_walk_of_root(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fail any listing of "/" (os.scandir, os.walk, os.listdir, Path.glob/rglob/iterdir)."""
    seen: list[str] = []

    def guard(name: str, real: object, path_of: object) -> object:
        def wrapper(*a: object, **k: object) -> object:
            target = path_of(*a)  # type: ignore[operator]
            if target is not None and os.path.abspath(os.fspath(target)) == "/":
                seen.append(name)
                raise AssertionError(f"{name}('/') called: the filesystem root was walked")
            return real(*a, **k)  # type: ignore[operator]
        return wrapper

    first = lambda *a: a[0] if a else "."  # noqa: E731
    monkeypatch.setattr(os, "scandir", guard("os.scandir", os.scandir, first))
    monkeypatch.setattr(os, "walk", guard("os.walk", os.walk, first))
    monkeypatch.setattr(os, "listdir", guard("os.listdir", os.listdir, first))
    for meth in ("glob", "rglob", "iterdir"):
        monkeypatch.setattr(Path, meth, guard(f"Path.{meth}", getattr(Path, meth), lambda self, *a: self))
    return seen


def test_a_profile_never_makes_the_planner_walk_a_directory(tmp_path: Path, no_walk_of_root: list[str]) -> None:
    prof = write(tmp_path / "profile.yaml", f'model: "{LLAMA_ID}"\ngpu: H100\nrules: ["/"]\n')
    with within():
        rc, out, err = run("plan", "--profile", prof)
    line = one_error_line(err)
    assert rc == 2 and out == "" and no_walk_of_root == []
    assert f"{prof}:3: rules: / is a directory; a profile names each rule pack file" in line


def test_a_profile_records_the_files_of_a_rules_directory(tmp_path: Path) -> None:
    """So that a replay reads the files the plan read, never a directory listing."""
    packs = tmp_path / "packs"
    packs.mkdir()
    write(packs / "a.yaml", SITE.replace("name: s", "name: a") + "params:\n  default_gpu_memory_utilization: 0.8\n")
    out = tmp_path / "out"
    rc, _, err = run("generate", "--model", LLAMA_ID, *H100, "--rules", str(packs), "-o", str(out))
    assert rc == 0, err
    from planner.artifacts.profile import read_profile

    assert read_profile(out / "profile.yaml")["rules"] == [str((packs / "a.yaml").resolve())]


def audit_log(tmp_path: Path, source: str, sha: str = "0" * 64) -> str:
    facts = [{"type": "request", "id": "request:0", "mode": "latency", "concurrency": 1}]
    record = {"schema": "vllm-planner/audit/1", "packs": [
        {"name": "core", "version": "1.0.0", "layer": "vendor", "source": "rules/core/pack.yaml", "sha256": sha},
        {"name": "x", "version": "1.0.0", "layer": "site", "source": source, "sha256": sha}],
        "input": {"facts": facts}}
    return write(tmp_path / "audit.jsonl", json.dumps(record) + "\n")


def test_an_audit_records_pack_sources_are_never_walked(tmp_path: Path, no_walk_of_root: list[str]) -> None:
    with within():
        rc, _, err = run("rules", "explain", "rec.seqs.latency", "--facts", audit_log(tmp_path, "/"))
    line = one_error_line(err)
    assert rc == 2 and no_walk_of_root == []
    assert "the audit record's site pack '/' is not a .yaml rule pack; pass the packs to use with --rules" in line


def test_an_audit_records_pack_source_is_used_only_when_it_is_that_pack(tmp_path: Path) -> None:
    """Another file at the recorded path is not parsed into the output: one line, nothing of its content."""
    other = write(tmp_path / "other.yaml", "secret_key: hunter2\n")
    rc, _, err = run("rules", "explain", "rec.seqs.latency", "--facts", audit_log(tmp_path, other))
    line = one_error_line(err)
    assert rc == 2 and "is no longer the pack the record names" in line and "hunter2" not in err
    pack = write(tmp_path / "site.yaml", SITE)
    rc, _, err = run("rules", "explain", "rec.seqs.latency", "--facts", audit_log(tmp_path, pack))
    assert rc == 2 and "has changed since the plan (sha256 differs)" in one_error_line(err)


def test_facts_from_a_fifo_are_refused_not_waited_for(tmp_path: Path) -> None:
    fifo = tmp_path / "facts.yaml"
    os.mkfifo(fifo)
    r = cli("rules", "explain", "rec.seqs.latency", "--facts", str(fifo), deadline=10)
    assert r.rc == 2 and "not a regular file" in one_error_line(r.err), (r.rc, r.err[-300:])
    assert r.seconds < SECONDS


def test_facts_from_dev_zero_are_refused_not_read() -> None:
    r = cli("rules", "explain", "rec.seqs.latency", "--facts", "/dev/zero", deadline=10)
    assert r.rc == 2 and "not a regular file" in one_error_line(r.err), (r.rc, r.err[-300:])
    assert r.seconds < SECONDS and r.peak_mb < PEAK_MB


# ------------------------------------------------------------------------------------------ item 9


VENDOR_CLAIM = "schema: 1\nname: fake-core\nversion: 9.0.0\nlayer: vendor\nparams:\n  evil:\n    type: int\n" \
               "    default: 1\n    description: d\n"


@pytest.mark.parametrize("where", ["plan", "lint", "show", "test-layer", "explain"])
def test_a_rules_pack_cannot_claim_the_vendor_layer(tmp_path: Path, where: str) -> None:
    pack = write(tmp_path / "fake.yaml", VENDOR_CLAIM)
    facts = write(tmp_path / "facts.yaml", "- {type: request, key: '0', mode: latency}\n")
    argv = {
        "plan": ["plan", "--model", LLAMA_ID, *H100, "--rules", pack],
        "lint": ["rules", "lint", pack],
        "show": ["rules", "show", "--rules", pack],
        "test-layer": ["rules", "test", write(tmp_path / "t.test.yaml", "layers: [fake.yaml]\nfacts: []\n")],
        "explain": ["rules", "explain", "rec.seqs.latency", "--facts", facts, "--rules", pack],
    }[where]
    rc, _, err = run(*argv)
    assert rc == 2, (rc, err[-300:])
    assert f"{pack}:4: layer: 'vendor' packs come only from the planner's own rules directory" in err \
        or f"{pack}: layer: 'vendor' packs come only from the planner's own rules directory" in err


def site_rule(then: str, stage: str = "recommend", when: str = "      req: {fact: request}\n") -> str:
    return SITE + (f"rules:\n  - id: site.s.rule\n    description: a site rule\n    stage: {stage}\n"
                   f"    priority: 900\n    when:\n{when}    then:\n{then}")


def test_a_recommended_layout_no_candidate_has_is_a_pack_error(tmp_path: Path) -> None:
    """TP 1000 cannot be launched here: recorded as the decision while the plan ran TP 1, it would lie."""
    pack = write(tmp_path / "tp.yaml", site_rule("      - recommend: tensor_parallel_size\n        value: 1000\n"))
    rc, out, err = run("plan", "--model", LLAMA_ID, *H100, "--rules", pack, "--json")
    assert rc == 2 and out == ""
    assert ("rule site.s.rule recommends tensor_parallel_size = 1000, but no layout vLLM can launch here has it "
            "(the candidates have tensor_parallel_size 1)") in one_error_line(err)
    # a value a candidate has is what the plan runs, decision and config alike
    pack = write(tmp_path / "tp2.yaml", site_rule(
        "      - recommend: tensor_parallel_size\n        value: 2\n"
        "      - recommend: data_parallel_size\n        value: 1\n"))
    rc, out, err = run("plan", "--model", LLAMA_ID, *H100, "--gpus", "2", "--rules", pack, "--json")
    assert rc == 0, err
    p = json.loads(out)
    for key in ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size"):
        assert p["decisions"][key]["value"] == p["config"][key], key
    assert p["decisions"]["tensor_parallel_size"]["by"] == "site.s.rule" and p["config"]["tensor_parallel_size"] == 2


def test_recommended_quantization_must_be_a_known_method(tmp_path: Path) -> None:
    pack = write(tmp_path / "q.yaml", site_rule("      - recommend: quantization\n        value: bogus-q\n"))
    rc, _, err = run("rules", "lint", pack)
    assert rc == 2 and "recommend quantization: expected none or a vLLM quantization method" in err
    assert "'bogus-q'" in err
    from planner.policy.schema import check_decision_value

    assert check_decision_value("quantization", "fp8") is None and check_decision_value("quantization", "none") is None


# ------------------------------------------------------------------------------------------ item 11 (lint)


BLANK_REASON = SITE + "overrides:\n  - {rule: rec.seqs.latency, enabled: false, reason: '   '}\n"
ESCAPE_IN_MESSAGE = site_rule('      - warn: W-X\n        message: "fine\\x1b[2J\\x1b]0;title\\x07hidden"\n')
BIDI_IN_DESCRIPTION = site_rule("      - warn: W-X\n        message: fine\n").replace(
    "description: a site rule", 'description: "a \\u202egnp.exe rule"')


@pytest.mark.parametrize(("text", "needle"), [
    (BLANK_REASON, "overrides[0]: reason: must not be blank"),
    (BIDI_IN_DESCRIPTION, "site.s.rule: description: holds the control character U+202E"),
    (ESCAPE_IN_MESSAGE, "site.s.rule: then[0].message: holds the control character U+001B"),
], ids=["blank-override-reason", "bidi-in-description", "escape-in-message"])
def test_blank_reasons_and_control_characters_are_lint_and_load_errors(tmp_path: Path, text: str,
                                                                       needle: str) -> None:
    pack = write(tmp_path / "p.yaml", text)
    rc, _, err = run("rules", "lint", pack)
    assert rc == 2 and needle in err, err
    rc, out, err = run("plan", "--model", LLAMA_ID, *H100, "--rules", pack)
    assert rc == 2 and out == "" and needle in one_error_line(err)


@pytest.mark.parametrize("body", ["x: " + "[" * 5000 + "]" * 5000,
                                  "x: " + "{a: " * 3000 + "1" + "}" * 3000,
                                  "".join(f"{' ' * i}k{i}:\n" for i in range(2000)) + " " * 2000 + "v: 1\n"])
def test_deeply_nested_yaml_is_refused_before_parsing(tmp_path: Path, body: str) -> None:
    """A 5,000-deep flow sequence took ruamel 8-15 s of recursion before the depth error; the text is now
    measured first (planner/yamlio._text_depth), so the refusal is immediate, for flow and block nesting."""
    pack = tmp_path / "deep.yaml"
    pack.write_text("schema: 1\nname: deep\nversion: 1.0.0\nlayer: site\n" + body)
    with within():
        rc, _, err = run("plan", "--model", LLAMA_ID, *H100, "--rules", str(pack))
    assert rc == 2 and "nested deeper than 64 levels" in one_error_line(err)

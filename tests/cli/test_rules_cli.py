"""The rules commands and the site-pack workflow a site engineer follows (issue 5's 'done means')."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from planner.cli import cli

ROOT = Path(__file__).resolve().parents[2]
ACME = str(ROOT / "examples" / "site" / "acme.yaml")
H100_CUDA_BYTES = 85_017_493_504


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_site_pack_tests_pass_with_coverage() -> None:
    rc, out, _ = run("rules", "test", str(ROOT / "examples" / "site" / "tests"), "--coverage")
    assert rc == 0, out
    assert out.strip().endswith("5 passed, 0 failed")


def test_site_utilization_drives_budget_and_kv() -> None:
    """With the site rule, the budget is ceil(0.85 x total) and the KV cache shrinks by exactly the difference."""
    rc, out, _ = run("plan", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "H100", "--json")
    vendor = json.loads(out)
    rc, out, _ = run("plan", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "H100", "--rules", ACME, "--json")
    assert rc == 0
    site = json.loads(out)
    budget = -(-H100_CUDA_BYTES * 85 // 100)  # ceil(total x 0.85), vLLM >= 0.15
    assert site["memory"]["per_gpu"]["budget_bytes"] == budget
    delta = vendor["memory"]["per_gpu"]["budget_bytes"] - budget
    assert vendor["memory"]["per_gpu"]["kv_cache_bytes"] - site["memory"]["per_gpu"]["kv_cache_bytes"] == delta
    assert site["memory"]["kv_cache_tokens"] < vendor["memory"]["kv_cache_tokens"]
    d = site["decisions"]["gpu_memory_utilization"]
    assert d["by"] == "site.acme.h100-util-085"
    assert d["superseded"] == [{"rule": "rec.util.vllm-default", "value": 0.92, "why": "site layer beats vendor layer"}]


def test_site_forbid_moves_the_layout() -> None:
    """Llama-3.1-70B on 4 x L40S (PCIe): the vendor policy would use TP 4; ACME forbids TP > 2 over PCIe."""
    base = ["plan", "--model", "meta-llama/Llama-3.1-70B-Instruct", "--gpu", "L40S", "--gpus", "4", "--json"]
    rc, out, _ = run(*base)
    assert json.loads(out)["config"]["tensor_parallel_size"] == 4
    rc, out, _ = run(*base, "--rules", ACME)
    assert rc == 0
    p = json.loads(out)
    assert (p["config"]["tensor_parallel_size"], p["config"]["pipeline_parallel_size"]) == (2, 2)
    forbids = [f for f in p["audit"]["firings"] if f["rule"] == "site.acme.no-wide-tp-over-pcie"]
    assert forbids and all(f["bindings"]["cand.tensor_parallel_size"] > 2 for f in forbids)
    dropped = {(d["tensor_parallel_size"], d["kv_cache_dtype"]) for d in p["dropped"]
               if any(r.startswith("site.acme.no-wide-tp-over-pcie") for r in d["reasons"])}
    assert (4, "auto") in dropped


def test_explain_names_site_and_superseded_vendor_rules() -> None:
    rc, out, _ = run("plan", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "H100", "--rules", ACME,
                     "--explain")
    assert rc == 0
    text = " ".join(out.split())  # the console wraps long lines
    assert "gpu_memory_utilization = 0.85 by site.acme.h100-util-085" in text
    assert "beat rec.util.vllm-default = 0.92 (site layer beats vendor layer)" in text
    assert "acme-site 1.1.0 (site)" in text


def test_lint_reports_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema: 1\nname: bad\nversion: 1.0.0\nlayer: site\nrules:\n"
                   "  - {id: site.b.a, description: d, stage: recommend, when: {g: {fact: gpu, colour: 1}}, "
                   "then: [{warn: W, message: m}]}\n"
                   "  - {id: site.b.b, description: d, stage: recommend, when: {g: {fact: gpu}}, "
                   "then: [{explode: 1}]}\n")
    rc, _, err = run("rules", "lint", str(bad))
    assert rc == 2
    lines = err.strip().splitlines()
    assert lines[0].startswith(f"{bad}:6: site.b.a: when.g.colour: unknown field 'colour'")
    assert lines[1].startswith(f"{bad}:7: site.b.b: then[0]: unknown verb 'explode'")
    assert lines[2] == "2 error(s)"


SITE_HEAD = "schema: 1\nname: bad\nversion: 1.0.0\nlayer: site\nrules:\n"


def test_lint_reports_problems_of_every_kind_in_one_run(tmp_path: Path) -> None:
    """Three distinct problems, found at three different steps (parsing a rule, checking a param
    reference against the declarations, checking a message's placeholders): three lines, one run."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(SITE_HEAD
                   + "  - {id: site.b.field, description: d, stage: recommend, when: {g: {fact: gpu, colour: 1}}, "
                     "then: [{warn: W, message: m}]}\n"
                   + "  - {id: site.b.param, description: d, stage: recommend, when: {g: {fact: gpu}}, "
                     "then: [{recommend: max_num_seqs, value: {param: nope}}]}\n"
                   + "  - {id: site.b.text, description: d, stage: recommend, when: {g: {fact: gpu}}, "
                     "then: [{warn: W, message: 'on {g.nmae}'}]}\n")
    rc, out, err = run("rules", "lint", str(bad))
    assert rc == 2 and "ok:" not in out
    lines = err.strip().splitlines()
    assert lines == [
        f"{bad}:6: site.b.field: when.g.colour: unknown field 'colour' of fact 'gpu' (known: "
        + lines[0].split("(known: ", 1)[1],
        f"{bad}:7: site.b.param: then[0]: undeclared param 'nope'",
        f"{bad}:8: site.b.text: then[0].message: unknown placeholder '{{g.nmae}}': fact 'gpu' has no field 'nmae'; "
        "did you mean: g.name?",
        "3 error(s)",
    ]


def test_lint_reports_every_problem_inside_one_rule_and_after_it(tmp_path: Path) -> None:
    """A rule with three problems gives three lines (what parsed of it is still checked against the
    facts schema), and a broken rule does not hide the params after it."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(SITE_HEAD + "  - {id: site.b.three, description: d, stage: recommend, "
                   "when: {g: {fact: gpu, colour: 1, family: {gt: 3}}}, then: [{warn: W, message: m}, {explode: 1}]}\n"
                   "params:\n  no_such_param: 1\n")
    rc, _, err = run("rules", "lint", str(bad))
    assert rc == 2
    lines = err.strip().splitlines()
    assert [line.split(": ", 3)[1:3] for line in lines[:-1]] == [
        ["site.b.three", "when.g.colour"], ["site.b.three", "then[1]"],
        ["params.no_such_param", "not declared by any vendor pack"],
        ["site.b.three", "when.g.family"]]
    assert "'gt' needs a numeric field" in lines[3]
    assert lines[-1] == "4 error(s)"


@pytest.mark.parametrize(("text", "placeholder", "why"), [
    ("{cand.kv_presure:.0%} in flight", "{cand.kv_presure:.0%}", "fact 'candidate' has no field 'kv_presure'"),
    ("above {param.nope}", "{param.nope}", "undeclared param 'nope'"),
    ("on {gpu.name}", "{gpu.name}", "'gpu' is neither an alias in this rule's 'when' (cand) nor 'param'"),
    ("{cand.kv_pressure:>9999}", "{cand.kv_pressure:>9999}", "format spec '>9999' is not allowed"),
])
def test_unknown_placeholder_is_refused(tmp_path: Path, text: str, placeholder: str, why: str) -> None:
    """A reason the renderer cannot fill (it would print the placeholder as written) fails lint and
    refuses the pack in a plan, naming the rule and the placeholder."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(SITE_HEAD + "  - id: site.b.pressure\n    description: d\n    stage: sizing\n"
                   "    when:\n      cand: {fact: candidate, fits: true}\n"
                   f"    then:\n      - forbid: candidate\n        reason: \"{text}\"\n")
    rc, _, err = run("rules", "lint", str(bad))
    assert rc == 2
    line = err.strip().splitlines()[0]
    assert line.startswith(f"{bad}:13: site.b.pressure: then[0].reason: ")
    assert repr(placeholder) in line and why in line
    rc, _, err = run("plan", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "H100", "--rules", str(bad))
    assert rc == 2 and line in err


def test_known_placeholders_and_the_shipped_packs_lint_clean(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(SITE_HEAD + "  - id: site.b.ok\n    description: d\n    stage: sizing\n"
                    "    when:\n      cand: {fact: candidate, fits: true}\n    then:\n      - forbid: candidate\n"
                    "        reason: \"{cand.kv_pressure:.0%} > {param.kv_fp8_min_pressure:.0%} at TP "
                    "{cand.tensor_parallel_size} ({cand.key})\"\n")
    rc, out, err = run("rules", "lint", str(good), ACME)
    assert rc == 0, err
    assert out.startswith("ok: 3 pack(s)")


def test_show_effective_has_provenance() -> None:
    rc, out, _ = run("rules", "show", "--effective", "--rules", ACME, "--json")
    assert rc == 0
    view = json.loads(out)
    assert view["params"]["kv_fp8_min_pressure"]["value"] == 0.95
    assert view["params"]["kv_fp8_min_pressure"]["set_by"] == "acme-site"
    assert view["params"]["kv_fp8_min_pressure"]["default"] == 0.8
    latency = next(r for r in view["rules"] if r["id"] == "rec.seqs.latency")
    assert latency["priority"] == 350
    assert latency["provenance"]["priority"].startswith("override by acme-site: INFRA-123")
    assert latency["provenance"]["enabled"].endswith("rules/core/pack.yaml:" + latency["defined_at"].split(":")[-1])


def test_explain_rule_condition_by_condition() -> None:
    facts = str(ROOT / "rules" / "core" / "tests" / "kv-and-context.test.yaml")
    rc, out, _ = run("rules", "explain", "rec.kv-dtype.fp8-under-pressure", "--facts", facts, "--json")
    assert rc == 0
    ex = json.loads(out)
    assert ex["fired"] == 0
    cand = ex["aliases"]["cand"]["facts"][0]["conditions"]
    pressure = next(c for c in cand if c["prop"] == "kv_pressure")
    assert (pressure["expected"], pressure["seen"], pressure["holds"]) == (0.8, 0.5, False)


def test_test_json_format_and_failure_exit(tmp_path: Path) -> None:
    t = tmp_path / "x.test.yaml"
    t.write_text("facts:\n  - {type: request, key: '0', mode: throughput, vllm_minor: 33}\n"
                 "expect:\n  decisions: {max_num_batched_tokens: {value: 1}}\n")
    rc, out, _ = run("rules", "test", str(t), "--format", "json")
    assert rc == 1
    data = json.loads(out)
    assert data["summary"] == {"passed": 0, "failed": 1}
    assert "expected value 1, got 16384" in data["cases"][0]["failures"][0]


def test_invalid_test_file_exits_2(tmp_path: Path) -> None:
    t = tmp_path / "x.test.yaml"
    t.write_text("facts:\n  - {type: rocket, key: '0'}\nexpect: {}\n")
    rc, _, err = run("rules", "test", str(t))
    assert rc == 2 and "unknown fact type 'rocket'" in err


@pytest.mark.parametrize("how", ["env", "site_dir"])
def test_site_packs_from_environment(how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$VLLM_PLANNER_RULES and the site directory load site packs like --rules does."""
    if how == "env":
        monkeypatch.setenv("VLLM_PLANNER_RULES", ACME)
    else:
        (tmp_path / "10-acme.yaml").write_text(Path(ACME).read_text())
        monkeypatch.setenv("VLLM_PLANNER_SITE_DIR", str(tmp_path))
    rc, out, _ = run("plan", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "H100", "--json")
    assert rc == 0
    assert json.loads(out)["decisions"]["gpu_memory_utilization"]["by"] == "site.acme.h100-util-085"


def test_later_pack_wins_ties(tmp_path: Path) -> None:
    """Two site packs at the same priority: the one loaded later (given later) decides."""
    def pack(name: str, value: float) -> Path:
        p = tmp_path / f"{name}.yaml"
        p.write_text(f"schema: 1\nname: {name}\nversion: 1.0.0\nlayer: site\nrules:\n"
                     f"  - {{id: site.{name}.u, description: d, stage: recommend, priority: 900, "
                     f"when: {{g: {{fact: gpu}}}}, then: [{{recommend: gpu_memory_utilization, value: {value}}}]}}\n")
        return p
    a, b = pack("aaa", 0.7), pack("bbb", 0.8)
    for first, second, winner in ((a, b, "site.bbb.u"), (b, a, "site.aaa.u")):
        rc, out, _ = run("plan", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "H100",
                         "--rules", str(first), "--rules", str(second), "--json")
        assert rc == 0
        d = json.loads(out)["decisions"]["gpu_memory_utilization"]
        assert d["by"] == winner
        assert d["superseded"][0]["why"] == "earlier pack in load order"


def test_site_cannot_redefine_vendor_rule(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text("schema: 1\nname: s\nversion: 1.0.0\nlayer: site\napplies_to: [{pack: core, version: '>=9'}]\n")
    rc, _, err = run("plan", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "H100", "--rules", str(p))
    assert rc == 2 and re.search(r"applies_to: core \d+\.\d+\.\d+ is outside >=9", err)


def test_scale_verb_reaches_the_calculators(tmp_path: Path) -> None:
    """A site baseline rule scaling weights by 1.10 raises the reported weights by 10%."""
    p = tmp_path / "s.yaml"
    p.write_text("schema: 1\nname: s\nversion: 1.0.0\nlayer: site\nrules:\n"
                 "  - {id: site.s.w, description: d, stage: baseline, when: {m: {fact: model}}, "
                 "then: [{scale: weights_bytes, factor: 1.10}]}\n")
    args = ("plan", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "H100", "--json")
    w0 = json.loads(run(*args)[1])["memory"]["per_gpu"]["weights_bytes"]
    w1 = json.loads(run(*args, "--rules", str(p))[1])["memory"]["per_gpu"]["weights_bytes"]
    assert w1 == int(w0 * 1.10)


@pytest.mark.parametrize(("text", "needle"), [
    ("facts: []\nexpect: {decisons: {}}\n", "unknown key 'decisons'"),
    ("facts: []\nexpect: {fird: [x]}\n", "unknown key 'fird'"),
    ("facts: []\nlayer: [x.yaml]\nexpect: {}\n", "unknown key 'layer'"),
    ("facts: []\nexpect: {fired: [site.nope.rule]}\n", "names rule 'site.nope.rule'"),
    ("facts: []\ncases: [{name: a, expect: {decisions: {max_num_seqs: {valu: 1}}}}]\n", "unknown key 'valu'"),
])
def test_misspelt_test_file_is_an_error(tmp_path: Path, text: str, needle: str) -> None:
    """A typo in a test file exits 2 instead of letting the test pass vacuously."""
    t = tmp_path / "x.test.yaml"
    t.write_text(text)
    rc, _, err = run("rules", "test", str(t))
    assert rc == 2 and needle in err


def test_explain_uses_test_layers_and_audit_packs(tmp_path: Path) -> None:
    """explain finds site rules through the test file's layers, and through an audit record's site packs."""
    tests = str(ROOT / "examples" / "site" / "tests" / "acme.test.yaml")
    rc, out, _ = run("rules", "explain", "site.acme.h100-util-085", "--facts", tests)
    assert rc == 0 and "FIRED 1 time(s)" in out
    log = tmp_path / "audit.jsonl"
    rc, _, _ = run("plan", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "H100", "--rules", ACME,
                   "--audit-log", str(log), "--json")
    assert rc == 0
    rc, out, _ = run("rules", "explain", "site.acme.h100-util-085", "--facts", str(log))
    assert rc == 0 and "FIRED 1 time(s)" in out


def test_pinned_layout_forbidden_by_site_is_reported_as_policy(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text("schema: 1\nname: s\nversion: 1.0.0\nlayer: site\nrules:\n"
                 "  - {id: site.s.no-tp8, description: d, stage: sizing, "
                 "when: {c: {fact: candidate, tensor_parallel_size: 8}}, "
                 "then: [{forbid: candidate, reason: no TP 8}]}\n")
    rc, out, _ = run("plan", "--model", "meta-llama/Llama-3.1-70B-Instruct", "--gpu", "H100", "--gpus", "8",
                     "--tp", "8", "--rules", str(p), "--json")
    assert rc == 3
    plan = json.loads(out)
    assert plan["infeasible_reason"] == "forbidden by policy: site.s.no-tp8: no TP 8"
    assert plan["decisions"]["tensor_parallel_size"]["by"] == "user"
    assert "smallest-when-nothing-fits" not in json.dumps(plan["decisions"])

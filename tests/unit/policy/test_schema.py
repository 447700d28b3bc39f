"""Pack validation: every error is one line naming the file, line, rule and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from planner.errors import PackError
from planner.policy.loader import build_packset, load_packset, read_pack_file

SITE_HEAD = "schema: 1\nname: site-x\nversion: 1.0.0\nlayer: site\n"


def write(tmp_path: Path, text: str, name: str = "site.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def load_site(tmp_path: Path, text: str) -> None:
    load_packset((str(write(tmp_path, text)),), use_env=False)


RULE = """rules:
  - id: site.x.r
    description: d
    stage: recommend
    when:
      gpu: {fact: gpu}
    then:
"""


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(RULE + "      - explode: everything\n",
                     "site.yaml:12: site.x.r: then[0]: unknown verb 'explode' "
                     "(expected set|scale|recommend|forbid|prefer|warn)", id="unknown-verb"),
        pytest.param(RULE.replace("{fact: gpu}", "{fact: gpuu}") + "      - warn: W\n        message: m\n",
                     "unknown fact type 'gpuu'", id="unknown-fact"),
        pytest.param(RULE.replace("{fact: gpu}", "{fact: gpu, colour: red}") + "      - warn: W\n        message: m\n",
                     "unknown field 'colour' of fact 'gpu'", id="unknown-field"),
        pytest.param(RULE.replace("{fact: gpu}", "{fact: gpu, count: {gt: {ref: gpu.count}}}")
                     + "      - warn: W\n        message: m\n", "relational join gt", id="relational-join"),
        pytest.param(RULE + "      - recommend: colour\n        value: red\n", "unknown decision key 'colour'",
                     id="unknown-decision"),
        pytest.param(RULE + "      - recommend: max_num_seqs\n        value: {param: nope}\n",
                     "undeclared param 'nope'",
                     id="undeclared-param"),
        pytest.param(RULE.replace("{fact: gpu}", "{fact: gpu, family: {gt: 3}}")
                     + "      - warn: W\n        message: m\n",
                     "'gt' needs a numeric field", id="type-mismatch"),
        pytest.param(RULE.replace("site.x.r", "rec.x.r") + "      - warn: W\n        message: m\n",
                     "site rules must start with 'site.'", id="site-prefix"),
        pytest.param("params:\n  kv_fp8_min_pressure: 50\n", "params.kv_fp8_min_pressure: 50 is above the maximum",
                     id="param-out-of-range"),
        pytest.param("params:\n  no_such_param: 1\n", "params.no_such_param: not declared", id="param-undeclared"),
        pytest.param("overrides:\n  - {rule: rec.nope, enabled: false, reason: r}\n", "unknown rule 'rec.nope'",
                     id="override-unknown"),
        pytest.param("overrides:\n  - {rule: rec.util.vllm-default, enabled: false}\n", "reason", id="override-reason"),
    ],
)
def test_bad_site_pack_one_line(tmp_path: Path, body: str, expected: str) -> None:
    """Each invalid pack gives a single-line PackError naming what is wrong."""
    with pytest.raises(PackError) as e:
        load_site(tmp_path, SITE_HEAD + body)
    msg = str(e.value)
    assert "\n" not in msg
    assert expected in msg
    assert "site.yaml" in msg


def test_unknown_schema_major_refused(tmp_path: Path) -> None:
    with pytest.raises(PackError, match="unsupported pack schema 2"):
        read_pack_file(write(tmp_path, SITE_HEAD.replace("schema: 1", "schema: 2")))


def test_float_version_refused(tmp_path: Path) -> None:
    """YAML reads 1.0 as a float; the version must be a quoted semver string."""
    with pytest.raises(PackError, match="version"):
        read_pack_file(write(tmp_path, SITE_HEAD.replace("version: 1.0.0", "version: 1.0")))


def test_python_tag_is_not_executed(tmp_path: Path) -> None:
    """A YAML tag that would construct Python objects is refused, never run."""
    marker = tmp_path / "pwned"
    text = SITE_HEAD + f"description: !!python/object/apply:os.system ['touch {marker}']\n"
    with pytest.raises(PackError):
        read_pack_file(write(tmp_path, text))
    assert not marker.exists()


def test_alias_bomb_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 20)]
    with pytest.raises(PackError, match="aliases"):
        read_pack_file(write(tmp_path, "\n".join(lines) + "\n"))


def test_duplicate_rule_id_across_layers(tmp_path: Path) -> None:
    """A site cannot redefine a vendor rule; it must disable it and add a site.* rule."""
    vendor = read_pack_file(write(tmp_path, "schema: 1\nname: v2\nversion: 1.0.0\nlayer: vendor\n" + RULE.replace(
        "site.x.r", "rec.util.vllm-default") + "      - warn: W\n        message: m\n", "v2.yaml"))
    core = load_packset(use_env=False).packs[0].pack
    with pytest.raises(PackError, match=r"duplicate rule id 'rec\.util\.vllm-default'"):
        build_packset([core, vendor])


def test_shipped_packs_lint_clean() -> None:
    ps = load_packset(use_env=False)
    assert ps.packs[0].name == "core"
    assert len(ps.rules) >= 20
    assert all(r.rule.description for r in ps.rules)
    assert all(p.decl.source for p in ps.params.values()), "every vendor param names its source"

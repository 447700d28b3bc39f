"""Command line: parse, call the use case, print, exit. No domain logic lives here.

Exit codes: 0 plan feasible / command succeeded; 3 infeasible (the JSON is still printed);
2 bad input, bad rule pack, unknown model/GPU; 1 a bug. Errors are one `error: ...` line on
stderr, with the traceback only under --debug.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from planner import __version__
from planner.errors import PlannerError

MODES = ("latency", "balanced", "throughput")


class PlannerGroup(click.Group):
    """Maps planner errors to exit codes and one-line messages (click's own usage errors too)."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("standalone_mode", False)
        debug = "--debug" in sys.argv
        try:
            rv = super().main(*args, **kwargs)
        except click.exceptions.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(1)
        except click.ClickException as e:
            click.echo(f"error: {e.format_message()}", err=True)
            sys.exit(2 if e.exit_code in (1, 2) else e.exit_code)
        except PlannerError as e:
            if debug:
                raise
            click.echo(f"error: {e}", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            sys.exit(130)
        except Exception as e:
            if debug:
                raise
            click.echo(f"error: internal error ({type(e).__name__}: {e}); rerun with --debug for the traceback",
                       err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=PlannerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vllm-planner")
@click.option("--debug", is_flag=True, hidden=True, help="Show tracebacks.")
def cli(debug: bool) -> None:
    """Plan vLLM deployments: does it fit, how fast, which flags, and why."""


def _plan_options(f: Any) -> Any:
    opts = [
        click.option("--model", required=True, help="Hugging Face id, bundled catalog id, or local directory."),
        click.option("--gpu", help="GPU name, alias or catalog id (see `vllm-planner gpus`)."),
        click.option("--vram-gib", type=float, help="GPU memory in GiB (overrides --gpu, or for an unknown GPU)."),
        click.option("--from-file", "from_file", type=click.Path(), help="Saved nvidia-smi output to plan for."),
        click.option("--gpus", type=int, help="Number of GPUs (default: all probed, or 1)."),
        click.option("--nodes", type=int, default=1, show_default=True, help="Number of nodes."),
        click.option("--gpus-per-node", type=int, help="GPUs per node."),
        click.option("--max-model-len", type=int, help="Pin vLLM's --max-model-len."),
        click.option("--concurrency", type=int, default=1, show_default=True, help="Concurrent requests."),
        click.option("--input-len", type=int, default=1024, show_default=True, help="Prompt tokens per request."),
        click.option("--output-len", type=int, default=256, show_default=True, help="Output tokens per request."),
        click.option("--mode", type=click.Choice(MODES), default="balanced", show_default=True),
        click.option("--vllm-version", help="Target vLLM version (default: newest known)."),
        click.option("--tp", type=int, help="Pin --tensor-parallel-size."),
        click.option("--pp", type=int, help="Pin --pipeline-parallel-size."),
        click.option("--dtype", help="Pin --dtype (auto, half, bfloat16, float32)."),
        click.option("--quantization", help="Pin --quantization (online fp8, or the checkpoint's method)."),
        click.option("--kv-cache-dtype", help="Pin --kv-cache-dtype (auto, fp8, fp8_e4m3, fp8_e5m2, ...)."),
        click.option("--gpu-memory-utilization", type=float, help="Pin --gpu-memory-utilization, in (0, 1]."),
        click.option("--max-num-seqs", type=int, help="Pin --max-num-seqs."),
        click.option("--max-num-batched-tokens", type=int, help="Pin --max-num-batched-tokens."),
        click.option("--enforce-eager", is_flag=True, default=None, help="Pin --enforce-eager."),
        click.option("--rules", "rules", multiple=True, type=click.Path(), help="Site rule pack (file or dir)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _request(kw: dict[str, Any]) -> Any:
    from pydantic import ValidationError

    from planner.errors import InputError
    from planner.schemas import Pinned, PlanRequest

    pinned_keys = {"tp": "tensor_parallel_size", "pp": "pipeline_parallel_size", "dtype": "dtype",
                   "quantization": "quantization", "kv_cache_dtype": "kv_cache_dtype",
                   "gpu_memory_utilization": "gpu_memory_utilization", "max_model_len": "max_model_len",
                   "max_num_seqs": "max_num_seqs", "max_num_batched_tokens": "max_num_batched_tokens",
                   "enforce_eager": "enforce_eager"}
    flag = {v: "--" + k.replace("_", "-") for k, v in pinned_keys.items()}
    try:
        pinned = Pinned(**{v: kw[k] for k, v in pinned_keys.items() if kw.get(k) is not None})
        req = PlanRequest(
            model=kw["model"], gpu=kw.get("gpu"), vram_gib=kw.get("vram_gib"), from_file=kw.get("from_file"),
            gpus=kw.get("gpus"), nodes=kw["nodes"], gpus_per_node=kw.get("gpus_per_node"),
            concurrency=kw["concurrency"], input_len=kw["input_len"], output_len=kw["output_len"], mode=kw["mode"],
            vllm_version=kw.get("vllm_version"), pinned=pinned, rules=list(kw.get("rules") or ()),
        )
    except ValidationError as e:
        err = e.errors()[0]
        field = str(err["loc"][-1]) if err["loc"] else "?"
        name = flag.get(field, "--" + field.replace("_", "-"))
        raise InputError(f"{name}: {err['msg']} (got {err.get('input')!r})") from None
    return req


@cli.command()
@_plan_options
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("--explain", is_flag=True, help="Explain which rule decided each setting and what it beat.")
def plan(as_json: bool, explain: bool, **kw: Any) -> int:
    """Plan a deployment and print the report (exit 3 when it does not fit)."""
    from planner.app import plan as make_plan

    result = make_plan(_request(kw))
    if as_json:
        from planner.render.json import render_json

        click.echo(render_json(result))
    else:
        from planner.render.console import render_plan

        render_plan(result, explain=explain)
    return 0 if result.feasible else 3


@cli.command()
@click.option("--from-file", "from_file", type=click.Path(), help="Read a saved nvidia-smi capture instead.")
@click.option("--json", "as_json", is_flag=True)
def detect(from_file: str | None, as_json: bool) -> int:
    """Show the GPUs nvidia-smi reports (live or from a saved capture)."""
    from planner.app import detect as run_detect

    data = run_detect(Path(from_file) if from_file else None)
    if as_json:
        from planner.render.json import render_json

        click.echo(render_json(data))
    else:
        from planner.render.console import render_detect

        render_detect(data)
    return 0


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def gpus(as_json: bool) -> int:
    """List the GPU catalog."""
    from planner.hardware.catalog import shipped_catalog

    cat = shipped_catalog()
    rows = [{"id": s.id, "name": s.names[0], "aliases": s.aliases, "memory_bytes": s.memory_bytes,
             "hbm_bandwidth_bytes_per_s": s.hbm_bandwidth_bytes_per_s, "family": s.family,
             "fp8": s.fp8_supported, "interconnect": s.interconnect.type} for s in cat.values()]
    if as_json:
        from planner.render.json import render_json

        click.echo(render_json({"gpus": rows}))
        return 0
    from planner.render.console import render_rows

    render_rows(f"{len(rows)} GPUs", ["id", "nvidia-smi name", "memory GiB", "HBM TB/s", "family", "aliases"],
                [[r["id"], r["name"], f"{r['memory_bytes'] / 2**30:.2f}",
                  f"{r['hbm_bandwidth_bytes_per_s'] / 1e12:.2f}", r["family"], ", ".join(r["aliases"])] for r in rows])
    return 0


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def models(as_json: bool) -> int:
    """List the bundled offline model catalog."""
    from planner.models.sources import list_catalog

    entries = list_catalog()
    if as_json:
        from planner.render.json import render_json

        click.echo(render_json({"models": [e.__dict__ if hasattr(e, "__dict__") else dict(e) for e in entries]}))
        return 0
    from planner.render.console import render_rows

    render_rows(f"{len(entries)} bundled models", ["id", "architecture", "provenance"],
                [[getattr(e, "id", ""), getattr(e, "architecture", ""), getattr(e, "provenance", "")] for e in entries])
    return 0


@cli.group()
def rules() -> None:
    """Inspect, lint and test rule packs."""


@rules.command("list")
@click.option("--rules", "extra", multiple=True, type=click.Path(), help="Site rule pack (file or dir).")
def rules_list(extra: tuple[str, ...]) -> int:
    """List the loaded packs and their rules."""
    from planner.policy.loader import load_packset
    from planner.render.console import render_rows

    ps = load_packset(extra)
    render_rows("packs", ["name", "version", "layer", "source", "sha256"],
                [[p.name, p.pack.version, p.layer, p.source, p.sha256[:12]] for p in ps.packs])
    render_rows("rules", ["id", "stage", "priority", "enabled", "pack"],
                [[r.id, r.rule.stage, str(r.priority), "yes" if r.enabled else "no", r.pack] for r in ps.rules])
    return 0


@rules.command("show")
@click.option("--rules", "extra", multiple=True, type=click.Path(), help="Site rule pack (file or dir).")
def rules_show(extra: tuple[str, ...]) -> int:
    """Print the effective params with who set them."""
    from planner.policy.loader import load_packset
    from planner.render.console import render_rows

    ps = load_packset(extra)
    render_rows("params", ["name", "value", "set by", "unit", "source"],
                [[n, repr(p.value), p.set_by, p.decl.unit or "", p.decl.source or ""] for n, p in ps.params.items()])
    return 0


@rules.command("lint")
@click.argument("paths", nargs=-1, type=click.Path())
def rules_lint(paths: tuple[str, ...]) -> int:
    """Validate the shipped packs plus any site packs given."""
    from planner.policy.loader import load_packset

    ps = load_packset(paths, use_env=False)
    click.echo(f"ok: {len(ps.packs)} pack(s), {len(ps.rules)} rules, {len(ps.params)} params")
    return 0


@rules.command("test")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--evaluator", type=click.Choice(["both", "durable", "reference"]), default="both", show_default=True)
def rules_test(paths: tuple[str, ...], evaluator: str) -> int:
    """Run pack tests (*.test.yaml) through durable-rules and the reference evaluator."""
    from planner.policy import engine
    from planner.policy.loader import read_pack_file, vendor_pack_paths
    from planner.policy.packtest import find_test_files, run_test_file
    from planner.resources import rules_dir

    evaluators: tuple[str, ...] = ("durable", "reference") if evaluator == "both" else (evaluator,)
    if "durable" in evaluators and not engine.available():
        click.echo("note: durable_rules is not installed; running the reference evaluator only", err=True)
        evaluators = ("reference",)
    base = [read_pack_file(p) for p in vendor_pack_paths()]
    files = find_test_files([Path(p) for p in paths] if paths else [rules_dir()])
    failed = total = 0
    for f in files:
        for res in run_test_file(f, base, evaluators):
            total += 1
            if res.passed:
                click.echo(f"PASS {res.file} :: {res.name}")
            else:
                failed += 1
                click.echo(f"FAIL {res.file} :: {res.name}")
                for msg in res.failures:
                    click.echo(f"     {msg}")
    click.echo(f"{total - failed} passed, {failed} failed")
    return 1 if failed else 0


def main() -> None:
    """Console-script entry point."""
    cli()


if __name__ == "__main__":
    main()

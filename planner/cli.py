"""Command line: parse, call the use case, print, exit. No domain logic lives here.

Exit codes: 0 plan feasible / command succeeded; 3 infeasible (the JSON is still printed);
2 bad input, bad rule pack, unknown model/GPU, a file the system refuses (no space, no permission,
a name too long, stdout full or closed); 1 a bug; 130 Ctrl-C; 143 SIGTERM; 141 stdout closed by its
reader (`| head`). Errors are one `error: ...` line on stderr (control characters stripped, at most
1,000 characters), with the traceback only under --debug.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from planner import __version__
from planner.errors import Interrupted, PlannerError

MODES = ("latency", "balanced", "throughput")


# An OSError with one of these errnos is the environment's fault (a path the user named, a full disk, a
# closed stream), not a bug: exit 2 with one line. Any OSError naming a file is treated the same.
_FILE_FAULTS = frozenset(getattr(errno, name) for name in (
    "ENAMETOOLONG", "EACCES", "EPERM", "ENOSPC", "EDQUOT", "EFBIG", "EROFS", "EISDIR", "ENOTDIR", "ENOENT",
    "EEXIST", "ELOOP", "EXDEV", "ENXIO", "ETXTBSY", "EMFILE", "ENFILE", "EIO", "EBADF") if hasattr(errno, name))
_ERROR_MAX = 1000  # characters of an error message shown (the longest real ones are ~550); the rest is counted


def _error_line(message: str) -> str:
    """`error: MESSAGE` as one bounded line: no terminal controls or line breaks, at most ~1000 characters."""
    from planner.render.text import strip_controls

    head = message[:_ERROR_MAX * 4]  # whatever the value's size (3 MB...), only a prefix is worked on
    text = re.sub(r"[\t\n\u2028\u2029]+", " ", strip_controls(head)).strip()
    if len(text) > _ERROR_MAX or len(head) < len(message):
        shown = text[:_ERROR_MAX]
        text = f"{shown}… ({len(message) - len(shown):,} more characters)"
    return f"error: {text}"


def _fail(message: str, code: int) -> NoReturn:
    click.echo(_error_line(message), err=True)
    sys.exit(code)


_STDOUT = "standard output"


class _StdoutFile(io.FileIO):
    """fd 1, whose write errors name it (`error: standard output: No space left on device`), like a file's."""

    def write(self, b: Any) -> int | None:
        try:
            return super().write(b)
        except BrokenPipeError:  # the reader left: handled as such (exit 141)
            raise
        except OSError as e:
            raise OSError(e.errno, e.strerror, _STDOUT) from None


def _name_stdout() -> None:
    """Put the process's own stdout (not a test runner's capture) on a _StdoutFile."""
    out = sys.stdout
    if out is None or out is not sys.__stdout__ or not isinstance(out, io.TextIOWrapper):
        return
    try:
        fd = out.fileno()
        out.flush()
    except (OSError, ValueError):
        return
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(_StdoutFile(fd, "w", closefd=False)), encoding=out.encoding,
                                  errors=out.errors, line_buffering=out.line_buffering,
                                  write_through=out.write_through)


def _os_error_message(e: OSError) -> str:
    reason = e.strerror or str(e)
    if e.filename == _STDOUT:  # and nothing more can go there: keep the interpreter's last flush from failing
        with contextlib.suppress(OSError, ValueError, AttributeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if e.filename is None:
        return reason
    name = os.fsdecode(e.filename) if isinstance(e.filename, bytes) else str(e.filename)
    if e.filename2 is not None:
        name += f" -> {os.fsdecode(e.filename2) if isinstance(e.filename2, bytes) else e.filename2}"
    return f"{name}: {reason}"


def _standard_streams() -> str | None:
    """Keep fds 0-2 occupied (by /dev/null) so that no file or socket opened later lands on them; say so
    when stdout is closed, since a report printed there would be lost."""
    closed = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            closed.append(fd)
            devnull = os.open(os.devnull, os.O_RDWR)
            if devnull != fd:
                os.dup2(devnull, fd)
                os.close(devnull)
    if 1 in closed or sys.stdout is None:
        return "standard output is closed: nothing could be printed (redirect it to a file or /dev/null instead)"
    return None


def _on_sigterm(signum: int, _frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends us at once
    raise Interrupted(signum)  # unwinds like Ctrl-C, so cleanups run; main() exits 143


def _stop_workers() -> None:
    """Stop the rules-engine worker now (it would also die with us; this makes it immediate)."""
    worker = sys.modules.get("planner.policy.worker")
    if worker is not None:
        with contextlib.suppress(Exception):  # best effort on the way out
            worker.shutdown()


class PlannerGroup(click.Group):
    """Maps planner errors to exit codes and one-line messages (click's own usage errors too).

    Exit codes: 2 for bad input and for filesystem faults on the user's paths (and a full or closed
    stdout), 1 for bugs and engine faults, 130 for Ctrl-C, 143 for SIGTERM, 141 for a reader that left.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:  # `| head` closed stdout: stop quietly with 141, as Unix tools do
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise click.exceptions.Exit(141) from None
        except KeyboardInterrupt:  # before click's main turns it into Abort (exit 1)
            raise Interrupted(signal.SIGINT) from None

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("standalone_mode", False)
        debug = "--debug" in sys.argv
        closed = _standard_streams()
        if closed:
            _fail(closed, 2)
        _name_stdout()
        try:
            previous = signal.signal(signal.SIGTERM, _on_sigterm)
        except ValueError:  # not the main thread: leave SIGTERM alone
            previous = None
        try:
            rv = super().main(*args, **kwargs)
            if sys.stdout is not None:
                sys.stdout.flush()  # a full device fails here, inside the handlers below, not at exit
        except Interrupted as e:
            _stop_workers()
            _fail(str(e), e.exit_code)
        except click.exceptions.Abort as e:
            if isinstance(e.__cause__, KeyboardInterrupt):  # Ctrl-C while click parsed the command line
                _stop_workers()
                _fail("interrupted", 128 + signal.SIGINT)
            _fail("aborted", 1)
        except click.ClickException as e:
            _fail(e.format_message(), 2 if e.exit_code in (1, 2) else e.exit_code)
        except PlannerError as e:
            if debug:
                raise
            _fail(str(e), e.exit_code)
        except KeyboardInterrupt:
            _stop_workers()
            _fail("interrupted", 128 + signal.SIGINT)
        except BrokenPipeError:  # the reader left before the last flush: 141, quietly, as in invoke()
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(141)
        except OSError as e:
            if debug:
                raise
            if e.filename is None and e.errno not in _FILE_FAULTS:
                _fail(f"internal error ({type(e).__name__}: {e}); rerun with --debug for the traceback", 1)
            _fail(_os_error_message(e), 2)
        except Exception as e:
            if debug:
                raise
            _fail(f"internal error ({type(e).__name__}: {e}); rerun with --debug for the traceback", 1)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=PlannerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vllm-planner")
@click.option("--debug", is_flag=True, hidden=True, help="Show tracebacks.")
def cli(debug: bool) -> None:
    """Plan vLLM deployments: does it fit, how fast, which flags, and why."""


def _plan_options(f: Any) -> Any:
    opts = [
        click.option("--model", help="Hugging Face id, bundled catalog id, or local directory (required unless "
                     "--profile gives it)."),
        click.option("--profile", "profile", type=click.Path(),
                     help="A profile.yaml (written by `generate`) holding the request; flags given here win."),
        click.option("--gpu", help="GPU name, alias or catalog id (see `vllm-planner gpus`)."),
        click.option("--vram-gib", type=float, help="GPU memory in GiB (overrides --gpu, or for an unknown GPU)."),
        click.option("--from-file", "from_file", type=click.Path(), multiple=True,
                     help="Saved nvidia-smi, rocm-smi or amd-smi output to plan for (repeat it to add a "
                          "`topo -m` capture)."),
        click.option("--ignore-used", is_flag=True, help="Plan for empty GPUs, ignoring memory others hold now."),
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
        click.option("--tensor-parallel-size", "tensor_parallel_size", type=int, help="Same as --tp."),
        click.option("--pp", type=int, help="Pin --pipeline-parallel-size."),
        click.option("--pipeline-parallel-size", "pipeline_parallel_size", type=int, help="Same as --pp."),
        click.option("--dp", type=int, help="Pin --data-parallel-size."),
        click.option("--data-parallel-size", "data_parallel_size", type=int, help="Same as --dp."),
        click.option("--dtype", help="Pin --dtype (auto, half, bfloat16, float32)."),
        click.option("--quantization", help="Pin --quantization (online fp8, or the checkpoint's method)."),
        click.option("--kv-cache-dtype", help="Pin --kv-cache-dtype (auto, fp8, fp8_e4m3, fp8_e5m2, ...)."),
        click.option("--gpu-memory-utilization", type=float, help="Pin --gpu-memory-utilization, in (0, 1]."),
        click.option("--max-num-seqs", type=int, help="Pin --max-num-seqs."),
        click.option("--max-num-batched-tokens", type=int, help="Pin --max-num-batched-tokens."),
        click.option("--enforce-eager", is_flag=True, default=None, help="Pin --enforce-eager."),
        click.option("--enable-expert-parallel", is_flag=True, default=None,
                     help="Pin --enable-expert-parallel (MoE: whole experts per GPU)."),
        click.option("--enable-lora", is_flag=True, default=None, help="Pin --enable-lora (multi-LoRA serving)."),
        click.option("--max-loras", type=int, help="Pin --max-loras: adapters in one batch (GPU slots; vLLM: 1)."),
        click.option("--max-lora-rank", type=int, help="Pin --max-lora-rank (vLLM: 16)."),
        click.option("--max-cpu-loras", type=int, help="Pin --max-cpu-loras: adapters cached in CPU memory."),
        click.option("--lora-dtype", help="Pin --lora-dtype (auto, float16, bfloat16)."),
        click.option("--speculative-config", help="Pin --speculative-config, a JSON object such as "
                     "'{\"method\": \"eagle3\", \"model\": DIR_OR_CATALOG_ID, \"num_speculative_tokens\": 3}'."),
        click.option("--spec-acceptance-rate", type=float,
                     help="Per-token acceptance rate of speculative tokens, in (0, 1) (default: the rule pack's, "
                          "per method). A workload assumption, not a vLLM flag."),
        click.option("--cpu-offload-gb", type=float, help="Pin --cpu-offload-gb: GiB of weights per GPU kept in CPU "
                     "memory (streamed over the host link every step)."),
        click.option("--enable-prefix-caching/--no-enable-prefix-caching", "enable_prefix_caching", default=None,
                     help="Pin prefix caching (default: on in the V1 engine, 0.8+)."),
        click.option("--prefix-hit-rate", type=float, help="Share of prompt tokens found in the prefix cache, "
                     "in [0, 1] (workload; default 0)."),
        click.option("--limit-mm-per-prompt", help="Pin --limit-mm-per-prompt, a JSON object such as "
                     "'{\"image\": 2, \"video\": 0}'."),
        click.option("--sampler", type=click.Choice(["fused", "sort"]), default=None,
                     help="How your vLLM samples top-p/top-k, which sizes its startup sampler peak: 'sort' when its "
                          "log says 'Falling back to the PyTorch-native implementation' (V0; pip installs of "
                          "0.10.x), 'fused' for FlashInfer/Triton kernels. Default: the version's default."),
        click.option("--rules", "rules", multiple=True, type=click.Path(), help="Site rule pack (file or dir)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


_PINNED_KEYS = {"tp": "tensor_parallel_size", "pp": "pipeline_parallel_size", "dp": "data_parallel_size",
                "dtype": "dtype",
                "quantization": "quantization", "kv_cache_dtype": "kv_cache_dtype",
                "gpu_memory_utilization": "gpu_memory_utilization", "max_model_len": "max_model_len",
                "max_num_seqs": "max_num_seqs", "max_num_batched_tokens": "max_num_batched_tokens",
                "enforce_eager": "enforce_eager", "enable_expert_parallel": "enable_expert_parallel",
                "sampler": "sampler", "enable_lora": "enable_lora", "max_loras": "max_loras",
                "max_lora_rank": "max_lora_rank", "max_cpu_loras": "max_cpu_loras", "lora_dtype": "lora_dtype",
                "speculative_config": "speculative_config", "cpu_offload_gb": "cpu_offload_gb",
                "enable_prefix_caching": "enable_prefix_caching", "limit_mm_per_prompt": "limit_mm_per_prompt"}
_JSON_PINS = ("speculative_config", "limit_mm_per_prompt")  # given as JSON objects, as vLLM takes them
# vLLM's own spelling of a pin -> the short flag it stands for (both may be given when they agree)
_PIN_ALIASES = {"tensor_parallel_size": "tp", "pipeline_parallel_size": "pp", "data_parallel_size": "dp"}
_HARDWARE_KEYS = {"gpu", "vram_gib", "from_file"}
_REQUEST_KEYS = ("model", "gpu", "vram_gib", "from_file", "ignore_used", "gpus", "nodes", "gpus_per_node",
                 "concurrency", "input_len", "output_len", "mode", "vllm_version", "rules", "prefix_hit_rate",
                 "spec_acceptance_rate")


def _request(kw: dict[str, Any]) -> Any:
    """The PlanRequest from the flags, over the --profile file when one is given (explicit flags win)."""
    from click.core import ParameterSource
    from pydantic import ValidationError

    from planner.errors import InputError
    from planner.schemas import PlanRequest

    ctx = click.get_current_context()
    explicit = {k for k in kw if ctx.get_parameter_source(k) in (ParameterSource.COMMANDLINE,
                                                                 ParameterSource.ENVIRONMENT)}
    flag = {v: "--" + k.replace("_", "-") for k, v in _PINNED_KEYS.items()}
    kw = dict(kw)
    for long, short in _PIN_ALIASES.items():
        value = kw.pop(long, None)
        if value is None:
            continue
        if kw.get(short) is not None and kw[short] != value:
            raise InputError(f"--{short} {kw[short]} and --{long.replace('_', '-')} {value} disagree; give one of them")
        if kw.get(short) is None:
            flag[long] = "--" + long.replace("_", "-")  # errors name the spelling the user typed
        kw[short] = value
        if long in explicit:
            explicit.add(short)
    for key in _JSON_PINS:
        if isinstance(kw.get(key), str):
            kw[key] = _json_object("--" + key.replace("_", "-"), kw[key])
    data: dict[str, Any] = {}
    from_profile: set[str] = set()
    if kw.get("profile"):
        from planner.artifacts.profile import read_profile

        data = read_profile(Path(kw["profile"]))
        from_profile = set(data) | {f"pinned.{k}" for k in data.get("pinned") or {}}
    if explicit & _HARDWARE_KEYS:  # the GPUs named on the command line replace the profile's, not mix with them
        for key in _HARDWARE_KEYS | {"gpus", "gpus_per_node", "ignore_used"}:
            if key not in explicit:
                data.pop(key, None)
    for key in _REQUEST_KEYS:
        value = kw.get(key)
        if key in ("from_file", "rules"):
            value = list(value or []) or None
        if key in explicit or (key not in data and value is not None):
            data[key] = value
            from_profile.discard(key)
    pins = dict(data.get("pinned") or {})
    for flag_key, field in _PINNED_KEYS.items():
        if kw.get(flag_key) is not None and (flag_key in explicit or field not in pins):
            pins[field] = kw[flag_key]
            from_profile.discard(f"pinned.{field}")
    data["pinned"] = pins
    data["ignore_used"] = bool(data.get("ignore_used"))
    data["rules"] = list(data.get("rules") or [])
    if not data.get("model"):
        raise InputError("--model is required (or a --profile that names the model)")
    try:
        req = PlanRequest.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = [str(x) for x in err["loc"]]
        field = loc[-1] if loc else "?"
        dotted = ".".join(loc)
        if dotted in from_profile or (loc and loc[0] in from_profile):
            name = f"{kw['profile']}: {dotted}"
        else:
            name = flag.get(field, "--" + field.replace("_", "-"))
        raise InputError(f"{name}: {err['msg']} (got {err.get('input')!r})") from None
    return req


def _json_object(flag: str, text: str) -> dict[str, Any]:
    """A JSON-object flag value (as `vllm serve` takes it), or a one-line error naming the flag."""
    import json

    from planner.errors import InputError

    try:
        value = json.loads(text)
    except ValueError as e:
        raise InputError(f"{flag}: not valid JSON ({e.msg} at character {e.pos}): {text!r}") from None
    if not isinstance(value, dict):
        raise InputError(f"{flag}: expected a JSON object like {{\"key\": value}} (got {text!r})")
    return value


@cli.command()
@_plan_options
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("--explain", is_flag=True, help="Explain which rule decided each setting and what it beat.")
@click.option("--audit-log", "audit_log", type=click.Path(), help="Append one JSON audit record per plan to FILE.")
def plan(as_json: bool, explain: bool, audit_log: str | None, **kw: Any) -> int:
    """Plan a deployment and print the report (exit 3 when it does not fit)."""
    from planner.app import plan_with_context

    result, ctx = plan_with_context(_request(kw))
    if audit_log:
        from planner.app import append_audit, audit_record

        append_audit(Path(audit_log), audit_record(result, ctx))
    if as_json:
        from planner.render.json import render_json

        click.echo(render_json(result))
    else:
        from planner.render.console import render_plan

        render_plan(result, explain=explain)
    return 0 if result.feasible else 3


SWEEP_COLUMNS = ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size", "gpus", "quantization",
                 "kv_cache_dtype", "max_model_len", "gpu_memory_utilization", "fits", "kv_cache_tokens",
                 "max_concurrency", "weights_bytes", "kv_cache_bytes", "effective_concurrency", "itl_ms", "ttft_ms",
                 "decode_tokens_per_s_per_request", "output_tokens_per_s_total", "forbidden")


def _int_list(flag: str, text: str | None) -> list[int] | None:
    from planner.errors import InputError

    if not text:
        return None
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{flag}: expected comma-separated integers like 8192,32768 (got {text!r})") from None
    if not values or min(values) < 1:
        raise InputError(f"{flag}: every value must be a positive integer (got {text!r})")
    return values


@cli.command()
@_plan_options
@click.option("--max-model-lens", help="Also try these context lengths, comma-separated (e.g. 8192,32768,131072).")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print the rows as CSV.")
def sweep(max_model_lens: str | None, as_json: bool, as_csv: bool, **kw: Any) -> int:
    """Every configuration the planner considers, with memory and speed, best first under --mode."""
    from planner.app import sweep as run_sweep

    lens = _int_list("--max-model-lens", max_model_lens)
    rows = run_sweep(_request(kw), max_model_lens=lens)
    if as_json:
        from planner.render.json import render_json

        click.echo(render_json({"mode": kw["mode"], "rows": rows}))
        return 0
    if as_csv:
        import csv

        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(SWEEP_COLUMNS)
        for r in rows:
            w.writerow([_csv("; ".join(r[c])) if c == "forbidden" else ("" if r[c] is None else _csv(r[c]))
                        for c in SWEEP_COLUMNS])
        return 0
    from planner.render.console import render_sweep

    render_sweep(rows, kw["mode"])
    return 0


CAPACITY_COLUMNS = ("key", "gpu", "catalog_id", "gpus_per_replica", "replicas", "total_gpus", "tensor_parallel_size",
                    "pipeline_parallel_size", "data_parallel_size", "enable_expert_parallel", "kv_cache_dtype",
                    "quantization", "rate_per_replica", "max_rate", "utilization", "ttft_ms_low", "ttft_ms",
                    "ttft_ms_high", "itl_ms_low", "itl_ms", "itl_ms_high", "meets_slo", "cost_per_hour",
                    "cost_per_million_output_tokens", "output_tokens_per_s_per_gpu", "tokens_per_s_per_user",
                    "pareto", "best")


def _capacity_csv_row(i: int, o: dict[str, Any], best: int | None) -> list[Any]:
    cfg, per = o["config"], o["per_replica"]
    row = {**{k: o[k] for k in ("key", "gpu", "catalog_id", "gpus_per_replica", "replicas", "total_gpus",
                                "meets_slo", "cost_per_hour", "cost_per_million_output_tokens",
                                "output_tokens_per_s_per_gpu", "tokens_per_s_per_user", "pareto")},
           **{k: cfg[k] for k in ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size",
                                  "enable_expert_parallel", "kv_cache_dtype", "quantization")},
           "rate_per_replica": per["rate"], "max_rate": per["max_rate"], "utilization": per["utilization"],
           **{f"{m}{suffix}": o[m][part] for m in ("ttft_ms", "itl_ms")
              for suffix, part in (("_low", "low"), ("", "expected"), ("_high", "high"))},
           "best": i == best}
    return ["" if row[c] is None else _csv(row[c]) for c in CAPACITY_COLUMNS]


def _csv(value: Any) -> Any:
    """A CSV field: strings lose terminal control sequences (CSV, unlike JSON, escapes none of them, and a pack's
    forbid reason or a GPU name may reach a terminal this way); numbers and booleans stay as they are."""
    from planner.render.text import plain

    return plain(value) if isinstance(value, str) else value


_PIN_FLAGS = ("max_model_len", "vllm_version", "tp", "tensor_parallel_size", "pp", "pipeline_parallel_size", "dp",
              "data_parallel_size", "dtype", "quantization", "kv_cache_dtype", "gpu_memory_utilization", "max_num_seqs",
              "max_num_batched_tokens", "enforce_eager", "enable_expert_parallel", "rules", "enable_lora", "max_loras",
              "max_lora_rank", "max_cpu_loras", "lora_dtype", "speculative_config", "spec_acceptance_rate",
              "cpu_offload_gb", "enable_prefix_caching", "prefix_hit_rate", "limit_mm_per_prompt")


def _capacity_options(f: Any) -> Any:
    """plan's pins, version and packs, reused by `capacity` (the load replaces plan's hardware and workload)."""
    params = [p for p in _plan_options(lambda: None).__click_params__ if p.name in _PIN_FLAGS]
    f.__click_params__ = [*getattr(f, "__click_params__", []), *params]
    return f


@cli.command()
@click.option("--model", required=True, help="Hugging Face id, bundled catalog id, or local directory.")
@click.option("--rate", type=float, required=True, help="Requests per second arriving (Poisson).")
@click.option("--input-len", type=int, required=True, help="Prompt tokens per request.")
@click.option("--output-len", type=int, required=True, help="Output tokens per request.")
@click.option("--slo-ttft-ms", type=float, help="Time to first token the SLO allows, at --slo-percentile (ms).")
@click.option("--slo-itl-ms", type=float, help="Inter-token latency the SLO allows, at --slo-percentile (ms).")
@click.option("--slo-percentile", type=click.Choice(["50", "90", "95", "99"]), default="95", show_default=True,
              help="Percentile of requests (TTFT) and of tokens (ITL) the SLOs apply to.")
@click.option("--gpu", "gpu_types", multiple=True, help="GPU type to try (repeat; default: every catalog GPU).")
@click.option("--max-gpus-per-replica", type=int, help="Largest replica to try (default: the pack's, 16).")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print the options as CSV.")
@click.option("--html", "html_file", type=click.Path(), help="Also write a self-contained HTML report to FILE.")
@click.option("--explain", is_flag=True, help="Show which rule chose the option and what it beat.")
@click.option("--all", "show_all", is_flag=True, help="Show every option in the console table.")
@_capacity_options
def capacity(rate: float, input_len: int, output_len: int, slo_ttft_ms: float | None, slo_itl_ms: float | None,
             slo_percentile: str, gpu_types: tuple[str, ...], max_gpus_per_replica: int | None, as_json: bool,
             as_csv: bool, html_file: str | None, explain: bool, show_all: bool, **kw: Any) -> int:
    """What to deploy for a load within SLOs, across GPU types, and what it costs (exit 3 when nothing meets
    the SLOs)."""
    from planner.app import capacity as run_capacity
    from planner.capacity.search import Load
    from planner.errors import InputError

    if max_gpus_per_replica is not None and max_gpus_per_replica < 1:
        raise InputError(f"--max-gpus-per-replica {max_gpus_per_replica}: must be at least 1")
    for flag, v in (("--input-len", input_len), ("--output-len", output_len)):
        if v < 1:
            raise InputError(f"{flag} {v}: must be at least 1 token")
    template = _request({**kw, "input_len": input_len, "output_len": output_len})
    load = Load(rate=rate, input_len=input_len, output_len=output_len, slo_ttft_ms=slo_ttft_ms,
                slo_itl_ms=slo_itl_ms, percentile=int(slo_percentile))
    data = run_capacity(template, load, list(gpu_types), max_gpus_per_replica=max_gpus_per_replica)
    if html_file:
        from planner.files import write_file
        from planner.render.capacity_html import render_capacity_html

        write_file(Path(html_file), render_capacity_html(data))
    if as_json:
        from planner.render.json import render_json

        click.echo(render_json(data))
    elif as_csv:
        import csv

        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(CAPACITY_COLUMNS)
        for i, o in enumerate(data["options"]):
            w.writerow(_capacity_csv_row(i, o, data["best"]))
    else:
        from planner.render.capacity import render_capacity

        render_capacity(data, explain=explain, limit=None if show_all else 15)
    return 0 if any(o["meets_slo"] == "yes" for o in data["options"]) else 3


@cli.command()
@_plan_options
@click.option("--output-dir", "-o", "output_dir", required=True, type=click.Path(),
              help="Directory to write (created; an existing one needs --force).")
@click.option("--force", is_flag=True, help="Replace an existing output directory written by an earlier generate.")
@click.option("--json", "as_json", is_flag=True, help="Print {output_dir, plan_id, feasible, files} as JSON.")
def generate(output_dir: str, force: bool, as_json: bool, **kw: Any) -> int:
    """Plan, then write the deployment: serve command, compose, Kubernetes, profile, benchmark, plan.json.

    Nothing is written when the plan does not fit (exit 3) or anything fails (exit 2).
    """
    from planner.app import generate as run_generate

    result, files = run_generate(_request(kw), Path(output_dir), force=force)
    if as_json:
        from planner.render.json import render_json

        click.echo(render_json({"output_dir": str(output_dir), "plan_id": result.plan_id,
                                "feasible": result.feasible, "infeasible_reason": result.infeasible_reason,
                                "files": files}))
    elif not result.feasible:
        from planner.render.text import plain

        click.echo(f"error: the plan does not fit ({plain(result.infeasible_reason)}); nothing written", err=True)
    else:
        from planner.render.console import render_generated

        render_generated(output_dir, files, result.plan_id, result.vllm_version)
    return 0 if result.feasible else 3


@cli.command()
@click.option("--from-file", "from_file", type=click.Path(), multiple=True,
              help="Read a saved capture (nvidia-smi, rocm-smi, amd-smi) instead; repeat to merge a table with "
                   "its topology matrix.")
@click.option("--json", "as_json", is_flag=True)
def detect(from_file: tuple[str, ...], as_json: bool) -> int:
    """Show the GPUs the probe reports (live or from saved captures): memory, health, MIG, vendor."""
    from planner.machine import detect as run_detect

    data = run_detect([Path(f) for f in from_file])
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
@click.argument("query", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print {models: [...]} as JSON.")
def models(query: tuple[str, ...], as_json: bool) -> int:
    """List the bundled offline model catalog, or search it.

    QUERY words must all match: a substring of the id or architecture (qwen3, llama-3.1, Mixtral), or one of
    moe, dense, vision, quantized, fp8, fp4, mxfp4, mla, hybrid, sliding, ssm, alias.
    """
    import dataclasses

    from planner.models.sources import entry_tags, list_catalog, search_catalog, search_suggestions

    text = " ".join(query).strip()
    entries = search_catalog(text)
    rows = [{**dataclasses.asdict(e), "tags": entry_tags(e)} for e in entries]
    suggestions = search_suggestions(text) if text and not entries else []
    if as_json:
        from planner.render.json import render_json

        body: dict[str, Any] = {"models": rows}
        if text:
            body.update(query=text, did_you_mean=suggestions)
        click.echo(render_json(body))
        return 0
    from planner.render.console import render_models, render_no_models

    if not entries:
        render_no_models(text, suggestions)
        return 0
    render_models(rows, len(list_catalog()), text)
    return 0


@cli.group()
def rules() -> None:
    """Inspect, lint and test rule packs."""


@rules.command("list")
@click.option("--rules", "extra", multiple=True, type=click.Path(), help="Site rule pack (file or dir).")
@click.option("--json", "as_json", is_flag=True)
def rules_list(extra: tuple[str, ...], as_json: bool) -> int:
    """List the loaded packs (in load order) and their rules."""
    from planner.policy.loader import load_packset
    from planner.policy.views import packs_view

    ps = load_packset(extra, with_lines=True)
    rules = [{"id": r.id, "stage": r.rule.stage, "priority": r.priority, "enabled": r.enabled, "pack": r.pack,
              "layer": r.layer} for r in ps.rules]
    if as_json:
        from planner.render.json import render_json

        click.echo(render_json({"packs": packs_view(ps), "rules": rules}))
        return 0
    from planner.render.console import render_rows

    render_rows("packs (load order)", ["name", "version", "layer", "source", "sha256"],
                [[p.name, p.pack.version, p.layer, p.source, p.sha256[:12]] for p in ps.packs])
    render_rows("rules", ["id", "stage", "priority", "enabled", "pack"],
                [[r["id"], r["stage"], str(r["priority"]), "yes" if r["enabled"] else "no", r["pack"]] for r in rules])
    return 0


@rules.command("show")
@click.option("--rules", "extra", multiple=True, type=click.Path(), help="Site rule pack (file or dir).")
@click.option("--effective", is_flag=True, help="The merged policy: every rule and param with its provenance.")
@click.option("--json", "as_json", is_flag=True)
def rules_show(extra: tuple[str, ...], effective: bool, as_json: bool) -> int:
    """Show the packs, or (--effective) the merged rules and params with where each value came from."""
    from planner.policy.loader import load_packset
    from planner.policy.views import effective_view

    view = effective_view(load_packset(extra, with_lines=True))
    if not effective:
        view = {"packs": view["packs"], "overrides": view["overrides"]}
    if as_json:
        from planner.render.json import render_json

        click.echo(render_json(view))
        return 0
    from planner.render.console import render_overrides, render_rows

    render_rows("packs (load order)", ["name", "version", "layer", "source", "rules", "params", "overrides"],
                [[p["name"], p["version"], p["layer"], p["source"], str(p["rules"]), str(p["params"]),
                  str(p["overrides"])] for p in view["packs"]])
    if effective:
        render_rows("params", ["name", "value", "default", "set by", "unit", "may be set by rules", "source"],
                    [[n, repr(p["value"]), repr(p["default"]), p["set_by"], p["unit"] or "",
                      ", ".join(p["may_be_set_by_rules"]), p["source"] or ""] for n, p in view["params"].items()])
        render_rows("rules", ["id", "stage", "priority", "enabled", "defined at", "changed by"],
                    [[r["id"], r["stage"], str(r["priority"]), "yes" if r["enabled"] else "no", r["defined_at"],
                      "; ".join(f"{k}: {v}" for k, v in r["provenance"].items() if v.startswith("override"))]
                     for r in view["rules"]])
    render_overrides(view["overrides"])
    return 0


@rules.command("explain")
@click.argument("rule_id")
@click.option("--facts", "facts_file", required=True, type=click.Path(),
              help="A pack test file, a list of facts, or an audit log written by plan --audit-log.")
@click.option("--case", help="With a pack test file: apply this case's patch.")
@click.option("--rules", "extra", multiple=True, type=click.Path(), help="Site rule pack (file or dir).")
@click.option("--json", "as_json", is_flag=True)
def rules_explain(rule_id: str, facts_file: str, case: str | None, extra: tuple[str, ...], as_json: bool) -> int:
    """Tell why RULE fires or does not on the given facts: each condition with the value it saw."""
    from planner.policy.explain import explain
    from planner.policy.loader import load_packset
    from planner.policy.packtest import load_facts_file

    facts, layers = load_facts_file(Path(facts_file), case)
    ex = explain(load_packset((*extra, *map(str, layers)), with_lines=True), rule_id, facts)
    if as_json:
        from planner.render.json import render_json

        click.echo(render_json(ex.to_json()))
        return 0
    from planner.render.console import render_rule_explanation

    render_rule_explanation(ex)
    return 0


@rules.command("lint")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--strict", is_flag=True, help="Exit 1 on findings (engine-limit risks), not only on errors.")
def rules_lint(paths: tuple[str, ...], strict: bool) -> int:
    """Validate the shipped packs plus the site packs given; print every problem, one per line."""
    from planner.policy.lint import lint
    from planner.policy.loader import site_pack_paths, vendor_pack_paths
    from planner.render.console import render_lint

    report = lint(vendor_pack_paths() + site_pack_paths(paths, use_env=False))
    render_lint(report.errors, report.findings)
    if report.errors:
        click.echo(f"{len(report.errors)} error(s)", err=True)
        return 2
    ps = report.packset
    assert ps is not None
    click.echo(f"ok: {len(ps.packs)} pack(s), {len(ps.rules)} rules, {len(ps.params)} params"
               + (f", {len(report.findings)} finding(s)" if report.findings else ""))
    return 1 if strict and report.findings else 0


@rules.command("test")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--evaluator", type=click.Choice(["both", "durable", "reference"]), default="both", show_default=True)
@click.option("--coverage", is_flag=True,
              help="Fail unless every rule under test fires in one case and not in another.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def rules_test(paths: tuple[str, ...], evaluator: str, coverage: bool, fmt: str) -> int:
    """Run pack tests (*.test.yaml) through durable-rules and the reference evaluator (they must agree).

    Exit 0 when every case passes, 1 on a failing case or coverage gap, 2 on an invalid pack or test file.
    """
    from planner.policy import engine
    from planner.policy.loader import read_pack_file, vendor_pack_paths
    from planner.policy.packtest import coverage as cover
    from planner.policy.packtest import find_test_files, run_test_file, test_layers
    from planner.resources import rules_dir

    evaluators: tuple[str, ...] = ("durable", "reference") if evaluator == "both" else (evaluator,)
    if "durable" in evaluators and not engine.available():
        click.echo("note: durable_rules is not installed; running the reference evaluator only", err=True)
        evaluators = ("reference",)
    base = [read_pack_file(p) for p in vendor_pack_paths()]
    files = find_test_files([Path(p) for p in paths] if paths else [rules_dir()])
    results = [res for f in files for res in run_test_file(f, base, evaluators)]
    failed = sum(not r.passed for r in results)
    site_rules = {r.id for f in files for p in test_layers(f) for r in p.rules}
    scope = site_rules or {r.id for p in base for r in p.rules if r.enabled}
    gaps = cover(results, scope) if coverage else {"never_fired": [], "never_not_fired": []}
    if fmt == "json":
        from planner.render.json import render_json

        click.echo(render_json({"cases": [r.__dict__ for r in results], "evaluators": list(evaluators),
                                "summary": {"passed": len(results) - failed, "failed": failed},
                                "coverage": gaps if coverage else None}))
    else:
        from planner.render.console import render_pack_tests

        render_pack_tests(results, gaps if coverage else None)
    return 1 if failed or gaps["never_fired"] or gaps["never_not_fired"] else 0


@cli.command("check-log")
@click.argument("log", type=click.Path())
@click.option("--model", help="Model directory or id (default: the model the log names; without a loadable one "
                               "check-log shows what the log says, with no prediction).")
@click.option("--gpu", help="GPU name, alias or catalog id (for speeds; memory comes from the log when printed).")
@click.option("--vram-gib", type=float, help="GPU memory in GiB when the log does not print it.")
@click.option("--json", "as_json", is_flag=True, help="Print {reported, predicted, differences} as JSON.")
def check_log(log: str, model: str | None, gpu: str | None, vram_gib: float | None, as_json: bool) -> int:
    """Compare a real vLLM startup log with the plan for the same configuration."""
    from planner.checklog import CONTRACT_KEYS
    from planner.checklog import check_log as run_check_log

    result = run_check_log(Path(log), model=model, gpu=gpu, vram_gib=vram_gib)
    if as_json:
        from planner.render.json import render_json

        click.echo(render_json(result))
        return 0
    from planner.render.console import render_rows, render_warnings

    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:,.2f}"
        if isinstance(v, int) and not isinstance(v, bool):
            return f"{v:,}"
        return str(v)

    def diff(d: Any) -> str:
        if not isinstance(d, dict):
            return ""
        if "delta" not in d:
            return "differs"
        if d["delta"] == 0:
            return "same"
        rel = f" ({d['relative']:+.1%})" if d.get("relative") is not None else ""
        return f"{d['delta']:+,.2f}{rel}" if isinstance(d["delta"], float) else f"{d['delta']:+,}{rel}"

    rep, pred, dif = result["reported"], result["predicted"], result["differences"]
    hw = result["hardware"]
    if result["note"]:  # no model config: what the log says, alone
        gpu = f"{hw['gpu_count']} x {hw['gpu'] or 'GPU'}" + (
            f" ({hw['memory_gib_per_gpu']} GiB per GPU)" if hw["memory_gib_per_gpu"] else "")
        render_rows(f"{result['source']}: {gpu}, as the log reports it", ["quantity", "reported"],
                    [[k, fmt(rep[k])] for k in CONTRACT_KEYS])
        settings = {k: v for k, v in result["settings"].items() if v is not None}
        if settings:
            render_rows("settings the log shows", ["setting", "value"], [[k, fmt(v)] for k, v in settings.items()])
        render_warnings(w for w in result["warnings"] if w != result["note"])
        from planner.render.text import plain

        click.echo(f"note: {plain(result['note'])}")
        return 0
    render_rows(f"{result['source']}: {hw['gpu_count']} x {hw['gpu']} ({hw['memory_gib_per_gpu']} GiB per GPU)",
                ["quantity", "reported", "predicted", "difference"],
                [[k, fmt(rep[k]), fmt(pred[k]), diff(dif[k])] for k in CONTRACT_KEYS])
    render_warnings(result["warnings"])
    return 0


def main() -> None:
    """Console-script entry point."""
    cli()


if __name__ == "__main__":
    main()

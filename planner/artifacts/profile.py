"""profile.yaml: the request behind a plan, as a commented YAML file people edit and replay.

`vllm-planner plan --profile profile.yaml` re-plans it; flags given on the command line win over
the file. The file holds the *request* (model, GPUs, workload, pins), never the decisions, so a
replay reproduces the plan's configuration with the same packs, and an edit (a longer context, a
pinned TP) re-plans from there. Writing is pure; reading parses a user file and names the file,
line and key of every problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from planner.errors import InputError
from planner.schemas import Pinned, PlanRequest

SCHEMA = "vllm-planner/profile/1"
_INFO_KEYS = ("schema", "plan_id")


def profile_request(req: PlanRequest, *, vllm_version: str, gpu: str | None, gpus: int, base: Path) -> dict[str, Any]:
    """The request to record: the resolved vLLM version, the GPUs as planned, absolute file paths.

    A live probe is recorded as the GPU model and count it found (a replay elsewhere plans for empty
    GPUs of that model); saved captures and site packs are recorded by absolute path.
    """
    data = req.model_dump(mode="json")
    data["vllm_version"] = vllm_version
    probed_live = not req.gpu and not req.from_file and not req.vram_gib
    if probed_live and gpu:
        data["gpu"], data["gpus"] = gpu, gpus
    if req.from_file:
        files = req.from_file if isinstance(req.from_file, list) else [req.from_file]
        data["from_file"] = [str((base / f).resolve()) for f in files]
    data["rules"] = _pack_file_list(base, req.rules)
    model_dir = base / req.model
    if model_dir.is_dir():
        data["model"] = str(model_dir.resolve())
    spec = data["pinned"].get("speculative_config")
    draft = spec.get("model") if isinstance(spec, dict) else None
    if isinstance(draft, str) and draft and (base / draft).is_dir():  # a local draft replays from anywhere too
        data["pinned"]["speculative_config"] = {**spec, "model": str((base / draft).resolve())}
    return data


def _pack_file_list(base: Path, rules: list[str]) -> list[str]:
    """The site pack files behind --rules, each by absolute path: a directory given on the command line is
    recorded as the files it held (a profile names files only; it never makes a replay walk a directory)."""
    from planner.policy.loader import pack_files

    out: list[str] = []
    for r in rules:
        target = base / r
        out += [str(f.resolve()) for f in pack_files(target)] if target.is_dir() else [str(target.resolve())]
    return list(dict.fromkeys(out))


def profile_yaml(data: dict[str, Any], *, stamp_line: str, plan_id: str) -> str:
    """The profile text: every request field with its description as a comment, pins included."""
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString as Quoted

    from planner.yamlio import dump_yaml

    def q(v: Any) -> Any:  # strings quoted, so `0.11` or an all-digit id stays a string when read back
        if isinstance(v, str):
            return Quoted(v)
        if isinstance(v, dict):  # a JSON pin (--speculative-config, --limit-mm-per-prompt)
            return {k: q(x) for k, x in v.items()}
        return [q(x) for x in v] if isinstance(v, list) else v

    doc = CommentedMap()
    doc["schema"] = Quoted(SCHEMA)
    doc["plan_id"] = Quoted(plan_id)
    doc.yaml_add_eol_comment("the plan this request produced (informational)", "plan_id")
    for name, field in PlanRequest.model_fields.items():
        if name == "pinned":
            pins = CommentedMap()
            for pname, pfield in Pinned.model_fields.items():
                pins[pname] = q(data["pinned"].get(pname))
                pins.yaml_add_eol_comment(f"{pfield.description}; null = let the planner decide", pname)
            doc["pinned"] = pins
            doc.yaml_set_comment_before_after_key("pinned", before="Settings fixed exactly as `vllm serve` gets "
                                                  "them (vLLM's spelling and values).")
            continue
        doc[name] = q(data.get(name))
        if field.description:
            doc.yaml_add_eol_comment(field.description, name)
    doc.yaml_set_start_comment(f"{stamp_line}\nReplay: vllm-planner plan --profile profile.yaml "
                               "(flags on the command line win over this file). Edit freely.")
    return dump_yaml(doc)


def read_profile(path: Path) -> dict[str, Any]:
    """The request fields of a profile file (validated later, merged with command-line flags)."""
    from planner.files import read_bounded
    from planner.yamlio import line_of, load_yaml_text, to_plain

    raw = read_bounded(Path(path), limit=1 << 20, what="a profile")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    doc = load_yaml_text(text, str(path))
    if not isinstance(doc, dict):
        raise InputError(f"{path}: a profile is a YAML mapping of request fields, not {type(doc).__name__}")
    schema = doc.get("schema")
    if schema is not None and schema != SCHEMA:
        raise InputError(f"{path}:{line_of(doc, 'schema')}: schema {schema!r} is not {SCHEMA!r}")
    known = set(PlanRequest.model_fields) | set(_INFO_KEYS)
    for key in doc:
        if key not in known:
            raise InputError(f"{path}:{line_of(doc, key)}: unknown profile field {key!r} "
                             f"(known: {', '.join(sorted(PlanRequest.model_fields))})")
    pins = doc.get("pinned")
    if pins is not None and not isinstance(pins, dict):
        raise InputError(f"{path}:{line_of(doc, 'pinned')}: pinned must be a mapping of vLLM settings")
    for key in pins or {}:
        if key not in Pinned.model_fields:
            raise InputError(f"{path}:{line_of(pins, key)}: unknown pinned setting {key!r} "
                             f"(known: {', '.join(Pinned.model_fields)})")
    data = {k: v for k, v in to_plain(doc).items() if k not in _INFO_KEYS}
    for key in ("rules", "from_file"):  # lists of paths; one path alone is accepted as a list of one
        value = data.get(key)
        if isinstance(value, str):
            data[key] = [value]
        elif value is not None and not (isinstance(value, list) and all(isinstance(v, str) and v for v in value)):
            raise InputError(f"{path}:{line_of(doc, key)}: {key} must be a list of file paths, got {value!r}")
    if isinstance(data.get("pinned"), dict):
        data["pinned"] = {k: v for k, v in data["pinned"].items() if v is not None}
    data = _relative_to(Path(path).resolve().parent, data)
    _check_pack_files(path, line_of(doc, "rules"), data.get("rules") or [])
    return data


def _check_pack_files(path: Path, line: int | None, rules: list[str]) -> None:
    """A profile's rule packs are the files it names, each read as it is: a directory (`rules: ["/"]`) is
    refused, never walked, and so is anything but a regular file (a FIFO would block the plan)."""
    import os
    import stat

    where = f"{path}:{line}" if line else str(path)
    for r in rules:
        try:
            mode = os.stat(r).st_mode
        except OSError:
            continue  # missing or unreadable: the pack loader names it
        if stat.S_ISDIR(mode):
            raise InputError(f"{where}: rules: {r} is a directory; a profile names each rule pack file "
                             "(a directory is never walked from a profile)")
        if not stat.S_ISREG(mode):
            raise InputError(f"{where}: rules: {r} is not a regular file, expected a rule pack")


def _relative_to(base: Path, data: dict[str, Any]) -> dict[str, Any]:
    """Relative paths in a profile mean relative to the profile's directory, wherever the replay runs."""
    def fix(p: Any) -> Any:
        return str(base / p) if isinstance(p, str) and p and not Path(p).is_absolute() else p

    for key in ("rules", "from_file"):
        if isinstance(data.get(key), list):
            data[key] = [fix(v) for v in data[key]]
    model = data.get("model")
    if isinstance(model, str) and model and not Path(model).is_absolute() and (base / model).is_dir():
        data["model"] = str(base / model)
    return data

"""Canonical JSON for --json output and golden files."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel


def render_json(obj: BaseModel | dict[str, Any]) -> str:
    data = obj.model_dump(mode="json") if isinstance(obj, BaseModel) else obj
    return json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False)

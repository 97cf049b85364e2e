"""Rewrite openapi.yaml's exact 2xx response examples with what the shipped app answers now.

    python -m tests.contract.refresh_examples

For after a change that moves answers on purpose (retrained reference models, a new member of an
answer): every example compared exactly by tests/contract/test_examples.py and written on one line
(`value: {...}`) is replaced by the app's answer to its x-request, keeping the example's own
request_id. Review the diff: the examples are the contract, this only saves retyping numbers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from service.app import create_app
from tests.contract.conftest import shipped_settings
from tests.contract.spec import SPEC_PATH
from tests.contract.test_examples import EXAMPLES, build


def refresh(spec_path: Path = SPEC_PATH) -> int:
    text = spec_path.read_text()
    app = create_app(shipped_settings())
    changed = 0
    with app.test_client() as client:
        for path, method, status, mimetype, _name, example in EXAMPLES:
            how = example.get("x-request") or {}
            if not 200 <= status < 300 or example.get("x-compare", "exact") != "exact":
                continue
            if mimetype != "application/json" or "app" in how:
                continue
            old = json.dumps(example["value"], ensure_ascii=False)
            response = client.open(**build(path, method, how))
            body = response.get_json()
            if isinstance(body, dict) and "request_id" in example["value"]:
                body["request_id"] = example["value"]["request_id"]
            new = json.dumps(body, ensure_ascii=False)
            line = re.compile(r"(\n\s*value: )" + re.escape(old) + r"\n")
            if new != old and line.search(text):
                text = line.sub(lambda m: m.group(1) + new + "\n", text, count=1)  # noqa: B023
                changed += 1
    spec_path.write_text(text)
    return changed


if __name__ == "__main__":
    print(f"{refresh()} example(s) rewritten")

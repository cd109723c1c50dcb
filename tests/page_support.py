"""The explorer page's own JavaScript, run in Node.js (no browser): its formatters and its views,
fed by a real node's API or by documents a test hands in.

`run_page(expr, api=URL)` or `run_page(expr, docs={"tx/ab..": {...}})` evaluates `expr` (an
expression, awaited) after the page's script, with `document`, `window` and `location` stubbed, and
returns its value (JSON).  Tests that need it skip where there is no `node`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[1] / "transxnode" / "api" / "static" / "explorer.html"
NODE = shutil.which("node") or shutil.which("nodejs")

_STUBS = """
const document = {querySelector: () => ({innerHTML: "", addEventListener() {}})};
const window = {addEventListener() {}};
const location = {hash: "#/-"};
const setInterval = () => 0;
const API = %(api)s, DOCS = %(docs)s;
const fetch = API ? ((path) => globalThis.fetch(API + path)) : (async (path) => {
  const p = path.replace(/^\\/api\\//, "");
  return {ok: p in DOCS, status: p in DOCS ? 200 : 404, json: async () => DOCS[p] || {error: "not found"}};
});
"""


def run_page(expr: str, api: str | None = None, docs: dict | None = None, html: str | None = None):
    if NODE is None:
        pytest.skip("Node.js is not installed")
    page = html if html is not None else PAGE.read_text()
    script = re.search(r"<script>(.*)</script>", page, re.S).group(1).replace('"use strict";', "", 1)
    program = ('"use strict";\n' + _STUBS % {"api": json.dumps(api), "docs": json.dumps(docs or {})} + script +
               f"\n(async () => {{ process.stdout.write(JSON.stringify(await ({expr}))); }})()"
               ".catch((e) => { console.error(e); process.exit(1); });\n")
    r = subprocess.run([NODE, "-"], input=program, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError(f"the page's script failed in Node.js: {r.stderr}")
    return json.loads(r.stdout)


def text_of(html: str) -> str:
    """What a person sees of an HTML fragment: tags dropped, cells apart."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()

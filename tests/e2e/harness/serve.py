"""Development harness for the reading screen: the real templates and static files, a fake reading API.

    .venv/bin/python tests/e2e/harness/serve.py [PORT]      (then open http://127.0.0.1:PORT/t/jpc-1/read/)

Renders templates/reading/*.html with Django's template engine (a stub URLconf stands in for the project's,
so the harness works whatever state the backend is in), serves /static/ through the staticfiles finders,
and answers the API of the reading contract from reads.json, in memory, with the backend's version rules.
Two synthetic radiographs ("a": 2048², "b": 1841×1955) are generated at start-up: a display PNG and the
packed 16-bit values PNG. Test hooks: GET /_log (events and saves), POST /_fault {"mode": "down"|"nosave"|""},
POST /_reset, POST /_timing {"idle_after_seconds", ...}, POST /_other_tab/<id> (a save from another tab:
{"findings", "impression"}).
Not a test and not run by the test suite; only for developing the client in Chromium.
"""
from __future__ import annotations

import copy
import io
import json
import os
import re
import sys
import threading
import types
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles import finders  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.template import engines  # noqa: E402
from django.template.loader import render_to_string  # noqa: E402
from django.test import RequestFactory  # noqa: E402
from django.urls import include, path  # noqa: E402


def _stub(request, *args, **kwargs):
    return HttpResponse()


urls = types.ModuleType("harness_urls")
urls.urlpatterns = [
    path("", include(([path("", _stub, name="home"), path("t/<slug:code>/", _stub, name="detail")], "trial"))),
    path("", include(([path("t/<slug:code>/read/<int:read_id>/", _stub, name="read")], "reading"))),
    path("admin/", include(([path("", _stub, name="index")], "admin"))),
    path("api/docs/", _stub, name="api-docs"),
    path("accounts/login/", _stub, name="login"),
    path("accounts/", _stub, name="account"),
    path("accounts/logout/", _stub, name="logout"),
]
sys.modules["harness_urls"] = urls
settings.ROOT_URLCONF = "harness_urls"


class FakeUser:
    is_authenticated = True
    is_staff = False

    def get_username(self):
        return "reader-1"


# ---------------------------------------------------------------------------------------------- images
def phantom(w: int, h: int, seed: int) -> np.ndarray:
    """A chest-like 12-bit picture (higher = brighter): body, lungs, heart, spine, ribs, noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    x = (x / w) * 2 - 1
    y = (y / h) * 2 - 1
    img = np.full((h, w), 250.0, np.float32)
    body = (x / 0.88) ** 2 + (y / 1.05) ** 2 < 1
    img[body] = 2300
    for cx in (-0.36, 0.36):
        lung = ((x - cx) / 0.27) ** 2 + ((y + 0.05) / 0.6) ** 2 < 1
        img[lung] = 950 + 250 * (y[lung] + 0.6)
        ribs = lung & (np.abs(np.sin(y * 16 + (x - cx) ** 2 * 10)) > 0.9)
        img[ribs] += 450
    heart = ((x - 0.08) / 0.3) ** 2 + ((y - 0.28) / 0.28) ** 2 < 1
    img[heart] = np.maximum(img[heart], 2500)
    img[(np.abs(x) < 0.07) & body] = 3200
    img[(y > 0.55) & body] = np.maximum(img[(y > 0.55) & body], 2600)   # diaphragm and abdomen
    img += rng.normal(0, 35, img.shape)
    return np.clip(img, 0, 4095).astype(np.uint16)


def pngs(values: np.ndarray) -> tuple[bytes, bytes, list[float]]:
    lo, hi = np.percentile(values, [1, 99])
    center, width = float((lo + hi) / 2), float(hi - lo)
    display = np.clip((values.astype(np.float32) - (center - width / 2)) / width * 255, 0, 255).astype(np.uint8)
    packed = np.zeros(values.shape + (3,), np.uint8)
    packed[..., 0] = values >> 8
    packed[..., 1] = values & 0xFF
    out = []
    for arr, mode in ((display, "L"), (packed, "RGB")):
        buf = io.BytesIO()
        Image.fromarray(arr, mode).save(buf, format="PNG", compress_level=1)
        out.append(buf.getvalue())
    return out[0], out[1], [round(center), round(width)]


IMAGES: dict[str, dict] = {}
for key, (w, h, seed) in {"a": (2048, 2048, 1), "b": (1841, 1955, 2)}.items():
    vals = phantom(w, h, seed)
    disp, packed, auto = pngs(vals)
    IMAGES[key] = {"display": disp, "values": packed, "w": w, "h": h, "auto": auto,
                   "probe": [[x, y, int(vals[y, x])]
                             for x, y in ((0, 0), (w // 2, h // 3), (w - 1, h - 1), (777, 1333))]}

# ---------------------------------------------------------------------------------------------- fake API
FIXTURE = json.loads((HERE / "reads.json").read_text())
LOCK = threading.Lock()
STATE: dict = {}


def reset() -> None:
    STATE.clear()
    STATE.update(reads={r["id"]: copy.deepcopy(r) for r in FIXTURE["reads"]}, saved={}, log=[], fault="",
                 timing={"idle_after_seconds": 60, "autosave_every_seconds": 5, "heartbeat_seconds": 15})


reset()


def now() -> str:
    return datetime.now(UTC).isoformat()


def order() -> list[dict]:
    return list(STATE["reads"].values())


def payload(read: dict) -> dict:
    rid, img = read["id"], IMAGES[read["image"]]
    reads = order()
    i = reads.index(read)
    nxt = next((r for r in reads[i + 1:] if r["available"] and r["status"] != "submitted"), None)
    windows = {"file": [2048, 4096] if read["image"] == "a" else None, "auto": img["auto"],
               "lung": [1250, 1500], "mediastinum": [2400, 900], "bone": [2800, 2400]}
    if read.get("display_only"):
        windows = {}
    return {
        "id": rid, "page_url": f"/t/jpc-1/read/{rid}/", "case": read["case"], "position": i + 1, "of": len(reads),
        "status": read["status"],
        "image": {"display_url": f"/img/{read['image']}/display.png",
                  "values_url": None if read.get("display_only") else f"/img/{read['image']}/values.png",
                  "width": img["w"], "height": img["h"], "windows": windows},
        "clinical_history": read["clinical_history"], "findings": FIXTURE["findings"], "draft": read.get("draft"),
        "saved": STATE["saved"].get(rid), "report": read.get("report"),
        "urls": {k: f"/api/reads/{rid}/{k}/" for k in ("events", "autosave", "submit", "correct")},
        "next": {"id": nxt["id"], "api_url": f"/api/reads/{nxt['id']}/",
                 "page_url": f"/t/jpc-1/read/{nxt['id']}/"} if nxt else None,
        **STATE["timing"],
    }


def text_of(body: dict) -> dict:
    return {"findings": body.get("findings", ""), "impression": body.get("impression", ""),
            "finding_flags": {f: bool((body.get("finding_flags") or {}).get(f)) for f in FIXTURE["findings"]}}


def api(method: str, rid: int, action: str | None, body: dict) -> tuple[int, dict]:
    read = STATE["reads"].get(rid)
    if read is None:
        return 404, {"detail": "This case is not on your worklist."}
    if action is None and method == "GET":
        return 200, payload(read)
    STATE["log"].append({"read": rid, "action": action, "method": method, "body": body, "server_time": now()})
    submitted = read["status"] == "submitted"
    if action == "events":
        if submitted:
            return 409, {"detail": "This read is submitted; its time is closed.", "code": "already_submitted"}
        if body.get("kind") == "opened" and read["status"] == "assigned":
            read["status"] = "in_progress"
        return 201, {"server_time": now()}
    if action in ("autosave", "submit"):
        if submitted:
            return 409, {"detail": "This report was already submitted.", "code": "already_submitted"}
        saved, base, tab = STATE["saved"].get(rid), body.get("base_version"), body.get("tab_id", "")
        stale = saved is not None and saved["tab_id"] != tab and (base is None or base < saved["version"])
        if stale:
            return 409, {"detail": "Another tab saved a newer text of this report.", "code": "stale_version",
                         "current": {k: v for k, v in saved.items() if k != "tab_id"}}
        if action == "autosave":
            version = (saved["version"] if saved else 0) + 1
            STATE["saved"][rid] = {**text_of(body), "version": version, "saved_at": now(), "tab_id": tab}
            read["status"] = "in_progress"
            return 200, {"version": version, "saved_at": now()}
        if not body.get("impression", "").strip():
            return 400, {"detail": "An impression is required.", "code": "invalid", "field": "impression"}
        read["report"] = {**text_of(body), "version": 1, "reason": "", "submitted_at": now(), "signed_at": None}
        read["status"] = "submitted"
        return 201, {"report": read["report"]}
    if action == "correct":
        if not submitted:
            return 409, {"detail": "Only a submitted report can be corrected.", "code": "conflict"}
        if not body.get("reason", "").strip():
            return 400, {"detail": "A correction needs a reason.", "code": "invalid", "field": "reason"}
        read["report"] = {**text_of(body), "version": read["report"]["version"] + 1, "reason": body["reason"],
                          "submitted_at": now(), "signed_at": None}
        return 201, {"report": read["report"]}
    return 404, {"detail": "Not found."}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):  # quiet
        pass

    def send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        # The policy production will use: no inline script or style attribute, nothing from elsewhere.
        self.send_header("Content-Security-Policy",
                         "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'")
        self.end_headers()
        self.wfile.write(body)

    def json(self, status: int, data) -> None:
        self.send(status, json.dumps(data).encode(), "application/json")

    def page(self, template: str, context: dict) -> None:
        for loader in engines["django"].engine.template_loaders:   # pick up template edits at once
            if hasattr(loader, "reset"):
                loader.reset()
        request = RequestFactory().get(self.path)
        request.user = FakeUser()
        html = render_to_string(template, context, request=request)
        self.send(200, html.encode(), "text/html; charset=utf-8")

    def route(self, method: str) -> None:
        p = self.path.split("?")[0]
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}") if length else {}
        with LOCK:
            if p == "/_log":
                return self.json(200, {"log": STATE["log"], "saved": STATE["saved"],
                                       "images": {k: v["probe"] for k, v in IMAGES.items()},
                                       "reads": {k: {"status": r["status"], "report": r.get("report")}
                                                 for k, r in STATE["reads"].items()}})
            if p == "/_reset":
                reset()
                return self.json(200, {})
            if p == "/_timing":
                STATE["timing"].update(body)
                return self.json(200, {})
            if p == "/_fault":
                STATE["fault"] = body.get("mode", "")
                return self.json(200, {})
            if m := re.fullmatch(r"/_other_tab/(\d+)", p):
                rid, saved = int(m[1]), STATE["saved"].get(int(m[1]))
                STATE["saved"][rid] = {**text_of(body), "version": (saved["version"] if saved else 0) + 1,
                                       "saved_at": now(), "tab_id": "other-tab"}
                return self.json(200, STATE["saved"][rid])
            if m := re.fullmatch(r"/api/reads/(\d+)/(?:(events|autosave|submit|correct)/)?", p):
                if STATE["fault"] == "down" or (STATE["fault"] == "nosave" and m[2] == "autosave"):
                    return self.send(503, b"Service Unavailable", "text/plain")
                return self.json(*api(method, int(m[1]), m[2], body))
            if p in ("/t/jpc-1/read/", "/"):
                # the context of reading.views.worklist_page: the worklist's rows, where to resume
                rows = [types.SimpleNamespace(id=r["id"], position=i + 1, case_code=r["case"], status=r["status"],
                                              available=r["available"]) for i, r in enumerate(order())]
                resume = next((r for r in rows if r.available and r.status != "submitted"), None)
                done = sum(r.status == "submitted" for r in rows)
                worklist = types.SimpleNamespace(rows=rows, done=done, total=len(rows), resume=resume)
                return self.page("reading/worklist.html", {
                    "trial": FIXTURE["trial"], "worklist": worklist, "progress": {"done": done, "total": len(rows)},
                    "resume_url": f"/t/jpc-1/read/{resume.id}/" if resume else None,
                    "resume_id": resume.id if resume else None,
                })
            if m := re.fullmatch(r"/t/jpc-1/read/(\d+)/", p):
                return self.page("reading/read.html", {"trial": FIXTURE["trial"], "read_api_url": f"/api/reads/{m[1]}/",
                                                       "worklist_url": "/t/jpc-1/read/"})
            if m := re.fullmatch(r"/img/(\w)/(display|values)\.png", p):
                return self.send(200, IMAGES[m[1]][m[2]], "image/png")
            if p.startswith("/static/") and (found := finders.find(p[len("/static/"):])):
                ctype = {".js": "text/javascript",
                         ".css": "text/css"}.get(Path(found).suffix, "application/octet-stream")
                return self.send(200, Path(found).read_bytes(), ctype)
        self.send(404, b"not found", "text/plain")

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_PUT(self):
        self.route("PUT")


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8765
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"harness on http://127.0.0.1:{port}/t/jpc-1/read/", flush=True)
    server.serve_forever()

"""Drives the harness (serve.py) in Chromium and checks the reading client end to end; saves screenshots.

    .venv/bin/python tests/e2e/harness/drive.py PORT [OUT_DIR]

A development aid (not collected by pytest). The server must be started fresh (or POST /_reset is sent here).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

PORT = sys.argv[1]
OUT = Path(sys.argv[2] if len(sys.argv) > 2 else "test-artifacts/reading-harness")
OUT.mkdir(parents=True, exist_ok=True)
BASE = f"http://127.0.0.1:{PORT}"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync", "--disable-quic"]


def log(page):
    return page.request.get(BASE + "/_log").json()


def kinds(page, read_id):
    return [e["body"].get("kind") for e in log(page)["log"] if e["read"] == read_id and e["action"] == "events"]


def shown(page):
    page.wait_for_function("() => document.getElementById('read-app').dataset.imageShownMs !== undefined")
    return int(page.get_attribute("#read-app", "data-image-shown-ms"))


def status(page):
    return page.inner_text("#save-status")


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        check.failed += 1


check.failed = 0

with sync_playwright() as p:
    browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
    ctx = browser.new_context(viewport={"width": 1440, "height": 900})
    page = ctx.new_page()
    console = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: console.append(f"PAGEERROR: {e}"))
    page.request.post(BASE + "/_reset")
    page.request.post(BASE + "/_timing",
                      data=json.dumps({"autosave_every_seconds": 1, "heartbeat_seconds": 2, "idle_after_seconds": 3}))

    # Worklist → assisted read.
    page.goto(BASE + "/t/jpc-1/read/")
    check(page.inner_text("[data-testid=progress]").startswith("1 of 5"), "worklist shows progress 1 of 5")
    page.screenshot(path=str(OUT / "worklist.png"))
    page.click("[data-testid=resume]")
    ms = shown(page)
    check(ms < 5000, f"radiograph painted {ms} ms after the worklist click")
    check(page.inner_text("#case-code") == "C0007", "case code shown")
    check("AI draft" in page.inner_text("#text-source"), "AI draft label shown")
    check(page.input_value("#findings").startswith("Blunting"), "draft pre-filled")

    # Values decode byte-exact.
    page.wait_for_function("() => CxrReading.viewer.state().valuesLoaded")
    probes = log(page)["images"]["a"]
    got = [page.evaluate("([x, y]) => CxrReading.viewer.valueAt(x, y)", [x, y]) for x, y, _ in probes]
    check(got == [v for _, _, v in probes], f"16-bit values decoded exactly {got}")
    page.wait_for_timeout(300)
    page.screenshot(path=str(OUT / "read-assisted.png"))

    # Window/level by drag, presets, invert, zoom, pan, reset.
    box = page.locator("#viewer canvas").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    before = page.evaluate("() => CxrReading.viewer.state()")
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx - 150, cy + 60, steps=8)
    page.mouse.up()
    after = page.evaluate("() => CxrReading.viewer.state()")
    check(after["width"] < before["width"] and after["center"] > before["center"] and after["renderingValues"],
          f"drag changes W/L ({before['width']:.0f}/{before['center']:.0f} → "
          f"{after['width']:.0f}/{after['center']:.0f})")
    page.mouse.click(cx, cy)  # focus the viewer
    page.keyboard.press("3")
    check(page.evaluate("() => CxrReading.viewer.state().preset") == "lung", "key 3 = lung preset")
    page.keyboard.press("i")
    check(page.evaluate("() => CxrReading.viewer.state().invert"), "I inverts")
    page.mouse.move(cx, cy)
    page.mouse.wheel(0, -600)
    page.wait_for_timeout(100)
    z = page.evaluate("() => CxrReading.viewer.state()")
    check(not z["fitted"] and z["scale"] > before["scale"], "wheel zooms in")
    page.mouse.move(cx, cy)
    page.mouse.down(button="right")
    page.mouse.move(cx + 80, cy + 40, steps=4)
    page.mouse.up(button="right")
    page.wait_for_timeout(400)
    page.screenshot(path=str(OUT / "viewer-lung-inverted-zoomed.png"))
    t = [page.evaluate("() => CxrReading.viewer.timeWindowing(false)") for _ in range(5)]
    th = [page.evaluate("() => CxrReading.viewer.timeWindowing(true)") for _ in range(5)]
    print(f"     W/L recompute, full 2048²: {min(t):.1f}–{max(t):.1f} ms; half level: {min(th):.1f}–{max(th):.1f} ms")
    page.keyboard.press("r")
    r = page.evaluate("() => CxrReading.viewer.state()")
    check(r["fitted"] and not r["invert"] and r["preset"] == "file", "R resets")
    page.keyboard.press("5")
    page.wait_for_timeout(300)
    page.screenshot(path=str(OUT / "viewer-bone.png"))
    page.keyboard.press("0")

    # Typing → first_edit, autosave.
    page.fill("#impression", "")
    page.type("#impression", "Small right effusion.", delay=5)
    page.check("#flag-0")
    page.wait_for_function("() => document.getElementById('save-status').textContent.startsWith('Saved')", timeout=8000)
    page.wait_for_timeout(1500)
    saved = log(page)["saved"].get("11")
    check(saved and saved["impression"] == "Small right effusion." and saved["finding_flags"]["pleural effusion"],
          "autosaved text and flag")
    ev = kinds(page, 11)
    check(ev[:2] == ["opened", "image_shown"] and "first_edit" in ev, f"events in order: {ev[:4]}")

    # Reload in the middle: text intact (from the server) and unsent text (from localStorage).
    page.request.post(BASE + "/_fault", data=json.dumps({"mode": "nosave"}))   # autosaves get 503
    page.type("#findings", " UNSENT", delay=1)
    page.wait_for_timeout(1500)
    page.reload()
    shown(page)
    check(page.input_value("#findings").endswith(" UNSENT"), "reload restores unsent text from this browser")
    check("Restored" in page.inner_text("#text-source"), "restored note shown: " + page.inner_text("#text-source"))
    page.request.post(BASE + "/_fault", data=json.dumps({"mode": ""}))
    page.wait_for_function("() => document.getElementById('save-status').textContent.startsWith('Saved')", timeout=8000)
    check(log(page)["saved"]["11"]["findings"].endswith(" UNSENT"), "restored text sent once the server answers")

    # Offline: status says so, text kept, sent when back.
    ctx.set_offline(True)
    page.type("#findings", " OFFLINE", delay=1)
    page.wait_for_function("() => document.getElementById('save-status').textContent.startsWith('Offline')",
                           timeout=8000)
    page.screenshot(path=str(OUT / "read-offline.png"))
    ctx.set_offline(False)
    page.wait_for_function("() => document.getElementById('save-status').textContent.startsWith('Saved')",
                           timeout=10000)
    check(log(page)["saved"]["11"]["findings"].endswith(" OFFLINE"), "offline text sent when back")
    page.request.post(BASE + "/_fault", data=json.dumps({"mode": "down"}))
    page.type("#findings", " DOWN", delay=1)
    page.wait_for_function("() => document.getElementById('save-status').textContent.startsWith('Offline')",
                           timeout=8000)
    page.request.post(BASE + "/_fault", data=json.dumps({"mode": ""}))
    page.wait_for_function("() => document.getElementById('save-status').textContent.startsWith('Saved')",
                           timeout=10000)
    check(log(page)["saved"]["11"]["findings"].endswith(" DOWN"), "text sent after a 503 outage")

    # Another tab saved: conflict shown, nothing overwritten.
    page.request.post(BASE + "/_other_tab/11",
                      data=json.dumps({"findings": "Other tab findings.", "impression": "Other tab impression."}))
    page.type("#findings", " MINE", delay=1)
    page.wait_for_selector("#conflict:not([hidden])", timeout=8000)
    check(log(page)["saved"]["11"]["findings"] == "Other tab findings.", "the other tab's text was not overwritten")
    page.screenshot(path=str(OUT / "read-conflict.png"))
    page.click("#conflict-keep")
    page.wait_for_function("() => document.getElementById('save-status').textContent.startsWith('Saved')", timeout=8000)
    check(log(page)["saved"]["11"]["findings"].endswith(" MINE"), "Keep mine re-saves on the newer version")

    # Idle, resumed, heartbeat.
    page.wait_for_timeout(4200)
    page.mouse.move(cx + 5, cy + 5)
    page.wait_for_timeout(300)
    ev = kinds(page, 11)
    check("heartbeat" in ev and "idle" in ev and "resumed" in ev and ev.index("idle") < ev.index("resumed"),
          "heartbeat, idle then resumed")

    # Submit: empty impression refused client-side; confirm modal; submitted view.
    page.fill("#impression", "   ")
    page.keyboard.press("Control+Enter")
    check(page.is_visible("#impression.is-invalid") and not page.is_visible("#confirm-modal"),
          "empty impression refused before the dialog")
    page.fill("#impression", "Small right pleural effusion; right basal pneumonia likely.")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#confirm-modal.show")
    page.wait_for_function("() => document.activeElement.id === 'confirm-button'")   # shown: the fade is over
    page.screenshot(path=str(OUT / "read-confirm.png"))
    page.click("#confirm-button")
    page.wait_for_selector("#report-banner:not([hidden])")
    check(log(page)["reads"]["11"]["status"] == "submitted", "submitted")
    check(page.evaluate("() => document.getElementById('findings').readOnly"), "submitted report read-only")
    page.wait_for_function("() => !document.body.classList.contains('modal-open')")
    page.wait_for_timeout(50)
    check(page.evaluate("() => document.activeElement.id") == "next-button",
          "focus on Next case after submit: " + page.evaluate("() => document.activeElement.outerHTML.slice(0, 60)"))
    page.screenshot(path=str(OUT / "read-submitted.png"))

    # Correction: needs a reason; new version.
    page.click("#correct-button")
    page.fill("#impression", "Small right pleural effusion.")
    page.click("#correction-submit")
    check(page.is_visible("#correction-reason.is-invalid"), "correction without a reason refused")
    page.fill("#correction-reason", "Pneumonia overcalled.")
    page.click("#correction-submit")
    page.wait_for_selector("#confirm-modal.show")
    page.click("#confirm-button")
    page.wait_for_function("() => document.getElementById('report-banner').textContent.includes('version 2')")
    check(log(page)["reads"]["11"]["report"]["version"] == 2, "correction is version 2")

    # Next case without a page reload; standard arm: empty editor, same screen.
    page.evaluate("() => { window.__sameDocument = true; }")
    page.click("#next-button")
    page.wait_for_function("() => document.getElementById('case-code').textContent === 'C0012'")
    ms = shown(page)
    check(page.evaluate("() => window.__sameDocument === true"), "next case loaded without a page reload")
    check(page.url.endswith("/t/jpc-1/read/12/"), "URL follows (pushState)")
    check(page.input_value("#findings") == "" and page.inner_text("#text-source").strip() == "",
          "standard arm: empty editor, no label")
    check(any("after next case" in c for c in console),
          f"next case painted in {page.get_attribute('#read-app', 'data-image-shown-ms')} ms")
    page.wait_for_timeout(400)
    page.screenshot(path=str(OUT / "read-standard.png"))
    # A read without a values PNG or windows: window/level on the display grey.
    page.click("#next-button")
    page.wait_for_function("() => document.getElementById('case-code').textContent === 'C0023'")
    shown(page)
    page.wait_for_function("() => CxrReading.viewer.state().valuesLoaded")
    st = page.evaluate("() => CxrReading.viewer.state()")
    check(st["center"] == 128 and st["width"] == 256 and st["preset"] == "auto", f"display-grey fallback window {st}")
    box = page.locator("#viewer canvas").bounding_box()
    page.mouse.move(box["x"] + 300, box["y"] + 300)
    page.mouse.down()
    page.mouse.move(box["x"] + 200, box["y"] + 340, steps=5)
    page.mouse.up()
    st = page.evaluate("() => CxrReading.viewer.state()")
    check(st["width"] < 256 and st["renderingValues"], "W/L works on the display grey")
    page.wait_for_timeout(300)
    page.screenshot(path=str(OUT / "read-display-only.png"))
    page.go_back()
    page.wait_for_function("() => document.getElementById('case-code').textContent === 'C0012'")
    page.go_back()
    page.wait_for_function("() => document.getElementById('case-code').textContent === 'C0007'")
    check(page.evaluate("() => window.__sameDocument === true"), "back button returns to the previous read in place")

    # A second tab gets its own tab id.
    tab1 = page.evaluate("() => CxrReading.tabId()")
    page2 = ctx.new_page()
    page2.goto(BASE + "/t/jpc-1/read/12/")
    shown(page2)
    check(page2.evaluate("() => CxrReading.tabId()") != tab1, "second tab, second tab id")
    page.reload()
    shown(page)
    check(page.evaluate("() => CxrReading.tabId()") == tab1, "reload keeps the tab id")

    # The help tooltip, and other screen sizes.
    page.hover(".cxr-help")
    page.wait_for_selector(".cxr-help-tip.show")
    page.screenshot(path=str(OUT / "viewer-help.png"))
    for w, h in ((1280, 720), (1920, 1080), (800, 1000)):
        page.set_viewport_size({"width": w, "height": h})
        page.wait_for_timeout(400)
        page.screenshot(path=str(OUT / f"read-{w}x{h}.png"))

    # No inline script or style: no CSP violation was reported.
    check(not any("Content Security Policy" in c for c in console), "no CSP violation")
    check(not any(c.startswith("PAGEERROR") for c in console), "no page error")
    for c in console:
        print("     console", c)
    browser.close()

print(f"FAILED: {check.failed}" if check.failed else "all ok")
sys.exit(1 if check.failed else 0)

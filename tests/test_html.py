"""report.html: rendered from a hand-made document (sweeps, a grid, an errored case, hostile text) and from a real
run, then opened in headless Chromium (Debian's chromium package, installed here when missing) through Playwright:
no console errors, no network, the summary and plots in the DOM, working filters, a screenshot that is not blank."""

from __future__ import annotations

import io
import json
import os
import subprocess
import textwrap
from html import escape
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import sync_playwright
from typer.testing import CliRunner

from oracle.cli import app
from oracle.report import html as report_html
from oracle.report.plot import value_scale

CHROMIUM = Path("/usr/bin/chromium")
HOSTILE = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2"> & "quoted"'
Z = [-100.0 + 5 * k for k in range(25)]
EDGES = [-3.4028234663852886e38, -1.0, -1.1754943508222875e-38, -1.401298464324817e-45, 0.0,
         1.401298464324817e-45, 1.1754943508222875e-38, 1.0, 3.4028234663852886e38]
GRID_X, GRID_Y = [-120.0 + 40 * k for k in range(7)], [10.0 ** k for k in range(-3, 3)]


def row(framework: str, output: str = "value", verdict: str = "ok", impl: str = "formula", **extra) -> dict:
    """A result row as the runner writes it."""
    return {"framework": framework, "impl": impl, "dtype": "float32", "output": output, "shape": [], "worst_index": [],
            "got": "inf" if verdict == "overflow" else "1.0", "reference": "100.0", "reference_digits": "100.0",
            "ulps": 0, "error_bits": "32.0" if verdict != "ok" else "0.0", "within_tolerance": verdict == "ok",
            "verdict": verdict, "inherent": False if verdict == "overflow" else None, "explanation": "",
            "cause": None, "kappa": "1.0", "precision_bits": 64, "verdict_counts": {verdict: 1}, "components": {},
            "rewrite": None, **extra}


def case(name: str, results: list[dict], tags: tuple[str, ...] = (), **extra) -> dict:
    reference = {"float32": {"precision_bits": 64, "gradient_check": "mpmath.diff on 1 scalar inputs at 128 bits",
                             "domain": [], "condition": "exact: 1 input directions, forward-over-reverse",
                             "subnormals": {"jax": {"flush_to_zero": True, "denormals_are_zero": True}},
                             "shadow": "replayed 14 operations"}}
    return {"id": name, "file": f"cases/{name}.yaml", "title": f"the {name} case", "kind": "loss", "tags": list(tags),
            "digest": "0" * 16, "summed": False, "reference": reference, "results": results, **extra}


def series(framework: str, output: str, values: list[float], bad, impl: str = "formula") -> dict:
    """A sweep series: 32 bits (overflow) where `bad`, 1 bit elsewhere, unmeasurable (domain) where bad is None."""
    flags = [bad(v) for v in values]
    return {"framework": framework, "impl": impl, "dtype": "float32", "output": output, "vectorised": True,
            "note": None, "error_bits": [None if f is None else 32.0 if f else 1.0 for f in flags],
            "verdicts": ["domain" if f is None else "overflow" if f else "ok" for f in flags]}


def sweep_cases() -> list[dict]:
    """A linspace sweep (two outputs, an impl), float32 edges on a symlog axis, and a 2-axis grid."""
    line = [series(fw, out, Z, lambda z: z < -88) for fw in ("tf", "torch", "jax") for out in ("value", "grad.z")]
    line.append(series("torch", "value", Z, lambda z: None if z == -85 else False, impl="softplus"))
    threshold = {"framework": "jax", "impl": "formula", "dtype": "float32", "output": "value", "verdict": "overflow",
                 "input": "z", "at": -90.0, "text": "jax formula value: overflow for z <= -90.0 (3 of 25 points)"}
    linspace = {"axes": [{"input": "z", "spec": "linspace", "scale": "linear", "values": Z}], "points": len(Z),
                "series": line, "thresholds": [threshold]}
    edges = {"axes": [{"input": "x", "spec": "float32_edges", "scale": "symlog", "values": EDGES}],
             "points": len(EDGES), "series": [series("jax", "value", EDGES, lambda x: None if x < 0 else x > 1)],
             "thresholds": []}
    grid = {"axes": [{"input": "x", "spec": "linspace", "scale": "linear", "values": GRID_X},
                     {"input": "y", "spec": "logspace", "scale": "log", "values": GRID_Y}],
            "points": len(GRID_X) * len(GRID_Y), "thresholds": [],
            "series": [series(fw, "value", [x for x in GRID_X for _ in GRID_Y], lambda x: x > 88)
                       for fw in ("jax", "torch")]}
    sweep_rows = [row(s["framework"], s["output"], "overflow", s["impl"], verdict_counts={"overflow": 3, "ok": 22})
                  for s in line]
    return [case("sigmoid-sweep", sweep_rows, ("sweep",), sweep=linspace),
            case("log-edges", [row("jax", verdict="overflow")], ("sweep",), sweep=edges),
            case("lse-grid", [row("jax", verdict="overflow"), row("torch", verdict="overflow")], ("grid",),
                 sweep=grid)]


def hand_made() -> dict:
    """Every kind of panel: sweeps, a case that could not run, impls with causes, rewrites, failed expectations and
    hostile text everywhere a case file reaches, a jax-only case, and an invalid file."""
    cause = {"op": "exp", "where": "exp(-z) </script>", "pass": "forward", "kind": "overflow",
             "operands": [["100.0", "100.0"]], "traced": True}
    rewrite = {"rule": "r", "before": HOSTILE, "after": "log_sigmoid(z)", "formula": "-log_sigmoid(z)",
               "error_bits": "0.0", "within_tolerance": True}
    hostile_rows = [row("tf", "value", "overflow", explanation=HOSTILE, cause=cause, rewrite=rewrite),
                    row("torch", "grad.z", "cancellation", impl="softplus", explanation="cancels"),
                    row("jax", "value", "ok", impl=HOSTILE)]
    expectation = {"framework": "torch", "impl": "softplus", "dtype": "float32", "output": "grad.z", "expected": "ok",
                   "got": "cancellation", "version": "torch 2.13.0", "passed": False, "message": HOSTILE}
    unchecked = {**expectation, "output": "value", "passed": None}  # no version range applied: not a failure
    hostile = case("hostile", hostile_rows, (HOSTILE, "seed"), title=HOSTILE, expectations=[expectation, unchecked])
    failed = {**case("timeout", [], ("seed",)), "summed": None, "reference": {}, "error": "TimeoutError: " + HOSTILE}
    environment = {"python": "3.11.7", "platform": "Linux", "versions": {"oracle": "0.1.0", "jax": "0.10.2"}}
    invalid = [{"file": "cases/bad.yaml", "field": "formula", "line": 6, "message": "unknown function " + HOSTILE}]
    return {"schema_version": 1, "oracle_version": "0.1.0", "environment": environment,
            "cases": [case("jax-only", [row("jax"), row("jax", "grad.z")], ("seed",)), hostile, failed,
                      *sweep_cases()], "invalid": invalid}


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium, installed with apt-get when missing (CI runs as root); failing to install fails the tests."""
    if CHROMIUM.exists():
        return CHROMIUM
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as e:
            pytest.fail(f"cannot install Debian's chromium for the HTML report tests: {' '.join(command)}: {e}")
        if done.returncode:
            pytest.fail(f"cannot install Debian's chromium for the HTML report tests: {' '.join(command)} exited "
                        f"{done.returncode}: {done.stderr[-2000:]}")
    if not CHROMIUM.exists():
        pytest.fail(f"apt-get installed chromium but {CHROMIUM} is missing")
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(chromium):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium))
        yield browser
        browser.close()


class Opened:
    """A report opened in a fresh page, with everything the page said or asked for recorded."""

    def __init__(self, browser, path: Path, doc: dict):
        path.write_text(report_html.render(doc), encoding="utf-8")
        self.url = path.as_uri()
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.errors, self.requests, self.dialogs = [], [], []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("requestfailed", lambda r: self.errors.append(f"failed request {r.url}"))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.goto(self.url)

    def visible(self, selector: str, attribute: str) -> list[str]:
        """The attribute of each element matching the selector that is rendered (has a layout box)."""
        return self.page.eval_on_selector_all(
            selector, f"els => els.filter(e => e.getClientRects().length).map(e => e.getAttribute('{attribute}'))")

    def assert_clean(self) -> None:
        assert self.errors == [] and self.dialogs == []
        assert self.requests == [self.url], "the page must be self-contained"
        assert self.page.evaluate("window.pwned") is None and self.page.locator("img").count() == 0


@pytest.fixture
def report(browser, tmp_path):
    opened = Opened(browser, tmp_path / "report.html", hand_made())
    yield opened
    opened.page.close()


def test_renders_summary_panels_and_plots_without_errors(report):
    page = report.page
    report.assert_clean()
    tiles = dict(zip(page.locator(".tile span").all_inner_texts(), map(int, page.locator(".tile b").all_inner_texts())))
    assert tiles == {"cases": 6, "with findings": 4, "could not run": 1, "rows": 15, "invalid files": 1,
                     "expectations not met": 1}
    assert page.locator("#summary table.counts").is_visible()
    ids = page.locator("section.case h2").all_inner_texts()
    assert ids[0] == "timeout" and ids[-1] == "jax-only"  # could not run first, all ok last
    assert "could not run" in page.locator("section.case").first.inner_text()
    # hostile text is shown as text, wherever it came from
    hostile = page.locator("section.case", has_text="hostile").first
    assert HOSTILE in hostile.locator(".title").inner_text()
    assert HOSTILE in hostile.locator(".explanations").inner_text()
    assert hostile.locator(".expectations li").count() == 1
    assert hostile.locator(".expectations").inner_text().count(HOSTILE) == 1
    assert "oracle run cases/hostile.yaml" in hostile.locator(".reproduce").inner_text()
    # small multiples: the linspace sweep's 7 series, 1 of float32 edges, 2 heatmaps of the grid
    plots = page.locator("svg.plot")
    assert plots.count() == 10
    for k in range(10):
        box = plots.nth(k).bounding_box()
        assert box["width"] > 250 and box["height"] > 200
    assert page.locator("svg.plot circle.v-overflow, svg.plot rect.v-overflow").count() > 0
    assert page.locator("svg.plot path.na").count() == 4 + 1  # the edges' 4 negatives, the softplus domain point
    assert "jax formula value: overflow for z <= -90.0" in page.locator("ul.thresholds").first.inner_text()


def test_filters_hide_other_frameworks_verdicts_and_tags(report):
    page = report.page
    assert set(report.visible("section.case tr[data-fw]", "data-fw")) == {"tf", "torch", "jax"}
    assert report.visible("ul.thresholds li", "data-fw") == ["jax"]
    page.select_option("#f-fw", "tf")
    assert set(report.visible("section.case tr[data-fw]", "data-fw")) == {"tf"}
    assert set(report.visible("g.series", "data-fw")) == {"tf"}
    assert report.visible("figure.fig", "data-fw") == ["tf", "tf"]  # a small multiple per output; no tf grid
    assert report.visible("ul.thresholds li", "data-fw") == []  # the only threshold is jax's
    shown = report.visible("section.case", "id")
    assert len(shown) == 3  # the hostile case, the linspace sweep and the case that could not run
    assert page.locator("#shown").inner_text() == "showing 3 of 6 cases"
    page.select_option("#f-fw", "")
    page.select_option("#f-v", "overflow")
    assert set(report.visible("section.case tr[data-fw]", "data-v")) == {"overflow"}
    page.select_option("#f-v", "not-ok")
    assert "ok" not in report.visible("section.case tr[data-fw]", "data-v")
    page.click("#f-reset")
    page.select_option("#f-tag", HOSTILE)
    assert page.locator("section.case:visible h2").all_inner_texts() == ["hostile"]
    page.click("#f-reset")
    page.locator("button.count.v-cancellation").click()  # a summary count sets framework and verdict
    assert report.visible("section.case tr[data-fw]", "data-v") == ["cancellation"]
    report.assert_clean()


def test_hover_shows_the_values_under_the_pointer(report):
    plot = report.page.locator("figure.line", has_text="torch · softplus · value").locator(".canvas")
    plot.hover()  # scrolls it into view and points at its centre
    tip = plot.locator(".tip")
    assert tip.is_visible()
    lines = tip.inner_text().splitlines()
    assert lines[0].startswith("z = ") and len(lines) == 2 and lines[1].startswith("torch · softplus: ")
    heatmap = report.page.locator("figure.grid .canvas").first
    heatmap.hover(position={"x": 280, "y": 20})  # the top right cell: x = 120 overflows at every y
    assert heatmap.locator(".tip").inner_text().splitlines() == ["x = 120, y = 100", "jax · formula: 32.00 bits · overflow"]
    report.assert_clean()


def test_screenshot_is_not_blank(report):
    image = Image.open(io.BytesIO(report.page.screenshot(full_page=True))).convert("RGB")
    assert image.height > 2000  # every panel is laid out
    data = image.resize((image.width // 4, image.height // 4), Image.Resampling.NEAREST).tobytes()
    pixels = list(zip(data[0::3], data[1::3], data[2::3]))
    colours = set(pixels)
    assert len(colours) > 200
    red = tuple(int(report_html.COLOURS["overflow"][k:k + 2], 16) for k in (1, 3, 5))
    assert sum(p == red for p in pixels) > 20  # overflow badges and points in the verdict colour
    grey = [sum(p) / 3 for p in pixels]
    mean = sum(grey) / len(grey)
    assert (sum((g - mean) ** 2 for g in grey) / len(grey)) ** 0.5 > 20


def test_real_run(browser, tmp_path):
    """A sweep case run for real by `oracle run --json`, rendered and opened."""
    path = tmp_path / "sweep.yaml"
    path.write_text(textwrap.dedent("""\
        id: naive-log-sigmoid-sweep
        title: -log(sigmoid(z)) written with exp and a division, z swept
        kind: loss
        tags: [sweep]
        inputs:
          z: {sweep: {linspace: [-100, 20, 5]}}
        formula: -log(1 / (1 + exp(-z)))
        frameworks: [jax]
        """))
    result = CliRunner().invoke(app, ["run", str(path), "--json"])
    assert result.exit_code == 0, result.output
    opened = Opened(browser, tmp_path / "report.html", json.loads(result.stdout))
    opened.assert_clean()
    assert opened.page.locator("section.case").count() == 1
    assert opened.page.locator("section.case table.rows tbody tr").count() == 2  # value and grad.z
    assert opened.page.locator("svg.plot").count() == 2
    assert opened.page.locator("svg.plot .v-overflow").count() >= 2  # z = -100 overflows
    # oracle run refines the sweep: each plot shades the exact regions, the overflow up to z = -88.72284
    shades = opened.page.locator("svg.plot g.region.exact.v-overflow")
    assert shades.count() == 2 and "to -88.72284 (exactly)" in shades.first.locator("title").text_content()
    assert shades.first.locator("rect").bounding_box()["width"] > 1
    opened.page.close()


def test_refined_sweep_shades_each_exact_region_between_its_ends():
    """A sweep block with exact regions (oracle.boundaries): one shade per region other than ok, from its first to
    its last value on the plot's own scale, its text escaped in the tooltip; without regions, grid runs."""
    from oracle.report import plot

    values = [-100.0 + 10 * k for k in range(21)]
    verdicts = ["ok"] * 19 + ["overflow"] * 2
    series = {"framework": "jax", "impl": "formula", "dtype": "float32", "output": "value", "vectorised": True,
              "note": None, "error_bits": [0.0] * 19 + [32.0, 32.0], "verdicts": verdicts}
    regions = [{"framework": "jax", "impl": "formula", "dtype": "float32", "output": "value", "input": "x",
                "verdict": v, "inherent": i, "from": a, "to": b, "exact_from": True, "exact_to": True, "at": {},
                "text": t}
               for v, i, a, b, t in [("ok", None, "-100.0", "-87.33654", "fine"),
                                     ("underflow", True, "-87.33653", "-80.0", HOSTILE),
                                     ("ok", None, "-79.99999", "88.72283", "fine"),
                                     ("overflow", False, "88.72284", "100.0", "overflow from 88.72284")]]
    block = {"axes": [{"input": "x", "spec": "linspace", "scale": "linear", "values": values}], "points": 21,
             "series": [series], "thresholds": [], "regions": regions}
    html, _ = report_html.sweep_section(block, 5.0, 0)
    assert html.count('class="region exact') == 2 and HOSTILE not in html and escape(HOSTILE) in html
    xs = plot.value_scale("linear", values, plot.LINE["left"] + 6, plot.LINE["width"] - plot.LINE["right"] - 6)
    x0, x1 = xs.to_px(88.72284), xs.to_px(100.0)
    assert (f'<g class="region exact v-overflow"><title>overflow from 88.72284</title><rect x="{x0:.1f}" '
            f'y="{plot.LINE["top"]}" width="{x1 - x0:.1f}"') in html
    assert "overflow (spurious)" in html and "underflow (inherent)" in html  # the widest shade of each is named
    grid_only, _ = report_html.sweep_section({**block, "regions": []}, 5.0, 0)
    assert 'class="region exact' not in grid_only and grid_only.count('class="region v-overflow"') == 1


def test_script_json_cannot_end_its_script_element():
    text = report_html.script_json({"a": "</script><!-- & <b>"})
    assert not {"<", ">", "&"} & set(text) and json.loads(text) == {"a": "</script><!-- & <b>"}
    page = report_html.render(hand_made())
    assert page.count("<script") == 2 and HOSTILE not in page


def test_scales_place_values_where_the_axis_says():
    symlog = value_scale("symlog", EDGES, 0, 600)
    assert symlog.to_px(0.0) == pytest.approx(300) and symlog.to_px(EDGES[0]) == 0 and symlog.to_px(EDGES[-1]) == 600
    assert symlog.to_px(1.0) > symlog.to_px(1.1754943508222875e-38) > symlog.to_px(0.0)
    assert {"-1e20", "-1", "0", "1", "1e20"} <= {label for _, label in symlog.ticks}
    log = value_scale("log", [1e-3, 1e3], 0, 600)
    assert log.to_px(1.0) == pytest.approx(300) and [label for _, label in log.ticks][:2] == ["1e-3", "1e-2"]
    linear = value_scale("linear", Z, 0, 120)
    assert linear.to_px(-40.0) == pytest.approx(60) and [label for _, label in linear.ticks][0] == "-100"


def test_small_multiples_share_axes_and_shade_where_each_verdict_holds(report):
    """Each line plot is one series on the sweep's shared axes; a run of overflow points is shaded from the frame
    to half-way between the last overflowing point (z = -90) and the first that is ok (z = -85), labelled."""
    from oracle.report.plot import LINE

    sweep = report.page.locator("section.case", has_text="sigmoid-sweep").first
    figures = sweep.locator("figure.line")
    assert figures.count() == 7
    captions = figures.locator("figcaption").all_inner_texts()
    assert captions[:4] == ["tf · formula · value", "torch · formula · value", "jax · formula · value",
                            "torch · softplus · value"]
    # shared axes: every plot's tick labels are the same (x from -100, error bits up to 32)
    ticks = [figures.nth(k).locator("svg > text:not(.label):not(.tol)").all_text_contents() for k in range(7)]
    assert all(t == ticks[0] for t in ticks) and "32" in ticks[0] and "-100" in ticks[0]
    left, right = LINE["left"], LINE["width"] - LINE["right"]
    xs = value_scale("linear", Z, left + 6, right - 6)
    region = figures.nth(0).locator("g.region.v-overflow")
    assert region.count() == 1 and region.locator("text").text_content() == "overflow"
    rect = region.locator("rect")
    x0, width = float(rect.get_attribute("x")), float(rect.get_attribute("width"))
    assert x0 == left and x0 + width == pytest.approx((xs.to_px(-90.0) + xs.to_px(-85.0)) / 2, abs=0.06)
    domain = figures.nth(3).locator("g.region.v-domain rect")  # softplus: z = -85 alone is unmeasurable
    assert domain.count() == 1
    assert float(domain.get_attribute("width")) == pytest.approx((xs.to_px(-80.0) - xs.to_px(-90.0)) / 2, abs=0.06)
    report.assert_clean()


def test_causes_say_traced_or_inferred_and_impl_names_are_short(browser, tmp_path):
    doc = hand_made()
    hostile = next(c for c in doc["cases"] if c["id"] == "hostile")
    inferred = {**hostile["results"][0]["cause"], "traced": False}
    hostile["results"][1] = {**hostile["results"][1], "cause": inferred, "impl": "torch.nn.functional.softplus"}
    hostile["expectations"] = []
    opened = Opened(browser, tmp_path / "report.html", doc)
    panel = opened.page.locator("section#hostile")
    assert panel.locator(".cause .how").all_inner_texts() == ["traced", "inferred"]
    assert panel.locator(".how.traced").is_visible() and panel.locator(".how.inferred").is_visible()
    cell = panel.locator("tr[data-fw=torch] td").nth(1).locator("span")
    assert cell.inner_text() == "functional.softplus" and cell.get_attribute("title") == "torch.nn.functional.softplus"
    opened.assert_clean()
    opened.page.close()


def test_deep_links_open_the_case_with_its_panel_visible(browser, tmp_path):
    opened = Opened(browser, tmp_path / "report.html", hand_made())
    page = opened.page
    assert page.locator("table.index a").first.get_attribute("href") == "#timeout"  # ids are the case ids
    page.goto(opened.url + "#log-edges")
    nav = page.locator("#filters").bounding_box()
    panel = page.locator("section#log-edges")
    box = panel.bounding_box()
    assert panel.is_visible() and nav["y"] + nav["height"] <= box["y"] < 900  # below the sticky filters, in view
    page.select_option("#f-fw", "tf")  # hides the jax-only case
    assert not page.locator("section#jax-only").is_visible()
    page.evaluate("location.hash = 'jax-only'")
    page.wait_for_function("!document.getElementById('jax-only').hidden")
    assert page.locator("section#jax-only").is_visible() and page.locator("#f-fw").input_value() == ""
    top = page.locator("section#jax-only").bounding_box()["y"]
    assert 0 <= top < 900
    opened.assert_clean()
    page.close()

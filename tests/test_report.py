"""metabench report: the leaderboard numbers by hand, the HTML as text, and the page in a
real headless Chromium driven over the Chrome DevTools Protocol (console, network,
dialogs, sorting, filters, phone width, screenshots in test-artifacts/)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from typing import Iterator

import pytest

from metabench.cli import main
from metabench.report import ReportOptions, build_report, effective_length, standing, weighted_average
from metabench.report.leaderboard import Point, rank_weights
from metabench.report.runs import load_run
from metabench.simulate import ENTRIES, MULTIVALUE, SimEntry, decay, write_results

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
IMG = "<img src=x onerror=alert(1)>"
PWN = '<img src=x onerror="window.__pwned=1">'
BREAKOUT = "</script><script>window.__pwned=2;alert(2)</script>"
EVIL_MODEL = '<script>alert("name")</script>evil & co'
EVIL_ENTRY = SimEntry('evil/<svg onload="alert(3)">', "needle", "x", ("exact_match",))


def pt(k: int, s: float) -> Point:
    return Point(k * 1024, f"{k}k", s)


# --- numbers, by hand -----------------------------------------------------------

def test_rank_weights_and_weighted_averages():
    assert rank_weights(3, "inc") == pytest.approx([1 / 6, 2 / 6, 3 / 6])
    assert rank_weights(3, "dec") == pytest.approx([3 / 6, 2 / 6, 1 / 6])
    assert weighted_average([1.0, 0.8, 0.5], "inc") == pytest.approx((1.0 + 1.6 + 1.5) / 6)
    assert weighted_average([1.0, 0.8, 0.5], "dec") == pytest.approx((3.0 + 1.6 + 0.5) / 6)
    assert weighted_average([0.7], "inc") == pytest.approx(0.7)


def test_effective_length_stops_at_the_first_dip():
    points = [pt(2, 0.95), pt(4, 0.90), pt(8, 0.80), pt(16, 0.88)]  # 16k recovers, but 8k already failed
    e = effective_length(points, 0.856)
    assert (e.length, e.label, e.lower_bound) == (4096, "4k", False)
    e = effective_length([pt(2, 0.95), pt(4, 0.86)], 0.856)
    assert (e.length, e.lower_bound) == (4096, True)  # every length passed: a lower bound
    assert effective_length([pt(2, 0.80), pt(4, 0.90)], 0.856).length is None  # shortest fails


def test_relative_effective_length_follows_the_models_own_short_score(tmp_path):
    flat = [e for e in ENTRIES if not e.depths]  # exact accuracies: no depth groups to round within
    weak = write_results(tmp_path / "weak", samples=20, entries=flat,
                         accuracy=lambda e, n, d: {2048: 0.6, 4096: 0.55, 8192: 0.3}[n])
    st = standing(load_run(weak, None).cells)
    assert st.effective.length is None  # never reaches 85.6%
    assert st.relative.length == 4096 and st.relative.threshold == pytest.approx(0.85 * 0.6)
    assert [p.score for p in st.points] == pytest.approx([0.6, 0.55, 0.3])
    assert st.average == pytest.approx((0.6 + 0.55 + 0.3) / 3)
    assert st.weighted_inc == pytest.approx((0.6 + 2 * 0.55 + 3 * 0.3) / 6)
    zero = write_results(tmp_path / "zero", samples=10, accuracy=0.0)
    assert standing(load_run(zero, None).cells).relative is None  # 85% of 0 would pass everything


def test_categories_average_their_entries_by_hand():
    from metabench.report.leaderboard import by_category

    families = {"n1": ("needle", "single"), "n2": ("needle", "no_such_variant"), "kv": ("kv_recall", "single"),
                "th": ("needle", "twohop"), "vt": ("variable_tracking", "default"), "cwe": ("common_words", "default"),
                "p": ("parity", "long"), "x": ("someone_elses", "default")}
    scores = {"n1": 1.0, "n2": 0.5, "kv": 0.0, "th": 0.75, "vt": 0.25, "cwe": 0.75, "p": 0.5, "x": 0.1}
    assert by_category(families, scores) == {
        "retrieval": pytest.approx(0.5), "multi-hop tracing": 0.5, "aggregation": 0.75, "counting": 0.5, "other": 0.1}
    assert list(by_category(families, scores)) == ["retrieval", "multi-hop tracing", "aggregation", "counting", "other"]


# --- the HTML as text -------------------------------------------------------------

def hostile(row: dict) -> None:
    """HTML and script in predictions, prompts and targets of the evil run."""
    if row["index"] == 0:
        row["prediction"] = IMG
    elif row["index"] == 1:
        row["prediction"] = BREAKOUT + " " + PWN
    row["prompt_head"] = '<b>bold</b> "quoted" & ' + row["prompt_head"]
    row["prompt_tail"] = row["prompt_tail"] + " </div></td></tr></table><h1>injected</h1>"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    d = tmp_path_factory.mktemp("results")
    alpha = write_results(d / "alpha", model="alpha-7b", context=4096, samples=20)
    beta = write_results(d / "beta", model="beta-13b", context=8192, samples=20, entries=ENTRIES + (MULTIVALUE,),
                         accuracy=decay(8192, top=0.9, half=1.2))
    evil = write_results(d / "evil", model=EVIL_MODEL, context=4096, samples=20, entries=ENTRIES[:2] + (EVIL_ENTRY,),
                         accuracy=0.5, mutate=hostile,
                         provenance={"command": f"metabench run --model '{BREAKOUT}'", "see": "https://example.com/x.png",
                                     "seeds": {"suite": 0}})
    return [alpha, beta, evil]


@pytest.fixture(scope="module")
def analyses(analysis_dirs, tmp_path_factory) -> list[str]:
    """--analysis arguments: a real analysis, and a real one whose strings are hostile."""
    evil = json.loads((analysis_dirs["nometa"] / "analysis.json").read_text())
    evil["checkpoint"] = f"runs/{IMG}"  # the section's default name: the checkpoint folder's
    evil["suite"] = BREAKOUT
    evil["zero_position_ablation"] = [{"entry": EVIL_ENTRY.name, "length": PWN, "metric": "exact_match", "chance": None,
                                       "full": 0.5, "zeroed": 0.25, "n": 4}]
    path = tmp_path_factory.mktemp("evil-analysis") / "analysis.json"
    path.write_text(json.dumps(evil))
    return [str(analysis_dirs["meta"]), str(path)]


@pytest.fixture(scope="module")
def page(folders, analyses, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site") / "leaderboards" / "demo" / "index.html"
    assert main(["report", *map(str, folders), "--out", str(out), *(x for a in analyses for x in ("--analysis", a))]) == 0
    return out


class Tags(HTMLParser):
    """Every start tag of a page with its attributes, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag, attrs):
        self.seen.append((tag, attrs))


@pytest.mark.slow
def test_page_is_self_contained_and_deterministic(page, folders, analyses, tmp_path):
    html = page.read_text(encoding="utf-8")
    tags = Tags()
    tags.feed(html)
    assert [t for t, _ in tags.seen].count("script") == 1  # ours; every injected one is text
    assert not [a for _, attrs in tags.seen for a in attrs if a[0] == "src"]  # nothing is loaded
    assert all(v.startswith("#") for _, attrs in tags.seen for k, v in attrs if k == "href")  # in-page links
    assert "url(" not in html and "@import" not in html
    assert "default-src 'none'" in html.replace("&#39;", "'")
    again = build_report(folders, tmp_path / "again.html", ReportOptions(title="demo"), analyses)
    assert again.read_bytes() == page.read_bytes()  # no timestamps: same folders, same bytes


@pytest.mark.slow
def test_every_string_from_a_results_folder_is_escaped(page):
    html = page.read_text(encoding="utf-8")
    for raw in (IMG, BREAKOUT, EVIL_MODEL, '<svg onload="alert(3)">', "<h1>injected</h1>", "<b>bold</b>"):
        assert raw not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;/script&gt;&lt;script&gt;window.__pwned=2;alert(2)&lt;/script&gt;" in html
    assert "&lt;script&gt;alert(&#34;name&#34;)&lt;/script&gt;evil &amp; co" in html


def test_report_cli_options_and_errors(folders, tmp_path, capsys):
    out = tmp_path / "lean.html"
    assert main(["report", str(folders[0].parent), "--out", str(out), "--no-samples", "--title", "lean"]) == 0
    assert "wrote" in capsys.readouterr().out
    html = out.read_text(encoding="utf-8")
    assert "sample-browser" not in html and "<title>lean</title>" in html
    assert html.count('class="run"') == 3  # a folder of results folders stands for each
    assert out.stat().st_size < 400_000  # loose; benchmarks/report_speed.py measures 20 models
    assert main(["report", str(tmp_path / "nothing"), "--out", str(out)]) == 2
    assert "not a results folder" in capsys.readouterr().err
    assert main(["report", str(folders[0]), "--out", str(out), "--threshold", "120"]) == 2


def test_a_run_without_a_known_context_renders_without_multiples(tmp_path):
    run = write_results(tmp_path / "api", model="served", lengths={"4k": 4096, "16k": 16384}, samples=10, accuracy=0.9)
    summary = json.loads((run / "summary.json").read_text())
    summary["model"]["context"] = None  # an OpenAI-compatible server does not say
    (run / "summary.json").write_text(json.dumps(summary))
    html = build_report([run], tmp_path / "index.html", ReportOptions(samples=False)).read_text(encoding="utf-8")
    assert 'class="mk"' not in html and "beyond" not in html.split("<body>")[1].split('id="run-0"')[1]
    assert html.count("<polyline") == len(ENTRIES)


def test_a_loglik_run_is_never_ranked_under_the_generated_name(tmp_path):
    """greedy_match is not exact_match: a loglik run of a model shows as 'NAME [loglik]' beside its generated run."""
    runs = []
    for scoring in ("generate", "loglik"):
        run = write_results(tmp_path / scoring, model="m", lengths={"4k": 4096}, samples=5, accuracy=0.9)
        summary = json.loads((run / "summary.json").read_text())
        summary["scoring"] = scoring
        (run / "summary.json").write_text(json.dumps(summary))
        runs.append(load_run(run, None))
    assert [r.name for r in runs] == ["m", "m [loglik]"]


# --- the page in Chromium ---------------------------------------------------------

class Page:
    """A page target over the Chrome DevTools Protocol: commands, and every event kept."""

    def __init__(self, ws):
        self.ws = ws
        self.shot: Path | None = None
        self.events: list[dict] = []
        self.next_id = 0

    def call(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=30))
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]
            self.events.append(msg)

    def wait_for(self, method: str, timeout: float = 30.0) -> dict:
        end = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            self.events.append(json.loads(self.ws.recv(timeout=max(0.1, end - time.monotonic()))))
        return next(e for e in self.events if e.get("method") == method)

    def js(self, expression: str):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in r:
            raise AssertionError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))

    def of(self, method: str) -> list[dict]:
        return [e["params"] for e in self.events if e.get("method") == method]


@contextlib.contextmanager
def chromium(profile: Path) -> Iterator[Page]:
    """A real headless Chromium with one page target over the DevTools Protocol; closed on exit."""
    from websockets.sync.client import connect

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if not binary:
        if os.environ.get("CI"):  # CI runs scripts/setup.sh, which installs it: a skip would hide a broken setup
            pytest.fail("chromium is not installed, although scripts/setup.sh should have installed it")
        pytest.skip("chromium is not installed (scripts/setup.sh installs Debian's chromium)")
    proc = subprocess.Popen(
        [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
         f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
         "--disable-background-networking", "--disable-component-update", "--window-size=1280,900", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        end = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            assert proc.poll() is None and time.monotonic() < end, "chromium did not open its DevTools port"
            time.sleep(0.05)
        port = port_file.read_text().split()[0]
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        targets = json.load(opener.open(f"http://127.0.0.1:{port}/json/list", timeout=10))
        url = next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"]
        with connect(url, max_size=None, proxy=None, open_timeout=20) as ws:
            yield Page(ws)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser(page, tmp_path_factory):
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as p:
        yield load(p, page, tmp_path_factory.mktemp("screenshots"))


def load(p: Page, page: Path, shots: Path) -> Page:
    """Watch console, network, dialogs and CSP violations, open the report, screenshot it as loaded."""
    for domain in ("Page", "Runtime", "Network", "Log"):
        p.call(f"{domain}.enable")
    p.call("Page.addScriptToEvaluateOnNewDocument", source=(
        "window.__csp = []; document.addEventListener('securitypolicyviolation',"
        " e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"))
    p.call("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)
    p.call("Page.navigate", url=page.as_uri())
    p.wait_for("Page.loadEventFired")
    p.screenshot(shots / "report.png")
    p.shot = shots / "report.png"
    return p


@pytest.mark.slow
def test_loads_offline_with_no_errors_requests_or_dialogs(browser, page):
    requests = [r["request"]["url"] for r in browser.of("Network.requestWillBeSent")]
    assert requests == [page.as_uri()]
    errors = [c for c in browser.of("Runtime.consoleAPICalled") if c["type"] in ("error", "assert", "warning")]
    errors += browser.of("Runtime.exceptionThrown")
    errors += [e for e in browser.of("Log.entryAdded") if e["entry"]["level"] in ("error", "warning")]
    assert errors == []
    assert browser.of("Page.javascriptDialogOpening") == []
    assert browser.js("window.__csp") == []


@pytest.mark.slow
def test_tables_heatmaps_and_charts_are_present(browser):
    assert browser.js("document.querySelectorAll('#ranking tbody tr').length") == 3
    assert browser.js("document.querySelectorAll('#category-averages tbody tr').length") == 3
    rows = browser.js("[...document.querySelectorAll('#run-0-categories tbody th')].map(th => th.textContent)")
    assert rows == ["retrieval", "recall and copying", "counting"]  # needle, kv_recall; list_recall, copy; the rest
    assert browser.js("document.querySelectorAll('section.run').length") == 3
    # alpha and beta have a needle/single heatmap, beta also needle/multivalue; evil has no needle.
    assert browser.js("document.querySelectorAll('.heatmap table').length") == 3
    assert browser.js("[...document.querySelectorAll('.heatmap td.sc')].every(td => td.style.background)")
    assert browser.js("document.querySelectorAll('section.run figure.chart svg polyline').length") == 6 + 7 + 3
    marks = browser.js("[...document.querySelectorAll('#run-0 svg text.mk')].map(t => t.textContent)")
    assert set(marks) == {"1x", "2x"}  # alpha ran 0.5x, 1x, 2x of 4096
    assert browser.js("document.querySelector('#run-0 thead th.beyond').textContent").startswith("2x")
    assert browser.js("document.querySelectorAll('#series, nav a[href=\"#series\"], .step-chart').length") == 0  # no steps


@pytest.mark.slow
def test_analyses_section(browser, analysis_dirs):
    a = json.loads((analysis_dirs["meta"] / "analysis.json").read_text())
    heads = a["attention"]["per_head"]
    drop = sum(h["entropy_drop"] for h in heads) / len(heads)
    assert browser.js("document.querySelector('nav a[href=\"#analyses\"]').textContent") == "Analyses"
    assert browser.js("document.querySelector('#analysis-0 b.entropy-drop').textContent") == f"{drop:+.3f}"
    assert browser.js("document.querySelectorAll('#analysis-0-heatmap td.sc').length") == len(heads)
    assert browser.js("[...document.querySelectorAll('#analyses td.sc')].every(td => td.style.background)")
    assert browser.js("document.querySelectorAll('#analysis-0 figure.chart polyline').length") == 2  # meta, other
    assert browser.js("document.querySelectorAll('#analysis-0 figure.chart circle').length") == 2 * len(a["residual_cosine"])
    assert browser.js("document.querySelectorAll('#analysis-0-ablation tbody tr').length") == len(a["zero_position_ablation"])
    assert browser.js("document.querySelector('#analysis-1 h3').textContent") == IMG  # hostile, and text
    assert browser.js("document.querySelector('#analysis-1-ablation td').textContent") == EVIL_ENTRY.name
    browser.js("document.querySelector('#analysis-0 details.heads').open = true")
    browser.js("document.querySelectorAll('#analysis-0-heads thead th')[4].click()")  # drop: high..low
    drops = [float(x) for x in column(browser, "#analysis-0-heads", 4)]
    assert drops == sorted((round(h["entropy_drop"], 3) for h in heads), reverse=True)
    browser.js("document.getElementById('analyses').scrollIntoView()")
    ARTIFACTS.mkdir(exist_ok=True)
    browser.screenshot(ARTIFACTS / "report-analyses.png")
    browser.js("window.scrollTo(0, 0)")


def column(browser, table: str, i: int) -> list[str]:
    return browser.js(f"[...document.querySelectorAll('{table} tbody tr')].map(r => r.cells[{i}].textContent.trim())")


@pytest.mark.slow
def test_clicking_headers_sorts(browser):
    ranked = column(browser, "#ranking", 1)
    averages = [float(x) for x in column(browser, "#ranking", 3)]
    assert averages == sorted(averages, reverse=True)  # ranked by average
    browser.js("document.querySelectorAll('#ranking thead th')[1].click()")  # model: A..Z first
    names = column(browser, "#ranking", 1)
    assert names == sorted(ranked, key=str.lower) and names != ranked
    browser.js("document.querySelectorAll('#ranking thead th')[3].click()")  # average: high..low
    assert column(browser, "#ranking", 1) == ranked
    browser.js("document.querySelectorAll('#ranking thead th')[3].click()")  # again: low..high
    assert column(browser, "#ranking", 1) == ranked[::-1]
    assert browser.js("document.querySelectorAll('#ranking thead th')[3].getAttribute('aria-sort')") == "ascending"


@pytest.mark.slow
def test_hostile_strings_are_text_never_markup(browser):
    assert browser.js("window.__pwned === undefined")
    assert browser.js("document.querySelectorAll('script').length") == 1
    assert browser.js("document.querySelectorAll('img, [onerror], [onload], main h1').length") == 0
    predictions = browser.js("[...document.querySelectorAll('.prediction')].map(d => d.textContent)")
    assert IMG in predictions and BREAKOUT + " " + PWN in predictions
    assert EVIL_MODEL in browser.js("[...document.querySelectorAll('section.run h2')].map(h => h.textContent).join('|')")
    assert BREAKOUT in browser.js("[...document.querySelectorAll('pre.command')].map(p => p.textContent).join('|')")
    assert 'evil/<svg onload="alert(3)">' in browser.js("[...document.querySelectorAll('figcaption')].map(f => f.textContent)")
    assert browser.of("Page.javascriptDialogOpening") == []


@pytest.mark.slow
def test_sample_filters(browser):
    box = "document.querySelector('#run-0 div.samples')"
    total = browser.js(f"{box}.querySelectorAll('tbody tr').length")
    assert total == 6 * 3 * 4  # six tasks x three lengths x four samples
    browser.js(f"(b => {{ const s = b.querySelector('select[name=length]'); s.value = '2x';"
               f" s.dispatchEvent(new Event('change')); }})({box})")
    shown = browser.js(f"[...{box}.querySelectorAll('tbody tr')].filter(r => !r.hidden).map(r => r.dataset.length)")
    assert shown == ["2x"] * 24


@pytest.mark.slow
def test_phone_width_and_screenshots(browser):
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(browser.shot, ARTIFACTS / "report.png")  # taken as loaded, before the tests sort anything
    assert (ARTIFACTS / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    browser.call("Emulation.setDeviceMetricsOverride", width=390, height=844, deviceScaleFactor=2, mobile=True)
    try:
        # The page itself never scrolls sideways; wide tables scroll inside their wrapper.
        assert browser.js("document.documentElement.scrollWidth <= window.innerWidth")
        assert browser.js("[...document.querySelectorAll('.scroll')].some(s => s.scrollWidth > s.clientWidth)")
        browser.screenshot(ARTIFACTS / "report-phone.png")
    finally:
        browser.call("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)
    assert os.path.getsize(ARTIFACTS / "report-phone.png") > 1000


@pytest.mark.slow
def test_wide_tables_scroll_inside_their_section(browser):
    """At 1400 px the Tasks table fits; narrower, it scrolls in its box, which fades on the side that goes on."""
    box = "document.querySelector('#task-averages').parentElement"

    def settle(expression: str):  # after the scroll event has run the page's handler
        r = browser.call("Runtime.evaluate", awaitPromise=True, returnByValue=True, expression=(
            f"new Promise(done => {{ {expression}; requestAnimationFrame(() => setTimeout(done, 50)); }})"))
        assert "exceptionDetails" not in r, r

    for width, wide in ((1400, False), (700, True)):
        browser.call("Emulation.setDeviceMetricsOverride", width=width, height=900, deviceScaleFactor=1, mobile=False)
        settle("window.dispatchEvent(new Event('resize'))")
        assert browser.js("document.documentElement.scrollWidth <= window.innerWidth")
        assert browser.js(f"{box}.scrollWidth > {box}.clientWidth") is wide
        assert browser.js(f"{box}.classList.contains('more')") is wide
    try:
        section = browser.js("document.querySelector('#tasks').getBoundingClientRect().right")
        assert browser.js(f"{box}.getBoundingClientRect().right") <= section + 0.5
        settle(f"{box}.scrollLeft = {box}.scrollWidth")
        assert not browser.js(f"{box}.classList.contains('more')")  # scrolled to the end: nothing more to show
        right = browser.js(f"{box}.getBoundingClientRect().right")
        assert browser.js("[...document.querySelectorAll('#task-averages thead th')].pop().getBoundingClientRect().right") <= right + 0.5
        left = browser.js(f"{box}.getBoundingClientRect().left")  # the model column stays in view
        assert abs(browser.js("document.querySelector('#task-averages td.name').getBoundingClientRect().left") - left) < 1.5
        ARTIFACTS.mkdir(exist_ok=True)
        browser.js("document.getElementById('tasks').scrollIntoView()")
        browser.screenshot(ARTIFACTS / "report-tasks-scrolled.png")
    finally:
        browser.js(f"{box}.scrollLeft = 0; window.scrollTo(0, 0)")
        browser.call("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)

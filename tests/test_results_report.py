"""`cord report`: a self-contained HTML page, opened in headless Chromium (Debian's `chromium`,
driven by playwright's Python package; no browser is downloaded)."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from cord.config import load_config
from cord.records import read_records
from cord.results.report import build
from cord.run import run
from helpers import ROOT, cord_here, needs_tiny

pytestmark = needs_tiny
PLANTED = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def report_runs(kept_run, tmp_path_factory):
    """The shared CoRD run (copied, with HTML planted in one record's model text) and a Curation run."""
    base = tmp_path_factory.mktemp("report")
    cord_run = base / "cord"
    shutil.copytree(kept_run, cord_run)
    curation = base / "curation"
    overrides = [f"output_dir={curation}", "data.tiny.n=4", "data.tiny.seed=3", "search.method=curation"]
    run(load_config(ROOT / "recipes" / "tiny-hetero.yaml", overrides), progress=False)
    lines = [json.loads(line) for line in (cord_run / "records.jsonl").read_text().splitlines()]
    lines[0]["question"] += " " + PLANTED
    lines[0]["steps"][0]["text"] = PLANTED + lines[0]["steps"][0]["text"]
    (cord_run / "records.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return [cord_run, curation]


def test_the_page_is_self_contained_and_escapes_model_text(report_runs):
    page = build(report_runs)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched from the network
    assert PLANTED not in page and html_escaped(PLANTED) in page
    assert page.count("<script>") == 1  # the page's own filter script only


def test_each_run_shows_a_bounded_sample_by_a_stated_rule_and_any_problem_on_request(report_runs):
    from cord.results.report import colour_of

    page = build(report_runs, max_problems=3)
    shown = re.findall(r'<article class="problem" data-id="([^"]+)"', page)
    records = read_records(report_runs[0])
    assert len(shown) == 3 + 3 and "cord: 3 of 8 problems:" in page and "spread evenly over the input order" in page
    assert "curation: 3 of 4 problems" in page and "others: cord report RUN --ids" in page
    wanted = {records[5].id, records[6].id}
    page = build(report_runs[:1], ids=wanted)
    assert set(re.findall(r'<article class="problem" data-id="([^"]+)"', page)) == wanted
    assert colour_of("tiny-addsub") == colour_of("tiny-addsub") and f"background: {colour_of('addsub')}" in build(report_runs[:1])


def html_escaped(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def test_cord_report_writes_the_file_and_refuses_a_directory_that_is_not_a_run(report_runs, tmp_path):
    code, _, err = cord_here("report", *report_runs, "--out", tmp_path / "r.html")
    assert code == 0, err and (tmp_path / "r.html").stat().st_size > 1000
    code, _, err = cord_here("report", tmp_path, "--out", tmp_path / "bad.html")
    assert code == 2 and "not a cord run directory" in err and not (tmp_path / "bad.html").exists()
    # an existing page is not replaced unasked, as `cord export` does with its file
    (tmp_path / "r.html").write_text("mine")
    code, _, err = cord_here("report", *report_runs, "--out", tmp_path / "r.html")
    assert code == 2 and err == f"cord: error: {tmp_path / 'r.html'}: already exists (use --overwrite to replace it)\n"
    assert (tmp_path / "r.html").read_text() == "mine"
    assert cord_here("report", *report_runs, "--out", tmp_path / "r.html", "--overwrite")[0] == 0
    assert (tmp_path / "r.html").stat().st_size > 1000


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_report_in_a_real_browser(report_runs, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    from PIL import Image

    path = tmp_path / "report.html"
    path.write_text(build(report_runs), encoding="utf-8")
    records = read_records(report_runs[0])
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 1400})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(path.as_uri())
        page.wait_for_load_state("load")

        # the chart is drawn: bars with a real size, in the teachers' colours
        bars = page.locator("svg.hit-rate rect.bar")
        assert bars.count() > 0 and bars.first.bounding_box()["height"] > 0

        # each step's colour is its teacher's colour in the legend, and the teacher is the record's
        legend = {
            el.get_attribute("data-teacher"): el.locator(".swatch").evaluate("e => getComputedStyle(e).backgroundColor")
            for el in page.locator(".legend .teacher").all()
        }
        first = page.locator(f'article.problem[data-id="{records[1].id}"]').first
        steps = first.locator(":scope > .step")
        assert steps.count() == len(records[1].steps)
        for k, step in enumerate(records[1].steps):
            el = steps.nth(k)
            assert el.get_attribute("data-teacher") == step.teacher
            assert el.evaluate("e => getComputedStyle(e).borderLeftColor") == legend[step.teacher]

        # the candidates that lost are there on demand: closed until asked for
        rivals = first.locator("details.rivals").first
        assert not rivals.locator(".rival").first.is_visible()
        rivals.locator("summary").click()
        assert rivals.locator(".rival").first.is_visible()
        loser = records[1].steps[0].candidates[0]
        assert rivals.locator(".rival").first.get_attribute("data-teacher") == loser["teacher"]

        # the planted markup is shown as text and never runs
        assert page.evaluate("window.__pwned") is None
        planted_id = next(r.id for r in records if PLANTED in r.question)
        planted = page.locator(f'article.problem[data-id="{planted_id}"]').first
        assert PLANTED in planted.locator(".question").text_content()
        assert PLANTED in planted.locator(".step pre").first.text_content()

        # filters and search
        total = page.locator("article.problem").count()
        page.select_option("#filter-grade", "wrong")
        visible = page.locator("article.problem:not(.hidden)")
        assert all(v.get_attribute("data-grade") == "wrong" for v in visible.all())
        page.select_option("#filter-grade", "all")
        page.fill("#filter-search", records[2].id)
        assert {v.get_attribute("data-id") for v in page.locator("article.problem:not(.hidden)").all()} == {records[2].id}
        page.fill("#filter-search", "")
        page.select_option("#filter-method", "curation")
        assert page.locator("article.problem:not(.hidden)").count() == total - len(records)

        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot))
        browser.close()
    assert errors == []
    colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # not a blank page


def test_the_teacher_filter_finds_a_problem_by_any_proposer_of_its_steps(report_runs):
    """A teacher credited with a step it proposed but did not write still finds the problem."""
    from cord.records import read_run
    from cord.results.report import problem_card, teacher_colours

    run_data = read_run(report_runs[0])
    record = next(iter(run_data.records))
    record.steps[0].proposers = [record.steps[0].teacher, "only-proposed"]
    card = problem_card(run_data, record, teacher_colours([run_data]))
    listed = re.search(r'data-teachers="([^"]*)"', card).group(1).split("\u001f")
    assert "only-proposed" in listed and record.steps[0].teacher in listed

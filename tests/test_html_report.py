"""report.html: the numbers it shows are the ones every report counts, text from Azure stays
text, the embedded JSON cannot end its script element, and the page works in a real
headless Chromium (filter, search, sort, rows drawn only in view)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import lxml.html
import pandas as pd
import pytest

import auditor
from auditor.htmlreport import embedded_data, embedded_evidence, render_html, report_data, write_html
from auditor.report import summary, write_reports
from tests.builders import definition, gallery, marketplace, snapshot_of, version, vm

SCRIPT_TAG = "<script>alert(1)</script>"
IMG_TAG = "<img src=x onerror=\"window.__injected=1;alert(2)\">"
BREAKOUT = "</script><script>window.__injected=1</script><!--"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# A finding of the sample (messages of 200 characters) costs about 360 bytes, its evidence
# gzipped; the budget keeps 200,000 such findings under 90 MB.
BYTES_PER_FINDING = 450


@pytest.fixture(scope="module")
def sample_run():
    return auditor.audit("sample")


@pytest.fixture(scope="module")
def hostile_run():
    """An estate whose names and tags are markup: a team tag, a machine and a gallery name."""
    tags = {"environment": "production", "team": SCRIPT_TAG, "created": "2026-01-01"}
    resources = [gallery(tags=tags), definition(tags=tags),
                 version(regions=(("West Europe", 1, "Standard_ZRS"),), tags=tags),
                 vm(name=IMG_TAG, image=marketplace("latest"), tags={"team": BREAKOUT}),
                 vm(name="vm-\u2028line\u2029para", image=marketplace("latest"))]
    return auditor.audit(snapshot_of(*resources))


def test_embedded_json_cannot_leave_its_script_element(sample_run):
    findings = sample_run.findings.copy()
    findings.loc[0, "resource_name"] = BREAKOUT
    findings.loc[1, "message"] = "line\u2028separator\u2029paragraph & 'quote' \ud800 lone"
    findings.loc[2, "evidence"] = '{"tag": "' + SCRIPT_TAG + '"}'
    page = render_html(report_data(findings, sample_run.context))
    assert page.count("<script") == 3 and page.count("</script>") == 3
    assert "<!--" not in page and "\u2028" not in page and "\u2029" not in page
    start = page.index('id="report-data">')
    embedded = page[start:page.index("</script>", start)]
    assert embedded.isascii() and "<" not in embedded[len('id="report-data">'):]
    assert "\\u2028" in embedded and "\\u003c/script\\u003e" in embedded
    columns = embedded_data(page)["findings"]["columns"]
    assert columns["resource_name"][0] == BREAKOUT
    assert columns["message"][1] == findings.loc[1, "message"]
    assert embedded_evidence(page)[2] == '{"tag": "' + SCRIPT_TAG + '"}'
    packed = page[page.index('id="evidence-data">') + len('id="evidence-data">'):]
    assert re.fullmatch("[A-Za-z0-9+/=]+", packed[:packed.index("</script>")])


def test_text_from_azure_is_escaped_in_the_rendered_page(hostile_run, tmp_path):
    path = tmp_path / "report.html"
    write_html(path, hostile_run.findings, hostile_run.context, cost=hostile_run.cost,
               plan=hostile_run.plan)
    page = path.read_text(encoding="utf-8")
    tree = lxml.html.fromstring(page)
    assert len(tree.xpath("//script")) == 3 and not tree.xpath("//img")
    teams = [td.text_content() for td in tree.xpath('//table[@id="cost-team"]//td[1]')]
    assert SCRIPT_TAG in teams
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    names = embedded_data(page)["findings"]["columns"]["resource_name"]
    assert IMG_TAG in names


def test_page_shows_the_counts_every_report_shows(sample_run):
    page = render_html(report_data(sample_run.findings, sample_run.context,
                                   cost=sample_run.cost, plan=sample_run.plan,
                                   exemptions=sample_run.exemptions.entries))
    tree = lxml.html.fromstring(page)
    counts = summary(sample_run.findings)
    assert embedded_data(page)["summary"] == counts
    assert int(tree.get_element_by_id("open-total").text_content()) == counts["open"]
    assert int(tree.get_element_by_id("exempted-total").text_content()) == counts["exempted"]
    tiles = {t.get("data-severity"): int(t.find_class("count")[0].text_content())
             for t in tree.xpath("//div[@data-severity]")}
    assert tiles == counts["open_by_severity"]
    rules = {tr.get("data-rule"): (int(tr.find_class("open")[0].text_content()),
                                   int(tr.find_class("exempted")[0].text_content()))
             for tr in tree.xpath('//table[@id="rules-table"]//tr[@data-rule]')}
    assert {k: v[0] for k, v in rules.items() if v[0]} == counts["open_by_rule"]
    assert {k: v[1] for k, v in rules.items() if v[1]} == counts["exempted_by_rule"]
    savings = sample_run.context["savings"]
    assert tree.get_element_by_id("savings-now").text_content() == \
        f"{savings['deletable_now']['monthly_cost']:,.2f} USD"
    assert tree.get_element_by_id("coverage-state").text_content() == \
        sample_run.context["coverage"]["state"]
    total = sample_run.cost.totals().iloc[0]["monthly_cost"]
    assert tree.get_element_by_id("cost-total").text_content() == f"{total:,.2f} USD"


def test_baseline_counts_and_trend_block(sample_run, tmp_path):
    write_reports(tmp_path, sample_run.findings, sample_run.estate.tables, sample_run.context,
                  ["json"])
    run = auditor.audit("sample", baseline=tmp_path / "findings.json")
    tree = lxml.html.fromstring(render_html(report_data(run.findings, run.context)))
    assert int(tree.get_element_by_id("baseline-existing").text_content()) == \
        run.context["baseline"]["existing"]
    assert not tree.xpath('//*[@id="trend-table"]')  # no history, no trend
    assert tree.xpath('//select[@id="filter-status"]')


def test_no_findings_and_no_cost(sample_run):
    page = render_html(report_data(sample_run.findings.iloc[0:0], {}))
    tree = lxml.html.fromstring(page)
    assert tree.get_element_by_id("open-total").text_content() == "0"
    assert embedded_data(page)["findings"]["count"] == 0 and embedded_evidence(page) == []
    assert not tree.xpath('//section[@id="cost"]')


def test_size_per_finding_stays_within_budget(sample_run):
    findings = sample_run.findings

    def size(copies: int) -> int:  # each copy's evidence differs, as it would in an estate
        frame = pd.concat([findings.assign(evidence=findings["evidence"].str[:-1] + f',"copy":{n}}}')
                           for n in range(copies)], ignore_index=True)
        return len(render_html(report_data(frame, sample_run.context)).encode("utf-8"))
    per_finding = (size(21) - size(1)) / (20 * len(findings))
    print(f"{per_finding:.0f} bytes per finding")
    assert per_finding <= BYTES_PER_FINDING, per_finding


# --- in a real browser ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium from the system packages; Selenium Manager never downloads."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser test: {CHROMIUM} or {CHROMEDRIVER} missing")
        pytest.skip("chromium and chromium-driver are not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--window-size=1400,1000",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


def _open(browser, run, folder: Path) -> Path:
    written = write_reports(folder, run.findings, run.estate.tables, run.context, ["html"],
                            cost=run.cost, plan=run.plan,
                            exemptions=run.exemptions.entries if run.exemptions else None)
    browser.get(written[0].resolve().as_uri())
    return written[0]


def _rows(browser) -> list[list[str]]:
    return browser.execute_script(
        "return Array.from(document.querySelectorAll('#rows tr.row')).map("
        "r => Array.from(r.cells).map(c => c.textContent))")


def _open_first_row(browser) -> int:
    """Click the first drawn row (in the page: a scroll may redraw the rows meanwhile)."""
    return int(browser.execute_script(
        "const row = document.querySelector('#rows tr.row'); row.click();"
        "return row.dataset.index;"))


def _choose(browser, select_id: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select
    Select(browser.find_element("id", select_id)).select_by_value(value)


def test_report_in_headless_chromium(browser, sample_run, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    path = _open(browser, sample_run, tmp_path)
    findings, counts = sample_run.findings, summary(sample_run.findings)
    assert browser.find_element("id", "open-total").text == str(counts["open"])
    assert browser.find_element("id", "exempted-total").text == str(counts["exempted"])
    for severity, count in counts["open_by_severity"].items():
        tile = browser.find_element("css selector", f'div[data-severity="{severity}"] .count')
        assert tile.text == str(count)
    assert browser.find_element("id", "shown-count").text == f"{len(findings)} findings"
    rows = _rows(browser)
    assert 0 < len(rows) < len(findings)  # only the rows in view (and a margin) are drawn
    assert [r[0] for r in rows[:3]] == ["critical"] * 3
    browser.save_screenshot(str(tmp_path / "report.png"))

    _choose(browser, "filter-severity", "high")
    high = int((findings["severity"] == "high").sum())
    assert browser.find_element("id", "shown-count").text == f"{high} of {len(findings)} findings"
    assert {r[0] for r in _rows(browser)} == {"high"} and len(_rows(browser)) == high

    _choose(browser, "filter-severity", "")
    _choose(browser, "filter-exempted", "exempted")
    assert len(_rows(browser)) == counts["exempted"]
    assert all(r[6] == "exempted" for r in _rows(browser))
    _choose(browser, "filter-exempted", "")

    search = browser.find_element("id", "filter-text")
    search.send_keys("VM-LATEST")
    matching = findings["resource_name"].astype(str).str.contains("vm-latest") | \
        findings["message"].astype(str).str.lower().str.contains("vm-latest") | \
        findings["resource_id"].astype(str).str.lower().str.contains("vm-latest")
    expected = f"{int(matching.sum())} of {len(findings)} findings"
    browser.implicitly_wait(0)
    for _ in range(50):
        if browser.find_element("id", "shown-count").text == expected:
            break
        browser.execute_script("return new Promise(r => setTimeout(r, 50))")
    assert browser.find_element("id", "shown-count").text == expected
    assert all("vm-latest" in (r[2] + r[3]).lower() for r in _rows(browser))
    search.clear()
    browser.execute_script("document.getElementById('filter-text')"
                           ".dispatchEvent(new Event('input'))")
    browser.execute_script("return new Promise(r => setTimeout(r, 300))")

    rule_header = browser.find_element("css selector", 'th[data-column="rule_id"] button')
    rule_header.click()
    ascending = [r[1] for r in _rows(browser)]
    assert ascending == sorted(ascending) and ascending[0] == min(counts["open_by_rule"])
    rule_header.click()
    descending = [r[1] for r in _rows(browser)]
    assert descending == sorted(descending, reverse=True)
    viewport = browser.find_element("id", "viewport")
    browser.execute_script("arguments[0].scrollTop = arguments[0].scrollHeight", viewport)
    browser.execute_script("return new Promise(r => requestAnimationFrame(() => setTimeout(r, 50)))")
    assert _rows(browser)[-1][1] == min(findings["rule_id"])

    opened = _open_first_row(browser)
    assert browser.find_element("id", "detail").is_displayed()
    evidence = browser.execute_script(
        "const pre = document.getElementById('detail-evidence');"
        "for (let n = 0; n < 100 && pre.textContent === '(unpacking)'; n++)"
        "  await new Promise(r => setTimeout(r, 50));"
        "return JSON.parse(pre.textContent);")
    assert evidence == json.loads(findings["evidence"].iloc[opened])
    shown_id = browser.execute_script(
        "return [...document.querySelectorAll('#detail dt')].find(dt => dt.textContent === "
        "'Resource id').nextElementSibling.textContent")
    assert shown_id == findings["resource_id"].iloc[opened]
    browser.execute_script("document.getElementById('detail').hidden = true;"
                           "document.querySelector('#rows tr.row').focus();"
                           "return new Promise(r => requestAnimationFrame(() => setTimeout(r, 50)))")
    ActionChains(browser).send_keys(Keys.ENTER).perform()  # rows open from the keyboard too
    assert browser.find_element("id", "detail").is_displayed()
    assert browser.execute_script("return document.activeElement.matches('#rows tr.row')")
    assert path.stat().st_size > 0
    browser.save_screenshot(str(tmp_path / "report-sorted.png"))
    _keep_screenshots(tmp_path)


def test_markup_from_azure_stays_text_in_the_browser(browser, hostile_run, tmp_path):
    from selenium.common.exceptions import NoAlertPresentException

    _open(browser, hostile_run, tmp_path)
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 - raises when no alert ran
    assert browser.execute_script("return window.__injected") is None
    assert browser.execute_script("return document.images.length") == 0
    assert browser.execute_script("return document.scripts.length") == 3
    browser.find_element("id", "filter-text").send_keys("onerror")
    browser.execute_script("return new Promise(r => setTimeout(r, 400))")
    rows = _rows(browser)
    assert rows and all(r[2] == IMG_TAG for r in rows)
    _open_first_row(browser)
    detail = browser.find_element("id", "detail").text
    assert IMG_TAG in detail
    teams = browser.execute_script(
        "return Array.from(document.querySelectorAll('#cost-team td:first-child'))"
        ".map(td => td.textContent)")
    assert SCRIPT_TAG in teams
    browser.execute_script("document.getElementById('filter-text').value = 'line';"
                           "document.getElementById('filter-text').dispatchEvent(new Event('input'))")
    browser.execute_script("return new Promise(r => setTimeout(r, 400))")
    assert [r[2] for r in _rows(browser)] == ["vm-\\u2028line\\u2029para"]
    assert browser.execute_script("return window.__injected") is None
    browser.execute_script("document.getElementById('cost').scrollIntoView()")
    browser.save_screenshot(str(tmp_path / "report-hostile.png"))
    _keep_screenshots(tmp_path)


def _keep_screenshots(folder: Path) -> None:
    """Screenshots stay in the test's folder; with IMAGE_AUDIT_ARTIFACTS set (CI), also there."""
    target = os.environ.get("IMAGE_AUDIT_ARTIFACTS")
    for shot in folder.glob("*.png"):
        assert shot.stat().st_size > 10_000  # a page, not an empty image
        if target:
            Path(target).mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, Path(target) / shot.name)

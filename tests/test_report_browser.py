"""The report as a reader sees it: HTML in headless Chromium, PDF rasterised page by page.

Needs Debian's `chromium` and `pdftoppm` (poppler-utils): `make sysdeps` installs them. Skipped with
the reason when they are absent.
"""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.paths import BuildPaths
from reports.build import SECTION_IDS, run
from tests.report_fixture import make_fixture_build

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PDFTOPPM = shutil.which("pdftoppm")

pytestmark = pytest.mark.browser


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180,
                          env={"HOME": str(profile), "PATH": "/usr/bin:/bin"})


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    build = make_fixture_build(tmp_path_factory.mktemp("browser_build"))
    result = run(BuildPaths(build), load_config(), pdf=True)
    return result


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (run `make sysdeps` as root)")
def test_html_in_chromium_has_every_section_and_loaded_images(report, tmp_path):
    html = report.html_path.read_text(encoding="utf-8")
    # A test copy only: record each image's natural size once loaded, so --dump-dom can show it.
    probe = ("<script>window.addEventListener('load', () => document.querySelectorAll('img').forEach("
             "i => i.setAttribute('data-natural-width', i.naturalWidth)));</script>")
    page = tmp_path / "probe.html"
    page.write_text(html.replace("</body>", probe + "</body>"), encoding="utf-8")
    proc = _chromium(["--virtual-time-budget=5000", "--dump-dom", page.as_uri()], tmp_path / "profile")
    dom = proc.stdout
    assert "<main" in dom, proc.stderr[-2000:]
    for sid in SECTION_IDS:
        assert f'id="{sid}"' in dom, sid
    widths = [int(w) for w in re.findall(r'data-natural-width="(\d+)"', dom)]
    n_img = dom.count("<img ")
    assert n_img >= 6 and len(widths) == n_img, (n_img, widths)
    assert all(w > 0 for w in widths), widths


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (run `make sysdeps` as root)")
def test_html_screenshot_is_not_blank(report, tmp_path):
    from PIL import Image

    shot = tmp_path / "shot.png"
    proc = _chromium([f"--screenshot={shot}", "--window-size=1280,4000", report.html_path.as_uri()],
                     tmp_path / "profile")
    assert shot.exists(), proc.stderr[-2000:]
    img = Image.open(shot).convert("L")
    assert img.size == (1280, 4000)
    lo, hi = img.getextrema()
    assert hi - lo > 100  # text and charts, not a white page
    dark = sum(img.histogram()[:128]) / (img.size[0] * img.size[1])
    assert dark > 0.005


def test_embedded_images_decode_and_are_not_blank(report):
    from PIL import Image

    html = report.html_path.read_text(encoding="utf-8")
    payloads = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(payloads) >= 6
    for p in payloads:
        img = Image.open(io.BytesIO(base64.b64decode(p))).convert("L")
        assert img.size[0] > 50 and img.size[1] > 50
        lo, hi = img.getextrema()
        assert hi - lo > 50


@pytest.mark.skipif(PDFTOPPM is None, reason="pdftoppm is not installed (poppler-utils; run `make sysdeps`)")
def test_pdf_pages_are_sensible(report, tmp_path):
    from PIL import Image
    from pypdf import PdfReader

    assert report.pdf_path is not None and report.pdf_path.exists()
    reader = PdfReader(str(report.pdf_path))
    n = len(reader.pages)
    assert 10 <= n <= 60, n
    assert n == report.n_pages
    mb = reader.pages[0].mediabox
    assert abs(float(mb.width) - 595.3) < 2 and abs(float(mb.height) - 841.9) < 2  # A4 in points
    text = "\n".join(page.extract_text() or "" for page in reader.pages)
    assert "sommaire" in text.lower()
    toc = reader.pages[0].extract_text() + (reader.pages[1].extract_text() or "")
    # Table of contents with page numbers (target-counter): "1. Synthèse ...... 2"-like lines.
    assert len(re.findall(r"\.{3,}\s*\d+", toc)) >= len(SECTION_IDS), toc[:1500]
    # Page numbers in the footer ("3 / N") and a table of contents that points to real pages.
    assert re.search(rf"\b3 / {n}\b", text)
    subprocess.run([PDFTOPPM, "-r", "30", "-png", str(report.pdf_path), str(tmp_path / "p")], check=True,
                   timeout=180)
    pages = sorted(tmp_path.glob("p-*.png"))
    assert len(pages) == n
    for page in pages:
        img = Image.open(page).convert("L")
        lo, hi = img.getextrema()
        assert hi - lo > 60, page.name  # every page has content


# Issue 16: a good web page at desktop and phone widths, and a PDF with its metadata and bookmarks.
PROBE = """<script>
window.addEventListener('load', () => {
  const out = {};
  const doc = document.documentElement;
  out.overflow = doc.scrollWidth - doc.clientWidth;
  out.wide = [...document.querySelectorAll('main *')].filter(e => {
    const r = e.getBoundingClientRect();
    return r.width > 0 && r.right > doc.clientWidth + 1 && !e.closest('.scroll');
  }).slice(0, 5).map(e => e.tagName + '.' + e.className);
  out.broken = [...document.querySelectorAll('a[href^="#"]')].map(a => a.getAttribute('href').slice(1))
    .filter(id => !document.getElementById(id));
  out.navFixed = getComputedStyle(document.querySelector('nav.toc')).position;
  document.body.setAttribute('data-probe', JSON.stringify(out));
});
window.addEventListener('error', e => document.body.setAttribute('data-error', String(e.message)));
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (run `make sysdeps` as root)")
@pytest.mark.parametrize("width,nav", [(1366, "fixed"), (390, "static")])
def test_html_has_no_horizontal_overflow_no_error_and_every_link_resolves(report, tmp_path, width, nav):
    import json

    html = report.html_path.read_text(encoding="utf-8")
    assert "<script" not in html  # the report itself runs no script
    page = tmp_path / "probe.html"
    page.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    proc = _chromium(["--virtual-time-budget=5000", f"--window-size={width},900", "--enable-logging=stderr",
                      "--dump-dom", page.as_uri()], tmp_path / "profile")
    m = re.search(r"data-probe=\"([^\"]*)\"", proc.stdout)
    assert m, proc.stderr[-2000:]
    probe = json.loads(m.group(1).replace("&quot;", '"'))
    assert probe["overflow"] <= 0 and not probe["wide"], probe
    assert probe["broken"] == [], probe["broken"]
    assert probe["navFixed"] == nav
    assert 'data-error="' not in proc.stdout
    assert not re.search(r"Uncaught|CONSOLE\(\d+\)\].*error", proc.stderr, re.I), proc.stderr[-2000:]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (run `make sysdeps` as root)")
@pytest.mark.parametrize("width", [1366, 390])
def test_screenshots_of_the_first_screen_and_of_each_chapter(report, tmp_path, width):
    """One screenshot of the first screen and one per chapter (headless Chromium does not scroll to
    a fragment before its screenshot, so the chapter is shown alone, under the table of contents);
    none blank. They stay under tmp_path for a person to look at."""
    from PIL import Image

    html = report.html_path.read_text(encoding="utf-8")
    for anchor in ("", *SECTION_IDS):
        page = tmp_path / f"{anchor or 'top'}.html"
        only = (f"<style>.cover, .part-title, main section:not(#{anchor}) {{ display: none; }}</style>"
                if anchor else "")
        page.write_text(html.replace("</head>", only + "</head>"), encoding="utf-8")
        shot = tmp_path / f"{width}_{anchor or 'top'}.png"
        _chromium([f"--screenshot={shot}", f"--window-size={width},900", "--hide-scrollbars", page.as_uri()],
                  tmp_path / "profile")
        assert shot.exists(), anchor
        img = Image.open(shot).convert("L")
        lo, hi = img.getextrema()
        assert hi - lo > 100, anchor


@pytest.mark.skipif(PDFTOPPM is None, reason="pdftoppm is not installed (poppler-utils; run `make sysdeps`)")
def test_pdf_has_title_language_tags_and_chapter_bookmarks(report):
    from pypdf import PdfReader

    reader = PdfReader(str(report.pdf_path))
    assert reader.metadata.title and "ÉQUILIBRES" in reader.metadata.title
    root = reader.trailer["/Root"]
    assert str(root.get("/Lang")) == report.lang
    assert bool(root.get("/MarkInfo", {}).get("/Marked"))  # tagged PDF

    def titles(outline):
        for item in outline:
            if isinstance(item, list):
                yield from titles(item)
            else:
                yield item.title

    names = list(titles(reader.outline))
    assert len(names) >= len(SECTION_IDS), names
    assert names[0].endswith("Synthèse") or names[0].endswith("Synthesis")


def test_pdf_divider_pages_carry_no_running_header(report, tmp_path):
    """A part's divider page shows its title and the page number only: no running header (the chapter
    string there would be the previous part's last chapter; named page ``divider`` in report.css)."""
    from pypdf import PdfReader

    from reports.build import PARTS
    from reports.i18n import text

    reader = PdfReader(str(report.pdf_path))
    pages = [page.extract_text() or "" for page in reader.pages]
    title = text("part_evidence", report.lang).upper()
    dividers = [i for i, t in enumerate(pages) if t.strip().upper().startswith(text("part_evidence", report.lang).upper())
                or t.strip().upper().startswith(text("part_annex", report.lang).upper())]
    assert len(dividers) == len(PARTS) - 1, (title, [t[:80] for t in pages])
    n = len(pages)
    for i in dividers:
        lines = [ln.strip() for ln in pages[i].splitlines() if ln.strip()]
        # The part title and "i / N", nothing else: no chapter name, no document title.
        assert len(lines) == 2 and lines[1] == f"{i + 1} / {n}", lines
        assert not re.search(r"^\d+\. ", pages[i], flags=re.M), pages[i]
    # The page after a divider opens a chapter, with its own running header.
    for i in dividers:
        assert re.match(r"\s*\d+\. ", pages[i + 1]), pages[i + 1][:120]


PAGE_WIDTH_PT, MARGIN_PT = 595.28, 16 / 25.4 * 72  # A4, report.css @page margins (16 mm left and right)


def words_beyond_the_margins(pdf: Path) -> list[str]:
    """Words of ``pdf`` (pdftotext's bounding boxes) that reach into the left or right page margin."""
    out = subprocess.run(["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True, check=True,
                         timeout=180).stdout
    found = []
    for page, body in enumerate(out.split("<page ")[1:], start=1):
        for x0, x1, word in re.findall(r'<word xMin="([\d.]+)" yMin="[\d.]+" xMax="([\d.]+)" yMax="[\d.]+">(.*?)</word>',
                                       body):
            if float(x0) < MARGIN_PT - 1 or float(x1) > PAGE_WIDTH_PT - MARGIN_PT + 1:
                found.append(f"page {page}: {word!r} [{float(x0):.0f}, {float(x1):.0f}]")
    return found


@pytest.mark.skipif(PDFTOPPM is None, reason="pdftotext is not installed (poppler-utils; run `make sysdeps`)")
def test_pdf_tables_fit_the_page_width(report, tmp_path):
    """Tables are laid out with fixed column widths in print (reports/layout.py): no cell may push its
    text past the page's right margin, nor the table past its left one."""
    assert not words_beyond_the_margins(report.pdf_path)
    # The check can fail: a table of long unbreakable words, wider than the page, is found.
    html = report.html_path.read_text(encoding="utf-8")
    wide = "".join(f"<td>{'W' * 40}</td>" for _ in range(4))
    html = html.replace("</main>", f'<table style="table-layout: auto"><tr>{wide}</tr></table></main>')
    from reports.build import html_to_pdf

    pdf_bytes, _ = html_to_pdf(html)
    (tmp_path / "wide.pdf").write_bytes(pdf_bytes)
    assert words_beyond_the_margins(tmp_path / "wide.pdf")

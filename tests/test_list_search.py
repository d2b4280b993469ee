"""The session list's search and paging in headless Chromium against a real server: the search
runs on the server over every session (not over a loaded page), the header counts every match,
the pages reach every match, the filters live in the list's URL; and the list at 390 px."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Browser, Page

from streamdom.archive import commits, lake
from streamdom.ingest.validate import make_record
from streamdom.testing import ServerProcess
from tests.helpers import TEST_SERVER_ARGS, session_events, wait_for

CHROME = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/156.0.0.0 Safari/537.36")
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0"
SAFARI = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1")
AGENTS = (CHROME, FIREFOX, SAFARI)
LONG_URL = "https://shop.example/checkout/step-2/payment-details?coupon=SPRING-2026&ref=newsletter-11"
URLS = ("https://shop.example/cart", "https://blog.example/posts/streaming-dom", LONG_URL)
SESSIONS = 1_050  # more than the old list's 1,000 cap, and than one page
NEEDLE = "s-oldest"  # the least recent session: on the last page
PAGE = 50  # rows per page of the list


def archive_sessions(data_dir: Path, sessions: list[tuple[str, str, str, int]]) -> None:
    """Sessions committed straight into the archive through the server's own commit code (what
    its flushes do), before the server starts: (id, page URL, user agent, server time)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    con = lake.connect(lake.Location.local(data_dir))
    rows, info = [], {}
    for sid, url, agent, t in sessions:
        for i, ev in enumerate(session_events(3, t0=t, href=url)):
            rows.append(make_record(sid, "tab-1", i + 1, ev, t + i).row())
        info[(sid, "tab-1")] = (url, agent)
    commits.commit(con, rows, info)
    con.close()


def spec(i: int, now: int) -> tuple[str, str, str, int]:
    """Session i of the corpus: the higher i, the older; the oldest has a URL of its own."""
    if i == SESSIONS - 1:
        return NEEDLE, "https://needle.example/only-here", FIREFOX, now - 3_600_000
    return f"s-{i:04d}", URLS[i % len(URLS)], AGENTS[i % len(AGENTS)], now - 60_000 - i * 1_000


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose archive holds SESSIONS finished sessions of the last hour. Read only."""
    data = tmp_path_factory.mktemp("corpus") / "data"
    now = int(time.time() * 1000)
    archive_sessions(data, [spec(i, now) for i in range(SESSIONS)])
    srv = ServerProcess(data, *TEST_SERVER_ARGS).start()
    yield srv
    srv.stop()


def row_ids(page: Page) -> list[str]:
    """Session ids of the rows in the list, in order."""
    return page.eval_on_selector_all("#list [data-session-id]", "els => els.map(e => e.dataset.sessionId)")


def settled(page: Page, query: str) -> None:
    """Wait until the rows shown answer the list URL's `query` ('' for the default view)."""
    wait_for(lambda: page.evaluate(
        "q => { const l = document.getElementById('list');"
        " return l.dataset.query === q && !l.hasAttribute('aria-busy'); }", query),
        timeout=20, what=f"list answers {query!r}")


def count(page: Page) -> int:
    """The header's count of matches."""
    return int(page.locator('[data-testid="count"]').get_attribute("data-total") or -1)


def query_of(page: Page) -> dict[str, list[str]]:
    """The list page's own URL parameters."""
    return parse_qs(urlsplit(page.url).query)


def test_count_is_the_true_total_and_pages_reach_every_session(corpus: ServerProcess,
                                                                browser: Browser) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(corpus.http + "/")
    settled(page, "")
    assert count(page) == SESSIONS, "the header counts every session, not the first 1,000"
    first = row_ids(page)
    assert first == [f"s-{i:04d}" for i in range(PAGE)], "most recent first"
    label = page.locator('[data-testid="page-label"]')
    assert label.inner_text() == f"1–{PAGE} of {SESSIONS:,}"

    page.locator('[data-testid="next"]').click()
    settled(page, "?page=2")
    assert row_ids(page) == [f"s-{i:04d}" for i in range(PAGE, 2 * PAGE)]
    assert query_of(page) == {"page": ["2"]}

    last = -(-SESSIONS // PAGE)  # a shared link to the last page opens there
    page.goto(f"{corpus.http}/?page={last}")
    settled(page, f"?page={last}")
    ids = row_ids(page)
    assert len(ids) == SESSIONS - (last - 1) * PAGE and ids[-1] == NEEDLE
    assert page.locator('[data-testid="next"]').is_disabled()
    page.go_back()
    settled(page, "?page=2")
    page.close()


def test_search_finds_a_session_outside_the_first_page(corpus: ServerProcess,
                                                        browser: Browser) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(corpus.http + "/")
    settled(page, "")
    assert NEEDLE not in row_ids(page)
    page.locator('[data-testid="filter"]').fill("needle.example")
    settled(page, "?q=needle.example")
    assert row_ids(page) == [NEEDLE]
    assert count(page) == 1
    assert "1 matching" in page.locator('[data-testid="count"]').inner_text()

    # The search is in the URL: the link opens the same search.
    shared = page.url
    other = browser.new_page(viewport={"width": 1280, "height": 800})
    other.goto(shared)
    settled(other, "?q=needle.example")
    assert row_ids(other) == [NEEDLE]
    assert other.locator('[data-testid="filter"]').input_value() == "needle.example"
    other.close()

    page.locator('[data-testid="filter"]').fill("no-such-session-anywhere")
    settled(page, "?q=no-such-session-anywhere")
    assert row_ids(page) == [] and count(page) == 0
    assert page.locator('[data-testid="no-match"]').is_visible()
    assert page.locator('[data-testid="empty"]').is_hidden()
    page.locator("#clear-filters").click()
    settled(page, "")
    assert count(page) == SESSIONS
    page.close()


def test_search_by_browser_and_filters_change_the_count(corpus: ServerProcess, browser: Browser) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(corpus.http + "/")
    settled(page, "")
    assert count(page) == SESSIONS
    chrome = sum(1 for i in range(SESSIONS) if spec(i, 0)[2] == CHROME)
    page.locator('[data-testid="filter"]').fill("chrome")  # what the Browser column shows
    settled(page, "?q=chrome")
    assert count(page) == chrome
    browsers = page.eval_on_selector_all("#list .c-browser", "els => els.map(e => e.textContent)")
    assert len(browsers) == PAGE and all(b.startswith("Chrome 156") for b in browsers), browsers[:3]

    # A filter of the panel narrows the same search, shows as a chip, and is in the URL.
    page.locator('[data-testid="toggle-filters"]').click()
    page.locator('[data-testid="filter-errors"]').check()
    settled(page, "?q=chrome&has_errors=1")
    assert count(page) == 0 and page.locator('[data-testid="no-match"]').is_visible()
    assert query_of(page) == {"q": ["chrome"], "has_errors": ["1"]}
    assert page.locator('[data-testid="chip"]').all_text_contents() == ["has errors×"]
    page.locator('[data-testid="chip"]').click()
    settled(page, "?q=chrome")
    assert count(page) == chrome and not page.locator('[data-testid="filter-errors"]').is_checked()

    # A bad value the server refuses is said, not shown as "no sessions".
    page.goto(corpus.http + "/?trait=:v")
    page.locator('[data-testid="search-error"]').wait_for(state="visible", timeout=10_000)
    assert "trait" in page.locator('[data-testid="search-error"]').inner_text()
    assert page.locator('[data-testid="no-match"]').is_hidden()
    page.close()


def test_list_at_390_px(corpus: ServerProcess, browser: Browser) -> None:
    page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                            is_mobile=True, has_touch=True)
    page.goto(corpus.http + "/")
    settled(page, "")
    width = 390

    def overflow() -> int:
        return page.evaluate("document.documentElement.scrollWidth")

    assert overflow() <= width, "no horizontal scrolling"
    box = page.locator('[data-testid="filter"]').bounding_box()
    button = page.locator('[data-testid="toggle-filters"]').bounding_box()
    assert box and button
    assert box["x"] >= 0 and box["x"] + box["width"] <= width, box
    assert button["x"] + button["width"] <= width, button
    # The search box and its button sit on one line, the same height, centred alike.
    assert abs((box["y"] + box["height"] / 2) - (button["y"] + button["height"] / 2)) <= 1
    assert abs(box["height"] - button["height"]) <= 1

    # Every row inside the screen, and its URL whole (not cut after the host).
    rows = page.eval_on_selector_all(
        "#list [data-session-id]",
        """els => els.map(e => { const r = e.getBoundingClientRect(); const u = e.querySelector('[data-testid=url]');
             const ur = u.getBoundingClientRect();
             return {left: r.left, right: r.right, url: u.textContent, urlRight: ur.right,
                     clipped: u.scrollWidth > u.clientWidth + 1}; })""")
    assert len(rows) == PAGE
    for r in rows:
        assert r["left"] >= 0 and r["right"] <= width and r["urlRight"] <= width, r
        assert not r["clipped"], r
    assert {r["url"] for r in rows} == set(URLS), "the full URLs are in the rows"
    long_row = page.locator(f'#list [data-session-id="s-{URLS.index(LONG_URL):04d}"] [data-testid="url"]')
    assert long_row.inner_text().replace("\n", "") == LONG_URL, "shown whole, wrapped"

    # The filters panel fits too.
    page.locator('[data-testid="toggle-filters"]').click()
    page.locator('[data-testid="filters"]').wait_for(state="visible")
    assert overflow() <= width
    for field in page.locator('[data-testid="filters"] input, [data-testid="filters"] select').all():
        b = field.bounding_box()
        assert b is None or (b["x"] >= 0 and b["x"] + b["width"] <= width), b
    page.close()

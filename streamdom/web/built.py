"""The viewer's built files (streamdom/static): a page's text, and the styled error page."""

from __future__ import annotations

from html import escape
from pathlib import Path

from tornado.web import HTTPError

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

# What a PM reads on an error page, by status; the reason a handler gives goes under it.
TITLES = {
    400: "Bad request",
    401: "Login required",
    403: "Forbidden",
    404: "Page not found",
    405: "Method not allowed",
}


def page(name: str) -> str:
    """The text of a built page in streamdom/static (read per request: pages are small)."""
    path = STATIC_DIR / name
    if not path.exists():
        raise HTTPError(500, reason=f"{name} is not built: run `make build`")
    return path.read_text()


def error_page(status: int, title: str | None = None, message_html: str = "") -> str:
    """The styled page for an HTTP error (the viewer's look, a link back to the list).

    `message_html` is inserted as it is: escape what comes from the request.
    """
    title = title or TITLES.get(status, "Something went wrong" if status >= 500 else "Error")
    try:
        text = page("error.html")
    except HTTPError:  # not built: still answer something readable
        return f"{status}: {escape(title)}"
    return (text.replace("{{status}}", str(status))
            .replace("{{testid}}", "not-found" if status == 404 else "error")
            .replace("{{title}}", escape(title))
            .replace("{{message}}", message_html))

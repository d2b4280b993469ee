"""Browser and OS names from a User-Agent string, for the session list and its search.

A few ordered rules cover what people browse with; anything else keeps the product token it
starts with (or ""). Headless Chrome is Chrome: that is what rendered the page.
"""

from __future__ import annotations

import re

# Order matters: Edge and Opera say "Chrome" too, Chrome says "Safari", iOS browsers say "Safari".
_BROWSERS = (
    ("Edge", re.compile(r"\bEdg(?:e|A|iOS)?/(\d+)")),
    ("Opera", re.compile(r"\bOPR/(\d+)")),
    ("Samsung Internet", re.compile(r"\bSamsungBrowser/(\d+)")),
    ("Firefox", re.compile(r"\b(?:Firefox|FxiOS)/(\d+)")),
    ("Chrome", re.compile(r"\b(?:HeadlessChrome|Chrome|CriOS)/(\d+)")),
    ("Chromium", re.compile(r"\bChromium/(\d+)")),
    ("Safari", re.compile(r"\bVersion/(\d+)(?:[.\d]*)(?: Mobile/\S+)? Safari/")),
)
_OSES = (
    ("iOS", re.compile(r"\b(?:iPhone|iPad|iPod)\b")),
    ("Android", re.compile(r"\bAndroid\b")),
    ("ChromeOS", re.compile(r"\bCrOS\b")),
    ("Windows", re.compile(r"\bWindows\b")),
    ("macOS", re.compile(r"\bMac OS X\b|\bMacintosh\b")),
    ("Linux", re.compile(r"\bLinux\b|\bX11\b")),
)


def browser_of(user_agent: str) -> str:
    """E.g. "Chrome 156", "Firefox 128", "Safari 17"; "" when unknown."""
    for name, pattern in _BROWSERS:
        m = pattern.search(user_agent)
        if m:
            return f"{name} {m.group(1)}"
    return ""


def os_of(user_agent: str) -> str:
    """E.g. "Windows", "macOS", "Linux", "Android", "iOS"; "" when unknown."""
    for name, pattern in _OSES:
        if pattern.search(user_agent):
            return name
    return ""

"""The documents say what the code does: docs/PROTOCOL.md's close codes are the server's."""

from __future__ import annotations

import re

from streamdom.testing import ROOT
from streamdom.wire import CloseCode


def test_protocol_close_code_table_is_the_servers() -> None:
    text = (ROOT / "docs" / "PROTOCOL.md").read_text()
    table = text[text.index("### Close codes"):].split("\n## ", 1)[0]
    documented = {int(code) for code in re.findall(r"^\| (\d{4}) \|", table, flags=re.M)}
    assert documented == {int(c) for c in CloseCode}


def test_security_doc_names_real_tests_and_flags() -> None:
    """docs/SECURITY.md: every test it cites exists, every flag it names is in --help, and the
    connection and login flags are in the README too."""
    import subprocess
    import sys

    text = (ROOT / "docs" / "SECURITY.md").read_text()
    current = None
    for m in re.finditer(r"`(?:tests/)?(test_\w+\.py)(?:::(\w+))?`|`::(\w+)`", text):
        module, name, more = m.groups()
        current = module or current
        name = name or more
        assert current is not None and (ROOT / "tests" / current).exists(), m.group(0)
        if name:
            assert f"def {name}(" in (ROOT / "tests" / current).read_text(), m.group(0)
    help_text = subprocess.run([sys.executable, "-m", "streamdom", "--help"], capture_output=True,
                               text=True, check=True, cwd=ROOT).stdout
    readme = (ROOT / "README.md").read_text()
    for flag in set(re.findall(r"`(--[a-z-]+)", text)):
        assert flag in help_text, flag
    for flag in ("--password-file", "--public-url", "--header-timeout", "--body-timeout",
                 "--hello-timeout", "--max-connections", "--max-connections-per-ip"):
        assert flag in text and flag in readme and flag in help_text, flag

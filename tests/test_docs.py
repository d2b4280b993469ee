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

"""rrweb's event kinds, as `@rrweb/types` numbers them (the `type` and `source` columns store these)."""

from __future__ import annotations

from enum import IntEnum


class EventType(IntEnum):
    """rrweb's `EventType`: the `type` of every recorded event."""

    DomContentLoaded = 0
    Load = 1
    FullSnapshot = 2
    IncrementalSnapshot = 3
    Meta = 4
    Custom = 5
    Plugin = 6
    Asset = 7


class IncrementalSource(IntEnum):
    """rrweb's `IncrementalSource`: `data.source` of an IncrementalSnapshot event."""

    Mutation = 0
    MouseMove = 1
    MouseInteraction = 2
    Scroll = 3
    ViewportResize = 4
    Input = 5
    TouchMove = 6
    MediaInteraction = 7
    StyleSheetRule = 8
    CanvasMutation = 9
    Font = 10
    Log = 11
    Drag = 12
    StyleDeclaration = 13
    Selection = 14
    AdoptedStyleSheet = 15
    CustomElement = 16

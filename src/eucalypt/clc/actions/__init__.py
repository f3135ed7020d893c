"""EC2 actions the CLC implements: the dispatch table.

A handler is ``async def handler(ctx: RequestContext, params: dict) -> dict``:
``params`` is the request parsed per botocore's input shape, the result is
shaped like the output shape. Adding an action is one import and one line.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from eucalypt.clc.actions.regions import describe_regions
from eucalypt.clc.actions.zones import describe_availability_zones
from eucalypt.clc.context import RequestContext

Handler = Callable[[RequestContext, dict[str, Any]], Awaitable[dict[str, Any]]]

ACTIONS: dict[str, Handler] = {
    "DescribeRegions": describe_regions,
    "DescribeAvailabilityZones": describe_availability_zones,
}

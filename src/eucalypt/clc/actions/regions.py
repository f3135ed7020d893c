"""DescribeRegions."""

from __future__ import annotations

from typing import Any

from eucalypt.clc.actions.filters import apply_filters
from eucalypt.clc.context import RequestContext
from eucalypt.clc.ec2.errors import InvalidParameterValue


async def describe_regions(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    """The cloud is one region; its endpoint is the CLC's EC2 URL."""
    config = ctx.services.config
    region = {
        "RegionName": config.region,
        "Endpoint": config.clc.url,
        "OptInStatus": "opt-in-not-required",
    }
    for name in params.get("RegionNames", []):
        if name != config.region:
            raise InvalidParameterValue(f"Invalid region: {name}")
    regions = apply_filters(
        [region],
        params.get("Filters"),
        {
            "region-name": lambda r: [r["RegionName"]],
            "endpoint": lambda r: [r["Endpoint"]],
            "opt-in-status": lambda r: [r["OptInStatus"]],
        },
    )
    return {"Regions": regions}

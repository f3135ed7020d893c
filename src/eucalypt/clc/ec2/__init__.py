"""The Cloud Controller's EC2 Query API wire protocol.

Requests are decoded into, and responses encoded from, plain dicts shaped by botocore's EC2
service model (API version 2016-11-15). Nothing outside this package deals with XML or the
query encoding.

* :class:`~eucalypt.clc.ec2.protocol.Ec2Protocol` — parse requests, serialise responses;
* :mod:`~eucalypt.clc.ec2.errors` — :class:`Ec2Error` and its family, :func:`render_error`;
* :mod:`~eucalypt.clc.ec2.params` — collecting query parameters and splitting off Action.
"""

from __future__ import annotations

from eucalypt.clc.ec2.errors import Ec2Error, render_error
from eucalypt.clc.ec2.params import query_params_from, split_action
from eucalypt.clc.ec2.protocol import Ec2Protocol, load_ec2_service_model

__all__ = [
    "Ec2Error",
    "Ec2Protocol",
    "load_ec2_service_model",
    "query_params_from",
    "render_error",
    "split_action",
]

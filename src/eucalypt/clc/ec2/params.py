"""Collecting EC2 Query parameters from an HTTP request and splitting off the envelope.

An EC2 Query request carries its parameters in the URL query string (GET) and/or an
``application/x-www-form-urlencoded`` body (POST). :func:`query_params_from` merges both
into one ordered list of ``(name, value)`` pairs; :func:`split_action` separates the
``Action``/``Version`` envelope and the authentication parameters from the operation's own
parameters, which :meth:`Ec2Protocol.parse_request` then decodes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl

from eucalypt.clc.ec2.errors import InvalidParameterValue, MalformedQueryString, MissingAction

__all__ = [
    "AUTH_PARAMS",
    "DEFAULT_MAX_FIELDS",
    "is_auth_param",
    "query_params_from",
    "split_action",
]

#: Parameters consumed by request authentication (signature v2 and v4 query signing).
AUTH_PARAMS = frozenset(
    {
        "AWSAccessKeyId",
        "SignatureMethod",
        "SignatureVersion",
        "Signature",
        "Timestamp",
        "Expires",
        "SecurityToken",
    }
)

#: Upper bound on parameters per request (a cheap guard against hostile bodies).
DEFAULT_MAX_FIELDS = 20_000

Params = Mapping[str, str] | Iterable[tuple[str, str]]


def is_auth_param(name: str) -> bool:
    """Whether ``name`` belongs to request authentication rather than to the operation."""
    return name in AUTH_PARAMS or name[:6].lower() == "x-amz-"


def _parse(text: str, max_fields: int, where: str) -> list[tuple[str, str]]:
    try:
        return parse_qsl(
            text,
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=max_fields,
        )
    except UnicodeDecodeError as exc:
        raise MalformedQueryString(f"The {where} is not valid UTF-8.") from exc
    except ValueError as exc:
        raise MalformedQueryString(f"The {where} has too many parameters.") from exc


def query_params_from(
    raw_query: str,
    form_body: bytes | None,
    *,
    max_fields: int = DEFAULT_MAX_FIELDS,
) -> list[tuple[str, str]]:
    """Query-string pairs followed by form-body pairs, in order, blank values kept.

    ``raw_query`` is the undecoded query string (a leading ``?`` is tolerated);
    ``form_body`` is the raw urlencoded POST body, or ``None``/``b""`` for none. The
    caller decides whether the body is a form (content type). Undecodable percent-escapes
    or more than ``max_fields`` parameters in total raise :class:`MalformedQueryString`.
    """
    pairs = _parse(raw_query.removeprefix("?"), max_fields, "query string")
    if form_body:
        try:
            body_text = form_body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedQueryString("The request body is not valid UTF-8.") from exc
        pairs += _parse(body_text, max(max_fields - len(pairs), 1), "request body")
        if len(pairs) > max_fields:
            raise MalformedQueryString("The request has too many parameters.")
    return pairs


def split_action(params: Params) -> tuple[str, str | None, list[tuple[str, str]]]:
    """``(action, version, op_params)`` from the request's parameters.

    ``op_params`` keeps the order of ``params`` and drops ``Action``, ``Version`` and the
    authentication parameters (see :func:`is_auth_param`). ``version`` is ``None`` when
    absent; checking it is the caller's business.

    Raises :class:`MissingAction` when ``Action`` is absent or blank, and
    :class:`InvalidParameterValue` when ``Action`` or ``Version`` appears twice with
    different values (the same value twice, e.g. in both query string and body, is fine).
    """
    items = params.items() if isinstance(params, Mapping) else params
    action: str | None = None
    version: str | None = None
    op_params: list[tuple[str, str]] = []
    for name, value in items:
        if name == "Action":
            if action is not None and action != value:
                raise InvalidParameterValue("The parameter Action was given conflicting values.")
            action = value
        elif name == "Version":
            if version is not None and version != value:
                raise InvalidParameterValue("The parameter Version was given conflicting values.")
            version = value
        elif not is_auth_param(name):
            op_params.append((name, value))
    if not action:
        raise MissingAction()
    return action, version, op_params

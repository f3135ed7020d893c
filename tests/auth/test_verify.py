"""authenticate's dispatch and parsing rules, HttpRequest, has_auth and payload_verifier."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest

from eucalypt.auth import (
    AuthError,
    AuthFailure,
    HttpRequest,
    authenticate,
    has_auth,
    payload_verifier,
    presign_v4,
    sign_v2_query,
    sign_v4,
)
from eucalypt.auth import canonical as c

from .helpers import CREDENTIAL, ENDPOINT, STORE, fails, from_url, run

NOW = datetime(2024, 1, 31, 12, 0, 0, tzinfo=UTC)
HOST = "127.0.0.1:8773"


def _v4(
    path: str = "/", query: str = "", service: str = "eucalypt", extra: dict[str, str] | None = None
) -> HttpRequest:
    headers = {"host": HOST, **(extra or {})}
    url = f"{ENDPOINT}{path}" + (f"?{query}" if query else "")
    added = sign_v4("GET", url, headers, b"", CREDENTIAL, region="r1", service=service, now=NOW)
    return HttpRequest.create("GET", path, query, {**headers, **added}, b"")


def _with_auth(req: HttpRequest, value: str) -> HttpRequest:
    return dataclasses.replace(req, headers={**req.headers, "authorization": value})


def test_create_lowercases_joins_and_splits() -> None:
    req = HttpRequest.create(
        "get", "/a%20b?x=1", "", [("X-Thing", " one "), ("x-thing", "two"), ("Host", "h")]
    )
    assert (req.method, req.path, req.raw_query) == ("GET", "/a%20b", "x=1")
    assert req.headers == {"x-thing": "one,two", "host": "h"}
    assert req.header("X-THING") == "one,two"


def test_create_accepts_asgi_bytes_and_repairs_latin1() -> None:
    raw = HttpRequest.create(b"PUT", b"/b/k", b"a=%C3%A9", [(b"X-Amz-Meta-N", "é".encode())])
    latin = HttpRequest.create(
        "PUT", "/b/k", "a=%C3%A9", [("x-amz-meta-n", "é".encode().decode("latin-1"))]
    )
    assert raw.headers["x-amz-meta-n"] == latin.headers["x-amz-meta-n"] == "é"
    assert raw.query_pairs() == [("a", "é")]
    plain_latin1 = HttpRequest.create("GET", "/", "", [("x-n", "caf\xe9")])
    assert plain_latin1.headers["x-n"] == "caf\xe9"


def test_utf8_metadata_verifies_when_the_server_decoded_latin1() -> None:
    headers = {"host": HOST, "x-amz-meta-name": "café ☕"}
    added = sign_v4(
        "PUT", f"{ENDPOINT}/b/k", headers, b"x", CREDENTIAL, region="r1", service="s3", now=NOW
    )
    wire = [(k, v.encode().decode("latin-1")) for k, v in {**headers, **added}.items()]
    req = HttpRequest.create("PUT", "/b/k", "", wire, b"x")
    assert run(authenticate(req, STORE, now=NOW)).service == "s3"


def test_query_pairs_keep_order_and_blanks() -> None:
    req = HttpRequest.create("GET", "/", "b=2&a&c=&d=x+y%2Bz&&e=%E2%82%AC", {})
    assert req.query_pairs() == [("b", "2"), ("a", ""), ("c", ""), ("d", "x y+z"), ("e", "€")]


def test_has_auth() -> None:
    assert has_auth(_v4())
    assert not has_auth(HttpRequest.create("GET", "/b/k", "versionId=1", {"host": HOST}))
    url = presign_v4("GET", f"{ENDPOINT}/b/k", CREDENTIAL, region="r", service="s3", expires=60)
    assert has_auth(from_url("GET", url))
    signed = sign_v2_query("POST", HOST, "/", {"Action": "X"}, CREDENTIAL)
    form = HttpRequest.create(
        "POST",
        "/",
        "",
        {"content-type": "application/x-www-form-urlencoded"},
        urlencode(signed).encode(),
    )
    assert has_auth(form)
    assert has_auth(HttpRequest.create("GET", "/b/k", "AWSAccessKeyId=a&Signature=b&Expires=1", {}))


def test_anonymous_request_is_missing() -> None:
    fails(
        authenticate(HttpRequest.create("GET", "/b/k", "", {"host": HOST}), STORE),
        AuthFailure.MISSING,
    )
    post = HttpRequest.create(
        "POST",
        "/",
        "",
        {"content-type": "application/x-www-form-urlencoded"},
        b"Action=DescribeRegions",
    )
    fails(authenticate(post, STORE), AuthFailure.MISSING)


@pytest.mark.parametrize(
    "value",
    [
        "Bearer abc",
        "AWS4-ECDSA-P256-SHA256 Credential=x",
        "AWS4-HMAC-SHA256",
        "AWS4-HMAC-SHA256 Credential=AKID/20240131/r1/eucalypt/aws4_request, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=AKID/2024013/r1/eucalypt/aws4_request, "
        "SignedHeaders=host, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=AKID/20240131/r1/eucalypt/other, "
        "SignedHeaders=host, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=AKID/20240130/r1/eucalypt/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=AKID/20240131/r1/eucalypt/aws4_request, "
        "SignedHeaders=x-amz-date, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=AKID/20240131/r1/eucalypt/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=xyz",
        "AWS nocolon",
    ],
)
def test_malformed_authorization(value: str) -> None:
    fails(authenticate(_with_auth(_v4(), value), STORE, now=NOW), AuthFailure.MALFORMED)


def test_header_and_query_auth_together_is_malformed() -> None:
    req = _v4()
    mixed = dataclasses.replace(req, raw_query="X-Amz-Signature=" + "0" * 64)
    fails(authenticate(mixed, STORE, now=NOW), AuthFailure.MALFORMED)


def test_unknown_key_in_v4_header() -> None:
    auth = _v4().headers["authorization"].replace(CREDENTIAL.access_key, "AKIDUNKNOWN")
    fails(authenticate(_with_auth(_v4(), auth), STORE, now=NOW), AuthFailure.UNKNOWN_KEY)


def test_unsigned_amz_header_is_rejected_but_signed_one_passes() -> None:
    req = _v4(service="s3", extra={"x-amz-acl": "private"})
    run(authenticate(req, STORE, now=NOW))
    added = {**req.headers, "x-amz-copy-source": "/other/secret"}
    err = fails(
        authenticate(dataclasses.replace(req, headers=added), STORE, now=NOW), AuthFailure.MALFORMED
    )
    assert "x-amz-copy-source" in err.message


def test_bad_content_sha256_value() -> None:
    req = _v4(service="s3")
    ecdsa = {**req.headers, "x-amz-content-sha256": "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD"}
    fails(
        authenticate(dataclasses.replace(req, headers=ecdsa), STORE, now=NOW), AuthFailure.MALFORMED
    )


def test_presign_parameter_errors() -> None:
    url = presign_v4(
        "GET", f"{ENDPOINT}/b/k", CREDENTIAL, region="r", service="s3", expires=60, now=NOW
    )
    req = from_url("GET", url)
    too_long = dataclasses.replace(
        req, raw_query=req.raw_query.replace("X-Amz-Expires=60", "X-Amz-Expires=604801")
    )
    fails(authenticate(too_long, STORE, now=NOW), AuthFailure.MALFORMED)
    missing = dataclasses.replace(req, raw_query=req.raw_query.replace("X-Amz-Expires=60&", ""))
    fails(authenticate(missing, STORE, now=NOW), AuthFailure.MALFORMED)
    doubled = dataclasses.replace(req, raw_query=req.raw_query + "&X-Amz-Expires=60")
    fails(authenticate(doubled, STORE, now=NOW), AuthFailure.MALFORMED)
    sha1 = dataclasses.replace(req, raw_query=req.raw_query.replace("HMAC-SHA256", "HMAC-SHA1"))
    fails(authenticate(sha1, STORE, now=NOW), AuthFailure.MALFORMED)


def test_s3_path_signed_encoded_but_sent_raw_still_verifies() -> None:
    # a client that signs "(1)" encoded as %281%29 but leaves it raw on the wire
    headers = {"host": HOST}
    added = sign_v4(
        "GET",
        f"{ENDPOINT}/b/photo%281%29.jpg",
        headers,
        b"",
        CREDENTIAL,
        region="r1",
        service="s3",
        now=NOW,
    )
    raw = HttpRequest.create("GET", "/b/photo(1).jpg", "", {**headers, **added})
    run(authenticate(raw, STORE, now=NOW))
    other = HttpRequest.create("GET", "/b/photo(2).jpg", "", {**headers, **added})
    fails(authenticate(other, STORE, now=NOW), AuthFailure.BAD_SIGNATURE)


def test_v2_signature_with_plus_decoded_as_space() -> None:
    for attempt in range(40):
        signed = sign_v2_query(
            "GET", HOST, "/", {"Action": "A", "N": str(attempt)}, CREDENTIAL, now=NOW
        )
        if "+" in signed["Signature"]:
            break
    else:
        pytest.skip("no signature with '+' found")
    query = "&".join(
        f"{k}={v}" if k == "Signature" else urlencode({k: v}) for k, v in signed.items()
    )
    req = HttpRequest.create("GET", "/", query, {"host": HOST})
    assert " " in dict(req.query_pairs())["Signature"]
    run(authenticate(req, STORE, now=NOW))


def test_v2_parameter_errors() -> None:
    signed = sign_v2_query("GET", HOST, "/", {"Action": "A"}, CREDENTIAL, now=NOW)
    base = {"host": HOST}
    for change in (
        {"SignatureVersion": "1"},
        {"SignatureMethod": "HmacMD5"},
        {"Timestamp": "yesterday"},
        {"Expires": "2024-01-31T12:05:00Z"},
    ):
        req = HttpRequest.create("GET", "/", urlencode({**signed, **change}), base)
        fails(authenticate(req, STORE, now=NOW), AuthFailure.MALFORMED)
    no_sig = {k: v for k, v in signed.items() if k != "Signature"}
    req = HttpRequest.create("GET", "/", urlencode(no_sig), base)
    fails(authenticate(req, STORE, now=NOW), AuthFailure.MALFORMED)


def test_naive_now_is_utc() -> None:
    run(authenticate(_v4(), STORE, now=NOW.replace(tzinfo=None)))
    fails(
        authenticate(_v4(), STORE, now=NOW.replace(tzinfo=None) + timedelta(hours=1)),
        AuthFailure.SKEWED,
    )


def test_payload_verifier() -> None:
    body = b"some streamed body" * 1000
    verifier = payload_verifier(c.sha256_hex(body))
    for i in range(0, len(body), 1024):
        verifier.update(body[i : i + 1024])
    verifier.verify()
    assert verifier.length == len(body)
    wrong = payload_verifier(c.sha256_hex(body))
    wrong.update(body[:-1])
    with pytest.raises(AuthError) as info:
        wrong.verify()
    assert info.value.reason is AuthFailure.PAYLOAD_MISMATCH
    with pytest.raises(ValueError):
        payload_verifier("UNSIGNED-PAYLOAD")


def test_secret_is_not_in_repr() -> None:
    assert CREDENTIAL.secret_key not in repr(CREDENTIAL)
    assert CREDENTIAL.secret_key not in repr(run(authenticate(_v4(), STORE, now=NOW)))

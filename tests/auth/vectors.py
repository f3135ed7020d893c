"""Published AWS signature test data, restated as plain facts for our tests.

* ``SUITE``: AWS's Signature Version 4 test suite (the "aws-sig-v4-test-suite":
  credentials AKIDEXAMPLE / wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, date
  20150830T123600Z, region us-east-1, service "service"). Each case gives the
  raw request, the expected canonical request, the hash line of the string to
  sign and the signature.
* ``PRESIGNED``: query-signed (presigned) variants of two suite requests.
* ``UNNORMALIZED``: a suite case signed without path normalisation (the S3 rule).
* ``S3_*``: the worked examples of the Amazon S3 SigV4 documentation (keys
  AKIAIOSFODNN7EXAMPLE / wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY, date
  20130524T000000Z, region us-east-1), including the aws-chunked upload
  ("Transferring Payload in Multiple Chunks") and its trailer variant.
"""

from __future__ import annotations

from dataclasses import dataclass

SUITE_ACCESS_KEY = "AKIDEXAMPLE"
SUITE_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SUITE_DATE = "20150830T123600Z"
SUITE_REGION = "us-east-1"
SUITE_SERVICE = "service"
SUITE_SCOPE = "20150830/us-east-1/service/aws4_request"
EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
_STD = "host:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n" + EMPTY
_HOST_DATE = "Host:example.amazonaws.com\nX-Amz-Date:20150830T123600Z"


@dataclass(frozen=True)
class SuiteCase:
    name: str
    request: str  # raw HTTP request as in the suite's .req file ("\n" line ends)
    creq: str  # expected canonical request
    sts_hash: str  # last line of the expected string to sign (sha256 of creq)
    signature: str  # expected signature
    signed_headers: str = "host;x-amz-date"


SUITE: tuple[SuiteCase, ...] = (
    SuiteCase(
        "get-header-key-duplicate",
        "GET / HTTP/1.1\nHost:example.amazonaws.com\nMy-Header1:value2\nMy-Header1:value2\n"
        "My-Header1:value1\nX-Amz-Date:20150830T123600Z",
        "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value2,value2,value1\n"
        "x-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\n" + EMPTY,
        "dc7f04a3abfde8d472b0ab1a418b741b7c67174dad1551b4117b15527fbe966c",
        "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea",
        "host;my-header1;x-amz-date",
    ),
    SuiteCase(
        "get-header-value-multiline",
        "GET / HTTP/1.1\nHost:example.amazonaws.com\nMy-Header1:value1\n  value2\n     value3\n"
        "X-Amz-Date:20150830T123600Z",
        "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1,value2,value3\n"
        "x-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\n" + EMPTY,
        "b7b6cbfd8a0430b78891e986784da2630c8a135a8595cec25b26ea94f926ee55",
        "ba17b383a53190154eb5fa66a1b836cc297cc0a3d70a5d00705980573d8ff790",
        "host;my-header1;x-amz-date",
    ),
    SuiteCase(
        "get-header-value-order",
        "GET / HTTP/1.1\nHost:example.amazonaws.com\nMy-Header1:value4\nMy-Header1:value1\n"
        "My-Header1:value3\nMy-Header1:value2\nX-Amz-Date:20150830T123600Z",
        "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value4,value1,value3,value2\n"
        "x-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\n" + EMPTY,
        "31ce73cd3f3d9f66977ad3dd957dc47af14df92fcd8509f59b349e9137c58b86",
        "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01",
        "host;my-header1;x-amz-date",
    ),
    SuiteCase(
        "get-header-value-trim",
        'GET / HTTP/1.1\nHost:example.amazonaws.com\nMy-Header1: value1\nMy-Header2: "a   b   c"\n'
        "X-Amz-Date:20150830T123600Z",
        'GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nmy-header2:"a b c"\n'
        "x-amz-date:20150830T123600Z\n\nhost;my-header1;my-header2;x-amz-date\n" + EMPTY,
        "a726db9b0df21c14f559d0a978e563112acb1b9e05476f0a6a1c7d68f28605c7",
        "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
        "host;my-header1;my-header2;x-amz-date",
    ),
    SuiteCase(
        "get-unreserved",
        "GET /-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz HTTP/1.1\n"
        + _HOST_DATE,
        "GET\n/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz\n\n" + _STD,
        "6a968768eefaa713e2a6b16b589a8ea192661f098f37349f4e2c0082757446f9",
        "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f",
    ),
    SuiteCase(
        "get-utf8",
        "GET /\u1234 HTTP/1.1\n" + _HOST_DATE,
        "GET\n/%E1%88%B4\n\n" + _STD,
        "2a0a97d02205e45ce2e994789806b19270cfbbb0921b278ccf58f5249ac42102",
        "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
    ),
    SuiteCase(
        "get-vanilla",
        "GET / HTTP/1.1\n" + _HOST_DATE,
        "GET\n/\n\n" + _STD,
        "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
        "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    ),
    SuiteCase(
        "get-vanilla-empty-query-key",
        "GET /?Param1=value1 HTTP/1.1\n" + _HOST_DATE,
        "GET\n/\nParam1=value1\n" + _STD,
        "1e24db194ed7d0eec2de28d7369675a243488e08526e8c1c73571282f7c517ab",
        "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb",
    ),
    SuiteCase(
        "get-vanilla-query-order-key",
        "GET /?Param1=value2&Param1=Value1 HTTP/1.1\n" + _HOST_DATE,
        "GET\n/\nParam1=Value1&Param1=value2\n" + _STD,
        "704b4cef673542d84cdff252633f065e8daeba5f168b77116f8b1bcaf3d38f89",
        "eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1",
    ),
    SuiteCase(
        "get-vanilla-query-order-key-case",
        "GET /?Param2=value2&Param1=value1 HTTP/1.1\n" + _HOST_DATE,
        "GET\n/\nParam1=value1&Param2=value2\n" + _STD,
        "816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39e2cf19e0",
        "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
    ),
    SuiteCase(
        "get-vanilla-query-order-value",
        "GET /?Param1=value2&Param1=value1 HTTP/1.1\n" + _HOST_DATE,
        "GET\n/\nParam1=value1&Param1=value2\n" + _STD,
        "c968629d70850097a2d8781c9bf7edcb988b04cac14cca9be4acc3595f884606",
        "5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694",
    ),
    SuiteCase(
        "get-vanilla-query-unreserved",
        "GET /?-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz="
        "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz HTTP/1.1\n"
        + _HOST_DATE,
        "GET\n/\n-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz="
        "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz\n" + _STD,
        "c30d4703d9f799439be92736156d47ccfb2d879ddf56f5befa6d1d6aab979177",
        "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197",
    ),
    SuiteCase(
        "get-vanilla-utf8-query",
        "GET /?\u1234=bar HTTP/1.1\n" + _HOST_DATE,
        "GET\n/\n%E1%88%B4=bar\n" + _STD,
        "eb30c5bed55734080471a834cc727ae56beb50e5f39d1bff6d0d38cb192a7073",
        "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04",
    ),
    SuiteCase(
        "post-header-key-case",
        "POST / HTTP/1.1\n" + _HOST_DATE,
        "POST\n/\n\n" + _STD,
        "553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401ae622fc87",
        "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
    ),
    SuiteCase(
        "post-header-key-sort",
        "POST / HTTP/1.1\nHost:example.amazonaws.com\nMy-Header1:value1\n"
        "X-Amz-Date:20150830T123600Z",
        "POST\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nx-amz-date:20150830T123600Z\n"
        "\nhost;my-header1;x-amz-date\n" + EMPTY,
        "9368318c2967cf6de74404b30c65a91e8f6253e0a8659d6d5319f1a812f87d65",
        "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c",
        "host;my-header1;x-amz-date",
    ),
    SuiteCase(
        "post-header-value-case",
        "POST / HTTP/1.1\nHost:example.amazonaws.com\nMy-Header1:VALUE1\n"
        "X-Amz-Date:20150830T123600Z",
        "POST\n/\n\nhost:example.amazonaws.com\nmy-header1:VALUE1\nx-amz-date:20150830T123600Z\n"
        "\nhost;my-header1;x-amz-date\n" + EMPTY,
        "d51ced243e649e3de6ef63afbbdcbca03131a21a7103a1583706a64618606a93",
        "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d",
        "host;my-header1;x-amz-date",
    ),
    SuiteCase(
        "post-sts-header-before",
        "POST / HTTP/1.1\n" + _HOST_DATE + "\nX-Amz-Security-Token:AQoDYXdzEPT//////////"
        "wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8"
        "YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSX"
        "Dvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FD"
        "rypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==",
        "POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n"
        "x-amz-security-token:AQoDYXdzEPT//////////"
        "wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8"
        "YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSX"
        "Dvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FD"
        "rypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==\n"
        "\nhost;x-amz-date;x-amz-security-token\n" + EMPTY,
        "c237e1b440d4c63c32ca95b5b99481081cb7b13c7e40434868e71567c1a882f6",
        "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead",
        "host;x-amz-date;x-amz-security-token",
    ),
    SuiteCase(
        "post-vanilla",
        "POST / HTTP/1.1\n" + _HOST_DATE,
        "POST\n/\n\n" + _STD,
        "553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401ae622fc87",
        "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
    ),
    SuiteCase(
        "post-vanilla-query",
        "POST /?Param1=value1 HTTP/1.1\n" + _HOST_DATE,
        "POST\n/\nParam1=value1\n" + _STD,
        "9d659678c1756bb3113e2ce898845a0a79dbbc57b740555917687f1b3340fbbd",
        "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11",
    ),
    SuiteCase(
        "post-x-www-form-urlencoded",
        "POST / HTTP/1.1\nContent-Type:application/x-www-form-urlencoded\n"
        + _HOST_DATE
        + "\n\nParam1=value1",
        "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\n"
        "x-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\n"
        "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
        "42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281",
        "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
        "content-type;host;x-amz-date",
    ),
    SuiteCase(
        "post-x-www-form-urlencoded-parameters",
        "POST / HTTP/1.1\nContent-Type:application/x-www-form-urlencoded; charset=utf8\n"
        + _HOST_DATE
        + "\n\nParam1=value1",
        "POST\n/\n\ncontent-type:application/x-www-form-urlencoded; charset=utf8\n"
        "host:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
        "content-type;host;x-amz-date\n"
        "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
        "2e1cf7ed91881a30569e46552437e4156c823447bf1781b921b5d486c568dd1c",
        "1a72ec8f64bd914b0e42e42607c7fbce7fb2c7465f63e3092b3b0d39fa77a6fe",
        "content-type;host;x-amz-date",
    ),
    # normalize-path cases
    SuiteCase(
        "get-relative",
        "GET /example/.. HTTP/1.1\n" + _HOST_DATE,
        "GET\n/\n\n" + _STD,
        "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
        "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    ),
    SuiteCase(
        "get-relative-relative",
        "GET /example1/example2/../.. HTTP/1.1\n" + _HOST_DATE,
        "GET\n/\n\n" + _STD,
        "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
        "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    ),
    SuiteCase(
        "get-slash",
        "GET // HTTP/1.1\n" + _HOST_DATE,
        "GET\n/\n\n" + _STD,
        "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
        "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    ),
    SuiteCase(
        "get-slash-dot-slash",
        "GET /./ HTTP/1.1\n" + _HOST_DATE,
        "GET\n/\n\n" + _STD,
        "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
        "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    ),
    SuiteCase(
        "get-slash-pointless-dot",
        "GET /./example HTTP/1.1\n" + _HOST_DATE,
        "GET\n/example\n\n" + _STD,
        "214d50c111a8edc4819da6a636336472c916b5240f51e9a51b5c3305180cf702",
        "ef75d96142cf21edca26f06005da7988e4f8dc83a165a80865db7089db637ec5",
    ),
    SuiteCase(
        "get-slashes",
        "GET //example// HTTP/1.1\n" + _HOST_DATE,
        "GET\n/example/\n\n" + _STD,
        "cb96b4ac96d501f7c5c15bc6d67b3035061cfced4af6585ad927f7e6c985c015",
        "9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84",
    ),
    SuiteCase(
        "get-space",
        "GET /example space/ HTTP/1.1\n" + _HOST_DATE,
        "GET\n/example%20space/\n\n" + _STD,
        "63ee75631ed7234ae61b5f736dfc7754cdccfedbff4b5128a915706ee9390d86",
        "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741",
    ),
    # the suite's later addition: sorting is by the *encoded* key
    SuiteCase(
        "get-vanilla-query-order-encoded",
        "GET /?Param-3=Value3&Param=Value2&%E1%88%B4=Value1 HTTP/1.1\n" + _HOST_DATE,
        "GET\n/\n%E1%88%B4=Value1&Param=Value2&Param-3=Value3\n" + _STD,
        "",
        "371d3713e185cc334048618a97f809c9ffe339c62934c032af5a0e595648fcac",
    ),
)


@dataclass(frozen=True)
class PresignedCase:
    name: str
    path: str
    query: str
    signature_in_query: str


PRESIGNED: tuple[PresignedCase, ...] = (
    PresignedCase(
        "get-vanilla-query-order-key-case",
        "/",
        "Param2=value2&Param1=value1&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
        "AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fservice%2Faws4_request&X-Amz-Date=20150830T123600Z"
        "&X-Amz-SignedHeaders=host&X-Amz-Expires=3600&X-Amz-Signature="
        "86012e2c9ad4d77369f5d81c11f75158aae4f895a085212cc6d3f923d300bed5",
        "86012e2c9ad4d77369f5d81c11f75158aae4f895a085212cc6d3f923d300bed5",
    ),
    PresignedCase(
        "get-utf8",
        "/\u1234",
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
        "AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fservice%2Faws4_request&X-Amz-Date=20150830T123600Z"
        "&X-Amz-SignedHeaders=host&X-Amz-Expires=3600&X-Amz-Signature="
        "10eae3f14a260bd3911cc6d008d3c576d143b05b62f09782a7a4b37f52178e44",
        "10eae3f14a260bd3911cc6d008d3c576d143b05b62f09782a7a4b37f52178e44",
    ),
)

# "get-slashes-unnormalized": the path is signed as sent (no normalisation, no re-encoding).
UNNORMALIZED_PATH = "//example//"
UNNORMALIZED_SIGNATURE = "87cca117541a147f6df867677d98a7d80dff226d2bfca9e4ffa899665623c7e5"

# Amazon S3 documentation examples.
S3_ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
S3_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
S3_DATE = "20130524T000000Z"
S3_SCOPE = "20130524/us-east-1/s3/aws4_request"
S3_HOST = "examplebucket.s3.amazonaws.com"


@dataclass(frozen=True)
class S3Example:
    name: str
    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    signed_headers: str
    signature: str
    body: bytes | None = None


S3_HEADER_EXAMPLES: tuple[S3Example, ...] = (
    S3Example(
        "get-object",
        "GET",
        "/test.txt",
        "",
        (("Range", "bytes=0-9"), ("x-amz-content-sha256", EMPTY), ("x-amz-date", S3_DATE)),
        "host;range;x-amz-content-sha256;x-amz-date",
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
    ),
    S3Example(
        "put-object",
        "PUT",
        "/test%24file.text",
        "",
        (
            ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
            ("x-amz-date", S3_DATE),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            (
                "x-amz-content-sha256",
                "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
            ),
        ),
        "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
        "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
        b"Welcome to Amazon S3.",
    ),
    S3Example(
        "get-bucket-lifecycle",
        "GET",
        "/",
        "lifecycle",
        (("x-amz-content-sha256", EMPTY), ("x-amz-date", S3_DATE)),
        "host;x-amz-content-sha256;x-amz-date",
        "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
    ),
    S3Example(
        "list-objects",
        "GET",
        "/",
        "max-keys=2&prefix=J",
        (("x-amz-content-sha256", EMPTY), ("x-amz-date", S3_DATE)),
        "host;x-amz-content-sha256;x-amz-date",
        "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
    ),
)

S3_PRESIGNED_QUERY = (
    "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2F"
    "us-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400"
    "&X-Amz-SignedHeaders=host&X-Amz-Signature="
    "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
)

# Chunked upload: PUT s3.amazonaws.com/examplebucket/chunkObject.txt, 66560 bytes of "a"
# in a 65536-byte and a 1024-byte chunk.
CHUNKED_HOST = "s3.amazonaws.com"
CHUNKED_PATH = "/examplebucket/chunkObject.txt"
CHUNKED_SIGNED_HEADERS = (
    "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
    "x-amz-decoded-content-length;x-amz-storage-class"
)
CHUNKED_SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
CHUNKED_SIGNATURES = (
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
)
CHUNKED_CONTENT_LENGTH = 66824
CHUNKED_DECODED_LENGTH = 66560

# The same upload as STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER with a crc32c trailer.
TRAILER_SEED = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"
TRAILER_CHUNK_SIGNATURES = (
    "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
    "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
    "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
)
TRAILER_CHECKSUM = ("x-amz-checksum-crc32c", "sOO8/Q==")
TRAILER_SIGNATURE = "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"

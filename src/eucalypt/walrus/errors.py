"""S3 errors: one hierarchy, rendered at one boundary (``app.py``).

Each class carries the S3 ``code``, a default ``message`` and the HTTP
``status``. Raise them anywhere below the HTTP boundary; anything else that
escapes a handler becomes :class:`InternalError` and is logged with its
traceback.
"""

from __future__ import annotations

from typing import ClassVar


class S3Error(Exception):
    """An S3 error response: ``<Error><Code/><Message/><Resource/><RequestId/></Error>``."""

    code: ClassVar[str] = "InternalError"
    message: ClassVar[str] = "We encountered an internal error. Please try again."
    status: ClassVar[int] = 500

    def __init__(self, message: str | None = None, **extra: str) -> None:
        self.detail = message or self.message
        # Extra elements some errors carry (BucketName, Key, UploadId, ...).
        self.extra = extra
        self.headers: dict[str, str] = {}
        super().__init__(self.detail)


def _error(name: str, status: int, message: str, code: str | None = None) -> type[S3Error]:
    attrs = {"code": code or name, "status": status, "message": message}
    return type(name, (S3Error,), attrs)


class InternalError(S3Error):
    pass


# 400
MalformedPOSTRequest = _error(
    "MalformedPOSTRequest", 400,
    "The body of your POST request is not well-formed multipart/form-data.",
)
MaxPostPreDataLengthExceeded = _error(
    "MaxPostPreDataLengthExceeded", 400, "Your POST request fields preceding the upload file "
    "were too large.",
)
BadDigest = _error(
    "BadDigest", 400, "The Content-MD5 you specified did not match what we received."
)
InvalidDigest = _error("InvalidDigest", 400, "The Content-MD5 you specified was invalid.")
EntityTooSmall = _error(
    "EntityTooSmall", 400, "Your proposed upload is smaller than the minimum allowed object size."
)
EntityTooLarge = _error(
    "EntityTooLarge", 400, "Your proposed upload exceeds the maximum allowed object size."
)
IncompleteBody = _error(
    "IncompleteBody", 400, "You did not provide the number of bytes specified by the "
    "Content-Length HTTP header."
)
InvalidArgument = _error("InvalidArgument", 400, "Invalid Argument")
InvalidBucketName = _error("InvalidBucketName", 400, "The specified bucket is not valid.")
InvalidLocationConstraint = _error(
    "InvalidLocationConstraint", 400, "The specified location constraint is not valid."
)
IllegalLocationConstraintException = _error(
    "IllegalLocationConstraintException", 400,
    "The unspecified location constraint is incompatible for the region specific endpoint "
    "this request was sent to.",
)
InvalidPart = _error(
    "InvalidPart", 400, "One or more of the specified parts could not be found. The part may "
    "not have been uploaded, or the specified entity tag may not match the part's entity tag."
)
InvalidPartOrder = _error(
    "InvalidPartOrder", 400,
    "The list of parts was not in ascending order. Parts must be ordered by part number.",
)
InvalidRequest = _error("InvalidRequest", 400, "Invalid Request")
InvalidURI = _error("InvalidURI", 400, "Couldn't parse the specified URI.")
KeyTooLongError = _error("KeyTooLongError", 400, "Your key is too long")
MalformedXML = _error(
    "MalformedXML", 400, "The XML you provided was not well-formed or did not validate "
    "against our published schema."
)
MalformedACLError = _error(
    "MalformedACLError", 400, "The XML you provided was not well-formed or did not validate "
    "against our published schema."
)
MetadataTooLarge = _error(
    "MetadataTooLarge", 400, "Your metadata headers exceed the maximum allowed metadata size."
)
MissingContentLength = _error(
    "MissingContentLength", 411, "You must provide the Content-Length HTTP header."
)
UnexpectedContent = _error(
    "UnexpectedContent", 400, "This request does not support content."
)
InvalidStorageClass = _error(
    "InvalidStorageClass", 400, "The storage class you specified is not valid."
)
AuthorizationHeaderMalformed = _error(
    "AuthorizationHeaderMalformed", 400, "The authorization header is malformed."
)
XAmzContentSHA256Mismatch = _error(
    "XAmzContentSHA256Mismatch", 400,
    "The provided 'x-amz-content-sha256' header does not match what was computed.",
)
InvalidChecksum = _error(
    "InvalidChecksum", 400, "The checksum you specified did not match what we received.",
    code="BadDigest",
)
MalformedPolicy = _error("MalformedPolicy", 400, "Policies must be valid JSON.")
InvalidPartNumber = _error(
    "InvalidPartNumber", 400, "Part number must be an integer between 1 and 10000.",
    code="InvalidArgument",
)

# 403
AccessDenied = _error("AccessDenied", 403, "Access Denied")
InvalidAccessKeyId = _error(
    "InvalidAccessKeyId", 403,
    "The AWS Access Key Id you provided does not exist in our records.",
)
SignatureDoesNotMatch = _error(
    "SignatureDoesNotMatch", 403, "The request signature we calculated does not match the "
    "signature you provided. Check your key and signing method."
)
RequestTimeTooSkewed = _error(
    "RequestTimeTooSkewed", 403,
    "The difference between the request time and the current time is too large.",
)

# 404
NoSuchBucket = _error("NoSuchBucket", 404, "The specified bucket does not exist")
NoSuchKey = _error("NoSuchKey", 404, "The specified key does not exist.")
NoSuchUpload = _error(
    "NoSuchUpload", 404, "The specified multipart upload does not exist. The upload ID may be "
    "invalid, or the upload may have been aborted or completed."
)
NoSuchBucketPolicy = _error("NoSuchBucketPolicy", 404, "The bucket policy does not exist")
NoSuchCORSConfiguration = _error(
    "NoSuchCORSConfiguration", 404, "The CORS configuration does not exist"
)
NoSuchLifecycleConfiguration = _error(
    "NoSuchLifecycleConfiguration", 404, "The lifecycle configuration does not exist"
)
NoSuchTagSet = _error("NoSuchTagSet", 404, "The TagSet does not exist")
ServerSideEncryptionConfigurationNotFoundError = _error(
    "ServerSideEncryptionConfigurationNotFoundError", 404,
    "The server side encryption configuration was not found",
)

# 405, 409, 411, 412, 416, 501
MethodNotAllowed = _error(
    "MethodNotAllowed", 405, "The specified method is not allowed against this resource."
)
BucketAlreadyExists = _error(
    "BucketAlreadyExists", 409, "The requested bucket name is not available. The bucket "
    "namespace is shared by all users of the system. Please select a different name and try "
    "again."
)
BucketAlreadyOwnedByYou = _error(
    "BucketAlreadyOwnedByYou", 409,
    "Your previous request to create the named bucket succeeded and you already own it.",
)
BucketNotEmpty = _error("BucketNotEmpty", 409, "The bucket you tried to delete is not empty")
OperationAborted = _error(
    "OperationAborted", 409, "A conflicting conditional operation is currently in progress "
    "against this resource. Please try again."
)
PreconditionFailed = _error(
    "PreconditionFailed", 412, "At least one of the pre-conditions you specified did not hold"
)
InvalidRange = _error("InvalidRange", 416, "The requested range is not satisfiable")
PartNumberNotSatisfiable = _error(
    "PartNumberNotSatisfiable", 416, "The requested partnumber is not satisfiable",
    code="InvalidPartNumber",
)
S3NotImplemented = _error(
    "S3NotImplemented", 501, "A header or query you provided implies functionality that is not "
    "implemented.", code="NotImplemented",
)


class NotModified(S3Error):
    """304: rendered without a body (If-None-Match / If-Modified-Since)."""

    code = "NotModified"
    message = "Not Modified"
    status = 304

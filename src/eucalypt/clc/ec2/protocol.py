"""The EC2 Query protocol: requests in, XML documents out, all driven by botocore's model.

:class:`Ec2Protocol` is the only thing the rest of the Cloud Controller needs to speak EC2:
handlers receive plain dicts shaped like the operation's input shape (what boto3 users
pass) and return plain dicts shaped like its output shape (what boto3 users get back).
Build one per application; it caches compiled shapes and is safe to share.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import botocore.loaders
import botocore.model

from eucalypt.clc.ec2.errors import InvalidAction
from eucalypt.clc.ec2.request import RequestParser
from eucalypt.clc.ec2.response import ResponseSerializer, ResultShapeError
from eucalypt.clc.ec2.xmlout import XML_DECLARATION, escape_text

__all__ = ["Ec2Protocol", "load_ec2_service_model"]


def load_ec2_service_model(api_version: str = "2016-11-15") -> botocore.model.ServiceModel:
    """botocore's bundled EC2 service model (``ec2/<api_version>/service-2.json``)."""
    loader = botocore.loaders.Loader()
    data = loader.load_service_model("ec2", "service-2", api_version=api_version)
    return botocore.model.ServiceModel(data, service_name="ec2")


class Ec2Protocol:
    """EC2 Query API codec for one service model.

    * :meth:`parse_request` — operation parameters → input dict (raises ``Ec2Error``);
    * :meth:`serialize_response` — output dict → ``<{Action}Response>`` XML bytes
      (raises ``ValueError`` for results that do not fit the shape).
    """

    API_VERSION = "2016-11-15"
    NAMESPACE = "http://ec2.amazonaws.com/doc/2016-11-15/"

    def __init__(self, service_model: botocore.model.ServiceModel | None = None) -> None:
        self.service_model = (
            service_model if service_model is not None else load_ec2_service_model()
        )
        self._operation_names = frozenset(self.service_model.operation_names)
        self._parser = RequestParser()
        self._serializer = ResponseSerializer()

    def has_operation(self, action: str) -> bool:
        """Whether ``action`` is an operation of the model (case-sensitive, as EC2 is)."""
        return action in self._operation_names

    def operation_model(self, action: str) -> botocore.model.OperationModel:
        """botocore's model of ``action``; :class:`InvalidAction` if there is none."""
        if action not in self._operation_names:
            raise InvalidAction(f"The action {action} is not valid for this web service.")
        return self.service_model.operation_model(action)

    def parse_request(
        self, action: str, params: Mapping[str, str] | Iterable[tuple[str, str]]
    ) -> dict[str, Any]:
        """Decode ``action``'s EC2 query parameters into a dict per its input shape.

        ``params`` must exclude Action, Version and authentication parameters (see
        :func:`eucalypt.clc.ec2.params.split_action`). Only members present in the request
        are returned; integers come back as ``int``, booleans as ``bool``, timestamps as
        aware UTC ``datetime``, blobs as ``bytes``. Raises ``InvalidAction``,
        ``UnknownParameter``, ``InvalidParameterValue`` or ``MissingParameter``
        (see :mod:`eucalypt.clc.ec2.request` for the encoding rules).
        """
        operation = self.operation_model(action)
        pairs = params.items() if isinstance(params, Mapping) else params
        return self._parser.parse(operation.input_shape, pairs)

    def serialize_response(self, action: str, result: Mapping[str, Any], request_id: str) -> bytes:
        """The EC2 XML response document for ``action`` with ``result``, UTF-8 encoded.

        ``result`` is keyed by output-shape member names, as boto3 returns them. The
        document is ``<?xml ...?>\\n<{Action}Response xmlns="{NAMESPACE}">`` followed by
        ``<requestId>`` and the members (see :mod:`eucalypt.clc.ec2.response`). An
        operation without an output shape takes an empty result and answers
        ``<return>true</return>`` after the request id, as EC2 does.

        Raises ``ValueError`` for an unknown action or a result that does not fit the
        output shape (message names the offending member path).
        """
        if action not in self._operation_names:
            raise ValueError(f"{action!r} is not an EC2 operation")
        shape = self.service_model.operation_model(action).output_shape
        out = [
            XML_DECLARATION,
            f'<{action}Response xmlns="{self.NAMESPACE}"><requestId>',
            escape_text(request_id),
            "</requestId>",
        ]
        if shape is None:
            if result:
                raise ValueError(f"{action} has no output; got result keys {sorted(result)}")
            out.append("<return>true</return>")
        else:
            try:
                self._serializer.write(out, shape, result)
            except ResultShapeError as exc:
                raise ValueError(f"{action} result: {exc}") from exc
        out.append(f"</{action}Response>")
        return "".join(out).encode()

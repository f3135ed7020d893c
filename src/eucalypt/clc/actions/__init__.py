"""EC2 actions the CLC implements: the dispatch table.

A handler is ``async def handler(ctx: RequestContext, params: dict) -> dict``:
``params`` is the request parsed per botocore's input shape, the result is
shaped like the output shape. Adding an action is one import and one line.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from eucalypt.clc.actions import (
    addresses,
    images,
    instance_types,
    instances,
    keypairs,
    regions,
    security_groups,
    tagging,
    zones,
)
from eucalypt.clc.context import RequestContext

Handler = Callable[[RequestContext, dict[str, Any]], Awaitable[dict[str, Any]]]

ACTIONS: dict[str, Handler] = {
    "DescribeRegions": regions.describe_regions,
    "DescribeAvailabilityZones": zones.describe_availability_zones,
    "DescribeInstanceTypes": instance_types.describe_instance_types,
    "CreateKeyPair": keypairs.create_key_pair,
    "ImportKeyPair": keypairs.import_key_pair,
    "DescribeKeyPairs": keypairs.describe_key_pairs,
    "DeleteKeyPair": keypairs.delete_key_pair,
    "CreateSecurityGroup": security_groups.create_security_group,
    "DeleteSecurityGroup": security_groups.delete_security_group,
    "DescribeSecurityGroups": security_groups.describe_security_groups,
    "AuthorizeSecurityGroupIngress": security_groups.authorize_security_group_ingress,
    "RevokeSecurityGroupIngress": security_groups.revoke_security_group_ingress,
    "RegisterImage": images.register_image,
    "DescribeImages": images.describe_images,
    "DeregisterImage": images.deregister_image,
    "DescribeImageAttribute": images.describe_image_attribute,
    "ModifyImageAttribute": images.modify_image_attribute,
    "ResetImageAttribute": images.reset_image_attribute,
    "RunInstances": instances.run_instances,
    "DescribeInstances": instances.describe_instances,
    "DescribeInstanceStatus": instances.describe_instance_status,
    "TerminateInstances": instances.terminate_instances,
    "RebootInstances": instances.reboot_instances,
    "GetConsoleOutput": instances.get_console_output,
    "DescribeInstanceAttribute": instances.describe_instance_attribute,
    "AllocateAddress": addresses.allocate_address,
    "AssociateAddress": addresses.associate_address,
    "DisassociateAddress": addresses.disassociate_address,
    "ReleaseAddress": addresses.release_address,
    "DescribeAddresses": addresses.describe_addresses,
    "CreateTags": tagging.create_tags,
    "DeleteTags": tagging.delete_tags,
    "DescribeTags": tagging.describe_tags,
}

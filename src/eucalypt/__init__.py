"""eucalypt: an open-source IaaS cloud (EC2 + S3 compatible) after the Eucalyptus paper."""

__version__ = "0.1.0"

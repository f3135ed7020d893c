"""The CLC's persistent state (SQLAlchemy 2 models).

Schema changes go through ``eucalypt/clc/migrations`` (Alembic).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Account(Base):
    """A tenant: owns users and, later, every cloud resource."""

    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(12), primary_key=True)  # 12 digits, like AWS
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # The system account's users administer the whole cloud.
    is_system: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    users: Mapped[list[User]] = relationship(back_populates="account", cascade="all, delete-orphan")


class User(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # AIDA...
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    account: Mapped[Account] = relationship(back_populates="users")
    keys: Mapped[list[AccessKey]] = relationship(
        back_populates="user", cascade="all, delete-orphan"
    )
    certificates: Mapped[list[UserCertificate]] = relationship(
        back_populates="user", cascade="all, delete-orphan"
    )


class AccessKey(Base):
    __tablename__ = "access_keys"

    access_key: Mapped[str] = mapped_column(String(32), primary_key=True)
    secret_key: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    user: Mapped[User] = relationship(back_populates="keys")


class UserCertificate(Base):
    """An X.509 certificate issued to a user by the cloud's CA (bundle signing)."""

    __tablename__ = "user_certificates"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # hex serial
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    pem: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    user: Mapped[User] = relationship(back_populates="certificates")


class KeyPair(Base):
    __tablename__ = "key_pairs"
    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # key-...
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    key_type: Mapped[str] = mapped_column(String(16), default="rsa")
    fingerprint: Mapped[str] = mapped_column(String(128))
    public_key: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SecurityGroup(Base):
    """A security group: in the MANAGED modes also the paper's named network."""

    __tablename__ = "security_groups"
    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # sg-...
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(String(255), default="")
    # The group's network in the MANAGED modes, the same in every cluster.
    vni: Mapped[int | None] = mapped_column(nullable=True, unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    rules: Mapped[list[SecurityGroupRule]] = relationship(
        back_populates="group",
        cascade="all, delete-orphan",
        foreign_keys="SecurityGroupRule.group_id",
    )


class SecurityGroupRule(Base):
    """One ingress permission: protocol and ports from a CIDR or another group."""

    __tablename__ = "security_group_rules"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # sgr-...
    group_id: Mapped[str] = mapped_column(
        ForeignKey("security_groups.id", ondelete="CASCADE"), index=True
    )
    protocol: Mapped[str] = mapped_column(String(8))  # tcp, udp, icmp, -1
    from_port: Mapped[int] = mapped_column(default=-1)
    to_port: Mapped[int] = mapped_column(default=-1)
    cidr: Mapped[str | None] = mapped_column(String(64), nullable=True)
    source_group_id: Mapped[str | None] = mapped_column(
        ForeignKey("security_groups.id", ondelete="CASCADE"), nullable=True, index=True
    )
    description: Mapped[str] = mapped_column(String(255), default="")

    group: Mapped[SecurityGroup] = relationship(back_populates="rules", foreign_keys=[group_id])


class Image(Base):
    """A registered image: machine (emi), kernel (eki) or ramdisk (eri)."""

    __tablename__ = "images"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(String(255), default="")
    image_type: Mapped[str] = mapped_column(String(16))  # machine, kernel, ramdisk
    state: Mapped[str] = mapped_column(String(16), default="available")
    state_reason: Mapped[str] = mapped_column(String(255), default="")
    # Where the bytes are: a manifest ("bucket/prefix.manifest.xml") or a plain object.
    location: Mapped[str] = mapped_column(String(1024))
    source: Mapped[str] = mapped_column(String(16), default="object")  # object | bundle
    disk_format: Mapped[str] = mapped_column(String(16), default="raw")  # raw | qcow2
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    size: Mapped[int | None] = mapped_column(nullable=True)
    architecture: Mapped[str] = mapped_column(String(16), default="x86_64")
    root_device_name: Mapped[str] = mapped_column(String(32), default="/dev/vda")
    kernel_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    ramdisk_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    is_public: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LaunchPermission(Base):
    __tablename__ = "launch_permissions"

    image_id: Mapped[str] = mapped_column(
        ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    )
    account_id: Mapped[str] = mapped_column(String(12), primary_key=True)


class Instance(Base):
    """An instance as the CLC knows it; its live state comes up from the CCs."""

    __tablename__ = "instances"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # i-...
    reservation_id: Mapped[str] = mapped_column(String(32), index=True)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    requester: Mapped[str] = mapped_column(String(64), default="")
    image_id: Mapped[str] = mapped_column(String(32))
    kernel_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    ramdisk_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    instance_type: Mapped[str] = mapped_column(String(32))
    zone: Mapped[str] = mapped_column(String(64), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    state_reason: Mapped[str] = mapped_column(String(255), default="")
    key_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    public_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    user_data: Mapped[str] = mapped_column(Text, default="")  # base64, as EC2 takes it
    group_ids: Mapped[str] = mapped_column(Text, default="")  # comma separated sg- ids
    launch_index: Mapped[int] = mapped_column(default=0)
    mac: Mapped[str] = mapped_column(String(17), default="")
    private_ip: Mapped[str | None] = mapped_column(String(45), nullable=True)
    public_ip: Mapped[str | None] = mapped_column(String(45), nullable=True)
    node_url: Mapped[str] = mapped_column(String(255), default="")
    client_token: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    launch_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    terminated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Address(Base):
    """An elastic IP from the administrator's public pool."""

    __tablename__ = "addresses"

    public_ip: Mapped[str] = mapped_column(String(45), primary_key=True)
    allocation_id: Mapped[str] = mapped_column(String(32), unique=True)
    # The cluster whose public pool the address comes from.
    zone: Mapped[str] = mapped_column(String(64), default="")
    account_id: Mapped[str | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), nullable=True, index=True
    )
    instance_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    association_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # Assigned automatically at launch (released with the instance) or allocated by a user.
    auto: Mapped[bool] = mapped_column(Boolean, default=False)


class Tag(Base):
    __tablename__ = "tags"

    resource_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[str] = mapped_column(String(256), default="")
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    resource_type: Mapped[str] = mapped_column(String(32), default="")

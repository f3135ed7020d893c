"""The Cloud Controller service: HTTP wiring.

``create_app(config)`` builds the database (migrated to head), the
credential store (users from the database, components from the keys file),
one CC client per cluster, and mounts the EC2 Query endpoint at ``/`` next
to the internal protocol under ``/v1``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI

from eucalypt.auth.credentials import ChainCredentialStore, Credential
from eucalypt.cc.api import CcClient
from eucalypt.clc.api import LookupAccessKeyRequest, LookupAccessKeyResponse
from eucalypt.clc.context import Services
from eucalypt.clc.ec2.protocol import Ec2Protocol
from eucalypt.clc.edge import Ec2Endpoint
from eucalypt.clc.identity import DbCredentialStore, lookup_credential
from eucalypt.clc.instances import InstanceService
from eucalypt.clc.metadata import MetadataService
from eucalypt.clc.netsync import NetworkSync
from eucalypt.clc.srs import ResourceState
from eucalypt.clc.storage import WalrusReader
from eucalypt.config import Config
from eucalypt.db import Database, migrate
from eucalypt.rpc import ComponentKeys, RpcRouter, rpc_app

MIGRATIONS = Path(__file__).parent / "migrations"


def open_database(config: Config) -> Database:
    """The CLC database, migrated to the newest schema."""
    db = Database(config.clc.database_url)
    migrate(db.engine, MIGRATIONS, "alembic_version_clc")
    return db


def create_app(config: Config) -> FastAPI:
    keys = ComponentKeys.load(config.keys_dir)
    db = open_database(config)
    me = keys.credential("clc")
    clusters = {
        c.name: CcClient(c.url, me, region=config.region, timeout=10.0) for c in config.clusters
    }
    services = Services(
        config=config,
        db=db,
        clusters=clusters,
        netsync=NetworkSync(db, clusters),
        walrus=WalrusReader(config.walrus.url, me, config.region),
        srs=ResourceState(clusters),
    )
    instances = InstanceService(services)
    users = DbCredentialStore(db)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # State catches up from the CCs (after a restart too).
        services.background(instances.sync_forever(config.clc.sync_seconds))
        services.background(services.netsync.reconcile_forever(15.0))
        try:
            yield
        finally:
            for task in list(services.tasks):
                task.cancel()
            for client in clusters.values():
                await client.aclose()
            await services.walrus.aclose()
            db.dispose()

    # Internal operations accept the components and cloud administrators.
    app = rpc_app("clc", ChainCredentialStore(keys.store(["walrus", "cc", "nc"]), users))
    app.router.lifespan_context = lifespan
    app.state.services = services
    router = RpcRouter()

    @router.operation(
        "LookupAccessKey",
        LookupAccessKeyRequest,
        LookupAccessKeyResponse,
        allow={"walrus", "nc", "cc", "admin"},
    )
    async def lookup_access_key(
        req: LookupAccessKeyRequest, _caller: Credential
    ) -> LookupAccessKeyResponse:
        """Resolve a user's access key to its secret and principal (for Walrus)."""
        cred = await db.run(lambda s: lookup_credential(s, req.access_key))
        if cred is None:
            return LookupAccessKeyResponse(found=False)
        return LookupAccessKeyResponse(
            found=True,
            access_key=cred.access_key,
            secret_key=cred.secret_key,
            account_id=cred.account_id,
            user_name=cred.user_name,
            is_admin=cred.is_admin,
            active=cred.active,
        )

    router.mount(app)
    endpoint = Ec2Endpoint(services, users, Ec2Protocol())
    app.add_route("/", endpoint.handle, methods=["GET", "POST"], include_in_schema=False)
    # The instance metadata service, reached through the CCs' or the NCs' proxies.
    metadata = MetadataService(services, keys.store(["cc", "nc"]))
    for prefix in ("/latest", "/2009-04-04"):
        app.add_route(prefix, metadata.handle, methods=["GET", "PUT"], include_in_schema=False)
        app.add_route(
            prefix + "/{path:path}",
            metadata.handle,
            methods=["GET", "PUT"],
            include_in_schema=False,
        )
    return app

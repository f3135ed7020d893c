from eucalypt.clc.models import Base
from eucalypt.db.alembic_env import run_migrations

run_migrations(Base.metadata)

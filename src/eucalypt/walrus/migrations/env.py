from eucalypt.db.alembic_env import run_migrations
from eucalypt.walrus.models import Base

run_migrations(Base.metadata)

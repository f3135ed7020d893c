# The two commands: `make up` starts the whole cloud, `make test` runs every test.
.PHONY: up down status test deps venv lint

up: deps venv
	.venv/bin/eucalypt up

down:
	.venv/bin/eucalypt down

status:
	.venv/bin/eucalypt status

test:
	scripts/test.sh

deps:
	scripts/install-deps.sh

venv:
	scripts/venv.sh

lint: venv
	.venv/bin/ruff check src tests bench
	.venv/bin/mypy

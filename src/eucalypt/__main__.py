from eucalypt.cli.main import main

main()

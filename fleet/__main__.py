"""`python -m fleet` is the `fleet` console script."""

from fleet.cli.main import main

main()

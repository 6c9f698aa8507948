"""Allow ``python -m scp_operator``."""

from scp_operator.cli import main

main()

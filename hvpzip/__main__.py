"""`python -m hvpzip` runs the command line."""
from .cli import main

main()

"""``python -m gpuau`` runs the command line."""
from gpuau.cli import console

console()

"""CLI command groups, one module per room, each with ``register(app)``; ``cli.py`` wires them."""

"""The headless backend: a ZeroMQ ROUTER front end and a training worker per device."""

"""siren-recon backend: the reconstruction engine, its command line and (later) its server."""

__version__ = "0.1.0"

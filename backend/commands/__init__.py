"""One module per ``siren-recon`` sub-command; the CLI parser lives in :mod:`siren_recon.cli`."""

"""One module per command; each defines ``command`` (a click command). :mod:`pnprgm.cli.main` registers them all."""

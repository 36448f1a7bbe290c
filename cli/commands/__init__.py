"""One module per command; each defines ``command`` (a click command). :mod:`cli.main` registers them all."""

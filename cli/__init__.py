"""The ``pnprgm`` command line: a thin click layer, each command parses options and calls one library function."""

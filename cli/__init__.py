"""The ``pnprgm`` command line: a thin click layer, each command parses options and calls one library function."""

if __name__ == "cli":  # the pre-namespace name, found only from a checkout: warn, then alias pnprgm.cli
    from pnprgm._checkout import redirect_old_name

    redirect_old_name(__name__)


if __name__ == "pretrained":  # the pre-namespace name, found only from a checkout: warn, then alias pnprgm.pretrained
    from pnprgm._checkout import redirect_old_name

    redirect_old_name(__name__)

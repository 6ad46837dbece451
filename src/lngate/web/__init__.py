"""Server-rendered pages: the checkout page of Pay (and, on the same base, the wallet and
the console). ``pages`` is the base: a Jinja2 environment, the static assets and the
security headers; each page module mounts its routes on an app with it."""

from lngate.web.checkout import CheckoutSource, checkout_router, mount_checkout
from lngate.web.pages import Pages, install

__all__ = ["CheckoutSource", "Pages", "checkout_router", "install", "mount_checkout"]

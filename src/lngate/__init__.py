"""lngate: a Lightning gateway for custodial exchanges."""

__version__ = "0.1.0"

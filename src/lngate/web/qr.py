"""The QR code of an invoice, as inline SVG (segno: no image library, no inline style).

BOLT 11: "If a URI scheme is desired, the current recommendation is to either use
'lightning:' as a prefix before the BOLT-11 encoding". The whole URI is uppercased (URI
schemes and BOLT 11 strings are case-insensitive) so the QR uses its alphanumeric mode, about
a third smaller than byte mode: fewer, larger modules that phone cameras read more easily.
"""

from __future__ import annotations

import segno
from markupsafe import Markup


def lightning_uri(bolt11: str) -> str:
    """The link wallets open (``lightning:lnbc...``)."""
    return f"lightning:{bolt11}"


def qr_payload(bolt11: str) -> str:
    return f"LIGHTNING:{bolt11.upper()}"


def invoice_qr_svg(bolt11: str) -> Markup:
    """An ``<svg>`` scaled by CSS (a viewBox, no size), dark modules drawn as one path; the
    light background and the quiet zone come from the stylesheet and the 4-module border."""
    qr = segno.make(qr_payload(bolt11), error="m", micro=False)
    svg = qr.svg_inline(
        scale=1,
        border=4,
        omitsize=True,
        svgclass="qr-code",
        lineclass="qr-dark",
        title="QR code of the Lightning invoice",
    )
    # segno's own output from our own data: nothing in it came from a person.
    return Markup(svg)


def text_qr_svg(text: str, title: str) -> Markup:
    """Any short text (an ``otpauth://`` URI) as a QR, drawn like the invoice's."""
    qr = segno.make(text, error="m", micro=False)
    svg = qr.svg_inline(
        scale=1, border=4, omitsize=True, svgclass="qr-code", lineclass="qr-dark", title=title
    )
    return Markup(svg)

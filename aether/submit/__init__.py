"""Live submission to block builders. Imported only on the live path.

The shadow supervision tree never imports this package (a test checks
``sys.modules``), and :class:`Submitter` refuses to construct in shadow mode.
"""

from ._actor import SubmitActor
from ._flashbots import HEADER, flashbots_signature, recover_flashbots_signer
from ._submitter import MAX_RESPONSE_BYTES, OUTCOMES, Submitter, SubmitterStatistics, send_bundle_body

__all__ = [
    "HEADER",
    "MAX_RESPONSE_BYTES",
    "OUTCOMES",
    "SubmitActor",
    "Submitter",
    "SubmitterStatistics",
    "flashbots_signature",
    "recover_flashbots_signer",
    "send_bundle_body",
]

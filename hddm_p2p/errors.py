"""The project's own exception types.

Every error a user can cause is one of these; the CLI turns them into one-line messages in one
place (``hddm_p2p.cli.app``). Each message names the problem and, where it helps, what to do next.
"""


class HddmError(Exception):
    """Base class: a problem the user can understand and act on."""


class SpecError(HddmError, ValueError):
    """An invalid configuration value: unknown schedule, prediction type, preset, mode..."""


class ShapeError(HddmError, ValueError):
    """A tensor (from a router, a checkpoint, a feature file) does not have the expected shape."""


class NumericalError(HddmError, FloatingPointError):
    """NaN or Inf appeared during sampling or training."""


class DataError(HddmError):
    """A dataset path is missing, empty or unreadable."""


class CompatibilityError(HddmError):
    """Experts (or an expert and a router) cannot be combined."""


class ManifestError(HddmError):
    """A manifest or lock file is malformed, unknown, or fails validation."""


class IntegrityError(HddmError):
    """Bytes do not match the size, sha256 or CID that was declared for them."""


class SignatureError(HddmError):
    """A signature is missing, malformed, or does not verify."""


class TrustError(HddmError):
    """A manifest is from an untrusted key, expired, revoked, or a downgrade."""


class StoreError(HddmError):
    """A content store could not serve or accept a request."""


class StoreUnavailable(StoreError):
    """The store (e.g. a Kubo daemon) cannot be reached."""


class KeyStoreError(HddmError):
    """A signing key is missing, locked, or malformed."""


class CidError(HddmError, ValueError):
    """A string is not a valid CID, or names content of an unsupported kind."""


class ReplicationError(StoreError):
    """Content could not be pinned on enough peers (IPFS Cluster or a remote pinning service)."""


class DistributedError(HddmError):
    """A multi-process (torchrun) job failed: a rank died, or the ranks disagree."""

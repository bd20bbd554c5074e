"""CKKS parameters: the 128-bit security table, validation and automatic choice from circuit depth.

A CKKS modulus chain here is ``[q0, p_1 .. p_L, special]`` (bit sizes): ``q0`` is the last prime a
ciphertext keeps, the ``L`` middle primes are consumed one per multiplicative level (rescale), and the
special prime is only used for key switching.  This follows SEAL's conventions as used by TenSEAL and by
HIT's ``CKKSParams`` (first prime, ``max_ct_level`` primes of ``log_scale`` bits, special prime).

Security limits are the HomomorphicEncryption.org standard (ternary secret, sigma 3.2) as hard-coded in
SEAL ``hestdparms.h``: the *total* bit count of the chain, special prime included, for 128-bit classical
security.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

#: max total coeff-modulus bits for 128-bit classical security, by poly modulus degree N.
SECURITY_TABLE_128: dict[int, int] = {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881}

#: smallest allowed scale / middle-prime size (bits); below this the primes deviate from 2^b by
#: percents and each rescale biases every value (reference notes, TenSEAL section).
MIN_SCALE_BITS = 30
#: SEAL's per-prime limit.
MAX_PRIME_BITS = 60

#: rings tried by :func:`choose_params`, smallest first (32768 needs > 24 GB for SEAL's full Galois keys).
DEFAULT_RINGS: tuple[int, ...] = (8192, 16384, 32768)
#: automatic choice: scale bits in [AUTO_MIN_SCALE_BITS, AUTO_MAX_SCALE_BITS]; q0 = special = scale + 10 bits
#: (a last-level headroom of |x| < 2^9 = 512).
AUTO_MIN_SCALE_BITS = 35
AUTO_MAX_SCALE_BITS = 40
HEADROOM_BITS = 10


class ParamError(ValueError):
    """Insecure or inconsistent CKKS parameters.  ``field`` names the offending config key."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


@dataclass(frozen=True)
class CKKSParams:
    """A validated CKKS parameter set.

    Attributes:
        poly_modulus_degree: ring dimension N (power of two); N/2 complex slots per ciphertext.
        coeff_mod_bit_sizes: bit sizes ``[q0, p_1..p_L, special]``.
        scale_bits: log2 of the encoding scale; must equal the middle primes' bit size.
        test_only: True for parameters below 128-bit security, allowed only when explicitly requested
            for fast tests; never produced by :func:`choose_params`.
    """

    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...]
    scale_bits: int
    test_only: bool = False

    @property
    def slots(self) -> int:
        """Values per ciphertext (N/2)."""
        return self.poly_modulus_degree // 2

    @property
    def levels(self) -> int:
        """Number of multiplicative levels (middle primes) in the chain."""
        return len(self.coeff_mod_bit_sizes) - 2

    @property
    def total_bits(self) -> int:
        """Total coeff-modulus bits, special prime included (what the security table bounds)."""
        return int(sum(self.coeff_mod_bit_sizes))

    @property
    def scale(self) -> float:
        """The encoding scale 2^scale_bits."""
        return float(2 ** self.scale_bits)

    def remaining_bits(self, level: int) -> int:
        """Bits of the ciphertext modulus after ``level`` rescales (special prime excluded)."""
        data = self.coeff_mod_bit_sizes[:-1]
        return int(sum(data[: len(data) - level]))

    def headroom(self, level: int) -> float:
        """Largest |value| a ciphertext at ``level`` (scale 2^s) can hold without wrapping.

        A plaintext value x is stored as round(x * scale) modulo the remaining modulus Q_l, so
        |x| < Q_l / (2 * scale) = 2^(log Q_l - s - 1).  At the last level Q_l = q0.
        """
        return 2.0 ** (self.remaining_bits(level) - self.scale_bits - 1)

    def product_headroom(self, level: int) -> float:
        """Largest |x * y| for a ct-ct product formed at ``level`` before its rescale (scale s^2)."""
        return 2.0 ** (self.remaining_bits(level) - 2 * self.scale_bits - 1)

    def ciphertext_bytes(self, level: int, size: int = 2) -> int:
        """Uncompressed in-memory size of a ciphertext at ``level`` (``size`` polynomials of N words)."""
        primes = len(self.coeff_mod_bit_sizes) - 1 - level
        return int(size * self.poly_modulus_degree * primes * 8)

    def to_dict(self) -> dict:
        """Plain dict for JSON (config echo, manifests)."""
        d = asdict(self)
        d["coeff_mod_bit_sizes"] = list(self.coeff_mod_bit_sizes)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CKKSParams:
        """Inverse of :meth:`to_dict` (validated)."""
        return validate_params(int(d["poly_modulus_degree"]), list(d["coeff_mod_bit_sizes"]),
                               int(d["scale_bits"]), allow_insecure=bool(d.get("test_only", False)))


def validate_params(poly_modulus_degree: int, coeff_mod_bit_sizes: list[int], scale_bits: int,
                    allow_insecure: bool = False) -> CKKSParams:
    """Check a parameter set against the 128-bit table and TenSEAL/SEAL consistency rules.

    Args:
        poly_modulus_degree: N, a power of two in :data:`SECURITY_TABLE_128`.
        coeff_mod_bit_sizes: ``[q0, p_1..p_L, special]`` with L >= 1.
        scale_bits: log2 scale; must equal every middle prime's size (otherwise TenSEAL-style scale
            handling silently produces wrong values).
        allow_insecure: accept a total above the 128-bit table (test-only; marked ``test_only``).

    Returns:
        The validated :class:`CKKSParams`.

    Raises:
        ParamError: unknown N; fewer than 3 primes; a prime above 60 bits; middle primes of different
            sizes or under 30 bits; scale different from the middle primes; q0 not larger than the
            scale; total bits above the 128-bit security table (unless ``allow_insecure``).
    """
    n = int(poly_modulus_degree)
    if n not in SECURITY_TABLE_128:
        raise ParamError("ckks.poly_modulus_degree",
                         f"{n} is not supported; expected one of {sorted(SECURITY_TABLE_128)}")
    bits = [int(b) for b in coeff_mod_bit_sizes]
    if len(bits) < 3:
        raise ParamError("ckks.coeff_mod_bit_sizes",
                         f"expected [q0, middle primes..., special] with at least one middle prime, got {bits}")
    if any(b > MAX_PRIME_BITS or b < 2 for b in bits):
        raise ParamError("ckks.coeff_mod_bit_sizes", f"every prime must have 2..{MAX_PRIME_BITS} bits, got {bits}")
    middle = bits[1:-1]
    if len(set(middle)) != 1:
        raise ParamError("ckks.coeff_mod_bit_sizes", f"middle primes must all have the same size, got {middle}")
    if middle[0] < MIN_SCALE_BITS:
        raise ParamError("ckks.coeff_mod_bit_sizes",
                         f"middle primes of {middle[0]} bits are under {MIN_SCALE_BITS} bits (rescaling would "
                         "bias every value); use >= 30-bit primes")
    if int(scale_bits) != middle[0]:
        raise ParamError("ckks.scale_bits", f"scale 2^{scale_bits} does not match the {middle[0]}-bit middle "
                         "primes (results would be silently wrong); set it equal to the middle prime size")
    if bits[0] <= middle[0]:
        raise ParamError("ckks.coeff_mod_bit_sizes",
                         f"first prime q0 ({bits[0]} bits) must exceed the scale ({middle[0]} bits) to hold "
                         "decrypted values")
    limit = SECURITY_TABLE_128[n]
    total = sum(bits)
    if total > limit and not allow_insecure:
        raise ParamError("ckks.coeff_mod_bit_sizes",
                         f"{total} bits exceed the 128-bit security limit of {limit} bits for N={n} "
                         "(HomomorphicEncryption.org table)")
    return CKKSParams(n, tuple(bits), int(scale_bits), test_only=total > limit)


def choose_params(depth_per_iteration: int, max_poly_modulus_degree: int = 16384) -> CKKSParams:
    """Secure default parameters for a circuit, chosen from its depth per iteration.

    The smallest ring N whose 128-bit budget holds one iteration (``depth`` levels) with a scale of at
    least 2^35; within that ring, as many iterations per refresh ``k`` as keep the scale >= 2^35.  The
    chain is ``[s+10, s x (k*depth), s+10]`` with ``s = min(40, floor((limit - 20) / (k*depth + 2)))``:
    exactly ``k*depth`` levels (extra primes would only slow every operation down).

    Args:
        depth_per_iteration: levels one training iteration consumes.
        max_poly_modulus_degree: largest N considered (default 16384).

    Returns:
        Validated 128-bit-secure :class:`CKKSParams`.

    Raises:
        ParamError: no ring up to ``max_poly_modulus_degree`` fits the depth.
    """
    d = int(depth_per_iteration)
    for n in DEFAULT_RINGS:
        if n > max_poly_modulus_degree:
            break
        limit = SECURITY_TABLE_128[n]
        best = None
        k = 1
        while True:
            s = min(AUTO_MAX_SCALE_BITS, (limit - 2 * HEADROOM_BITS) // (k * d + 2))
            if s < AUTO_MIN_SCALE_BITS:
                break
            best = [s + HEADROOM_BITS] + [s] * (k * d) + [s + HEADROOM_BITS]
            k += 1
        if best is not None:
            return validate_params(n, best, best[1])
    raise ParamError("ckks.poly_modulus_degree",
                     f"no 128-bit secure chain with N <= {max_poly_modulus_degree} has {d} levels at a "
                     f"scale of at least 2^{AUTO_MIN_SCALE_BITS}")


def log2_ceil(x: int) -> int:
    """ceil(log2(x)) for x >= 1."""
    return int(math.ceil(math.log2(max(int(x), 1))))

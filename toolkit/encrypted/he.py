"""CKKS on Microsoft SEAL through TenSEAL's ``tenseal.sealapi``: keys, contexts, ciphertext files, backend.

TenSEAL's high-level ``CKKSVector``/``CKKSTensor`` cannot rotate, relinearise lazily or generate only the
Galois keys a circuit needs, so the toolkit drives SEAL directly through ``tenseal.sealapi`` (the full
SEAL API TenSEAL ships).  Scale handling follows TenSEAL's convention (after a ct-ct rescale the scale is
set back to 2^s; :func:`toolkit.encrypted.params.validate_params` ensures the primes make that exact to
within ~3e-4), while plaintext-scalar multiplications encode the constant at the scale of the prime being
dropped so they are exact.

Files (zip archives, members stored uncompressed; SEAL compresses its own serialisations):

* owner's secret context: ``params.json``, ``secret_key``, ``public_key`` (never sent to the server);
* server's public context: ``params.json``, ``public_key``, ``relin_keys``, ``galois_keys``, ``key_id``
  -- no secret key;
* ciphertext files: ``manifest.json`` (kind, key_id, params, shape) + one member per ciphertext.

``key_id`` (a SHA-256 prefix of the public key) ties every ciphertext file to its key pair so a
ciphertext file from another context is refused on load instead of decrypting to garbage.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tenseal.sealapi as sealapi

from toolkit.encrypted.params import CKKSParams, ParamError
from toolkit.errors import InputError

FORMAT = "toolkit-ckks-v1"

# ``tenseal.sealapi`` serialises only through file paths.  Ciphertexts (a few hundred KiB each, hundreds per
# refresh) go through RAM-backed /dev/shm where it exists: a temporary file on a disk file system costs
# ~4 ms per ciphertext, on tmpfs ~0.5 ms.  Keys (tens of MiB for the Galois keys) use the default
# temporary directory so a small /dev/shm cannot make key files fail.
_CT_TMP = "/dev/shm" if os.path.isdir("/dev/shm") else None


def _seal_bytes(obj: Any, tmp_dir: str | None = None) -> bytes:
    """Serialise a SEAL object (Ciphertext, keys) to bytes via a temporary file in ``tmp_dir``."""
    with tempfile.NamedTemporaryFile(suffix=".seal", dir=tmp_dir) as fh:
        obj.save(fh.name)
        return Path(fh.name).read_bytes()


def _seal_load(obj: Any, context: Any, data: bytes, source: object, field: str, tmp_dir: str | None = None) -> Any:
    """Load SEAL bytes into ``obj`` (validated against ``context`` by SEAL)."""
    with tempfile.NamedTemporaryFile(suffix=".seal", dir=tmp_dir) as fh:
        Path(fh.name).write_bytes(data)
        try:
            obj.load(context, fh.name)
        except (ValueError, RuntimeError) as exc:
            raise InputError(source, field, f"not valid for this CKKS context ({str(exc).splitlines()[0]})") \
                from None
    return obj


def ciphertext_to_bytes(ct: Any) -> bytes:
    """SEAL ``Ciphertext`` -> its SEAL serialisation (bytes; the format of a ``ct/<name>`` file member)."""
    return _seal_bytes(ct, _CT_TMP)


def ciphertext_from_bytes(context: Any, data: bytes, source: object = "ciphertext",
                          field: str = "ciphertext", size: int | None = 2) -> Any:
    """SEAL serialisation -> ``Ciphertext``, with the checks :func:`load_ciphertexts` applies to a member.

    Args:
        context: the SEAL context the ciphertext must belong to (parameters, ``parms_id``).
        data: bytes from :func:`ciphertext_to_bytes`, :meth:`SealBackend.encrypt_bytes` or a file member.
        source, field: named in the error (file path and member).
        size: polynomials required (2: relinearised, as every stored ciphertext); ``None`` accepts any
            (unrelinearised intermediates between the server's own processes).

    Raises:
        InputError: SEAL finds the data invalid for ``context`` (corrupt, truncated, other parameters)
            or the ciphertext does not have ``size`` polynomials.
    """
    ct = _seal_load(sealapi.Ciphertext(), context, data, source, field, _CT_TMP)
    if size is not None and ct.size() != size:
        raise InputError(source, field, f"has {ct.size()} polynomials, expected {size}")
    return ct


def build_seal_context(params: CKKSParams) -> Any:
    """SEAL context for ``params`` (128-bit enforced unless the parameters are marked test-only).

    Raises:
        ParamError: SEAL rejects the parameters.
    """
    parms = sealapi.EncryptionParameters(sealapi.SCHEME_TYPE.CKKS)
    parms.set_poly_modulus_degree(params.poly_modulus_degree)
    parms.set_coeff_modulus(sealapi.CoeffModulus.Create(params.poly_modulus_degree,
                                                        list(params.coeff_mod_bit_sizes)))
    level = sealapi.SEC_LEVEL_TYPE.NONE if params.test_only else sealapi.SEC_LEVEL_TYPE.TC128
    ctx = sealapi.SEALContext(parms, True, level)
    if not ctx.parameters_set():
        raise ParamError("ckks", f"SEAL rejected the parameters: {ctx.parameters_error_message()}")
    return ctx


def rotation_galois_elements(poly_modulus_degree: int) -> list[int]:
    """Galois elements for left rotations by 1, 2, 4, ..., N/4 (3^step mod 2N, SEAL's convention)."""
    m = 2 * poly_modulus_degree
    return [pow(3, 1 << k, m) for k in range(int(math.log2(poly_modulus_degree // 2)))]


def _key_id(public_key_bytes: bytes) -> str:
    return hashlib.sha256(public_key_bytes).hexdigest()[:32]


@dataclass
class Keys:
    """Key material of one context.  ``secret_key`` is None on the server side."""

    params: CKKSParams
    context: Any
    public_key: Any
    key_id: str
    secret_key: Any = None
    relin_keys: Any = None
    galois_keys: Any = None


def keygen(params: CKKSParams, galois_elements: list[int] | None = None, key_id: str | None = None) -> Keys:
    """Generate a key pair, relinearisation keys and rotation (Galois) keys.

    Args:
        params: the CKKS parameters.
        galois_elements: the Galois elements to make keys for; ``None``: only the power-of-two rotations the
            circuits use (:func:`rotation_galois_elements`).
        key_id: the id recorded in ``Keys.key_id``; ``None``: derived from the public key (what the context
            files carry, so a ciphertext file can be matched to its keys).

    Returns:
        :class:`Keys` with the secret key (owner side).

    Raises:
        ValueError: from SEAL, a Galois element that is not valid for the ring (even, or not below 2N).

    Follows SEAL's ``KeyGenerator`` (relinearisation keys for ``s^2`` only; Galois elements ``3^k mod 2N`` for
    rotations by ``k`` slots).
    """
    ctx = build_seal_context(params)
    kg = sealapi.KeyGenerator(ctx)
    pk = sealapi.PublicKey()
    kg.create_public_key(pk)
    rk = sealapi.RelinKeys()
    kg.create_relin_keys(rk)
    gk = sealapi.GaloisKeys()
    elements = rotation_galois_elements(params.poly_modulus_degree) if galois_elements is None else galois_elements
    kg.create_galois_keys(list(elements), gk)
    return Keys(params, ctx, pk, _key_id(_seal_bytes(pk)) if key_id is None else key_id, kg.secret_key(), rk, gk)


def save_secret_context(keys: Keys, path: Path) -> None:
    """Owner's file: parameters, secret and public key."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("params.json", json.dumps({"format": FORMAT, "role": "owner", "key_id": keys.key_id,
                                               "params": keys.params.to_dict()}))
        zf.writestr("secret_key", _seal_bytes(keys.secret_key))
        zf.writestr("public_key", _seal_bytes(keys.public_key))


def save_public_context(keys: Keys, path: Path) -> None:
    """Server's file: parameters, public key, relinearisation and Galois keys; never the secret key."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("params.json", json.dumps({"format": FORMAT, "role": "server", "key_id": keys.key_id,
                                               "params": keys.params.to_dict()}))
        zf.writestr("public_key", _seal_bytes(keys.public_key))
        zf.writestr("relin_keys", _seal_bytes(keys.relin_keys))
        zf.writestr("galois_keys", _seal_bytes(keys.galois_keys))


def _open_zip(path: Path, field: str) -> zipfile.ZipFile:
    p = Path(path)
    if not p.is_file():
        raise InputError(p, field, "file not found (run the earlier steps first)")
    try:
        return zipfile.ZipFile(p)
    except zipfile.BadZipFile:
        raise InputError(p, field, "not a toolkit CKKS file (expected a zip archive)") from None


def _read_header(zf: zipfile.ZipFile, name: str, path: Path, field: str) -> dict:
    try:
        meta = json.loads(zf.read(name))
    except (KeyError, ValueError):
        raise InputError(path, field, f"missing or unreadable {name}") from None
    if meta.get("format") != FORMAT:
        raise InputError(path, field, f"unknown format {meta.get('format')!r}; expected {FORMAT}")
    return meta


def load_context(path: Path, role: str) -> Keys:
    """Load the owner's (``role='owner'``) or server's (``role='server'``) context, validating it.

    Raises:
        InputError: missing/corrupt file, wrong role, insecure parameters, keys not valid for the
            parameters, a public context that contains a secret key, or a key_id that does not match.
    """
    field = "secret_context" if role == "owner" else "public_context"
    path = Path(path)
    with _open_zip(path, field) as zf:
        meta = _read_header(zf, "params.json", path, field)
        if meta.get("role") != role:
            raise InputError(path, field, f"is a {meta.get('role')} context, expected the {role} context")
        try:
            params = CKKSParams.from_dict(meta["params"])
        except (ParamError, KeyError, TypeError, ValueError) as exc:
            raise InputError(path, field, f"invalid parameters ({exc})") from None
        names = set(zf.namelist())
        if role == "server" and "secret_key" in names:
            raise InputError(path, field, "a public context must not contain a secret key")
        ctx = build_seal_context(params)
        pk_bytes = zf.read("public_key")
        if _key_id(pk_bytes) != meta.get("key_id"):
            raise InputError(path, field, "key_id does not match the public key (file altered?)")
        keys = Keys(params, ctx, _seal_load(sealapi.PublicKey(), ctx, pk_bytes, path, "public_key"),
                    meta["key_id"])
        if role == "owner":
            keys.secret_key = _seal_load(sealapi.SecretKey(), ctx, zf.read("secret_key"), path, "secret_key")
        else:
            for member in ("relin_keys", "galois_keys"):
                if member not in names:
                    raise InputError(path, field, f"missing {member}")
            keys.relin_keys = _seal_load(sealapi.RelinKeys(), ctx, zf.read("relin_keys"), path, "relin_keys")
            keys.galois_keys = _seal_load(sealapi.GaloisKeys(), ctx, zf.read("galois_keys"), path,
                                          "galois_keys")
    return keys


def save_ciphertexts(path: Path, keys: Keys, kind: str, cts: dict[str, Any], meta: dict | None = None) -> None:
    """Write named ciphertexts and a manifest (kind, key_id, params, extra ``meta``) to one zip file.

    Values may be SEAL ``Ciphertext`` objects or their serialisations as ``bytes`` (e.g. seeded symmetric
    encryptions from :meth:`SealBackend.encrypt_bytes`, or ciphertexts a server worker process serialised:
    :func:`ciphertext_to_bytes`); bytes are written as they are, so a member is serialised once.  The
    manifest is the same either way, so :func:`load_ciphertexts` validates both alike.
    """
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("manifest.json", json.dumps({"format": FORMAT, "kind": kind, "key_id": keys.key_id,
                                                 "params": keys.params.to_dict(), "names": list(cts),
                                                 "meta": meta or {}}))
        for name, ct in cts.items():
            zf.writestr(f"ct/{name}", ct if isinstance(ct, bytes) else ciphertext_to_bytes(ct))


def load_ciphertexts(path: Path, keys: Keys, kind: str, field: str,
                     raw: bool = False) -> tuple[dict[str, Any], dict]:
    """Load a ciphertext file written by :func:`save_ciphertexts`, validated against ``keys``.

    Args:
        path, keys, kind: the file, the context it must belong to and the expected manifest kind.
        field: named in errors.
        raw: return each member's bytes instead of a ``Ciphertext``.  The file-level checks are the same
            (format, kind, key_id, parameters, every listed member present); the per-ciphertext SEAL checks
            are left to whoever deserialises the bytes, which must be :func:`ciphertext_from_bytes` (the
            server's worker processes do, and report its errors).  Saves a deserialise/serialise round
            trip when the bytes only travel on (to worker processes).

    Returns:
        ``(name -> Ciphertext, meta)``, or ``(name -> bytes, meta)`` with ``raw``; names in manifest order.

    Raises:
        InputError: missing/corrupt file, wrong kind, encrypted under another key pair or other
            parameters, a missing member, or (not ``raw``) a ciphertext SEAL finds invalid for the context
            or with other than 2 polynomials.
    """
    path = Path(path)
    with _open_zip(path, field) as zf:
        manifest = _read_header(zf, "manifest.json", path, field)
        if manifest.get("kind") != kind:
            raise InputError(path, field, f"holds {manifest.get('kind')!r} ciphertexts, expected {kind!r}")
        if manifest.get("params") != keys.params.to_dict() or manifest.get("key_id") != keys.key_id:
            raise InputError(path, field, "was encrypted under another context (key_id/parameters differ); "
                             "re-run encrypt with this context")
        cts = {}
        for name in manifest["names"]:
            try:
                data = zf.read(f"ct/{name}")
            except KeyError:
                raise InputError(path, field, f"missing ciphertext {name}") from None
            cts[name] = data if raw else ciphertext_from_bytes(keys.context, data, path, f"ciphertext {name}")
    return cts, manifest.get("meta", {})


class SealBackend:
    """CKKS operations with the interface of :class:`toolkit.encrypted.circuit.PlainBackend`.

    Owner operations (encrypt/decrypt) need the public/secret key; server operations need relin and
    Galois keys.  Levels are counted as rescales consumed (0 = fresh).
    """

    def __init__(self, keys: Keys) -> None:
        self.keys = keys
        self.params = keys.params
        self.ctx = keys.context
        self.encoder = sealapi.CKKSEncoder(self.ctx)
        self.evaluator = sealapi.Evaluator(self.ctx)
        self.encryptor = sealapi.Encryptor(self.ctx, keys.public_key)
        self.decryptor = sealapi.Decryptor(self.ctx, keys.secret_key) if keys.secret_key is not None else None
        self.scale = keys.params.scale
        # parms_id and the prime dropped by the next rescale, per level
        self._parms: list[Any] = []
        self._next_prime: list[float] = []
        data = self.ctx.first_context_data()
        while data is not None:
            self._parms.append(data.parms_id())
            moduli = data.parms().coeff_modulus()
            self._next_prime.append(float(moduli[-1].value()))
            data = data.next_context_data()
        self._top = len(self._parms) - 1

    # --- helpers ----------------------------------------------------------------------------------
    def level(self, a: Any) -> int:
        """Levels consumed by ciphertext ``a``."""
        return self._top - self.ctx.get_context_data(a.parms_id()).chain_index()

    def _at(self, a: Any, level: int) -> Any:
        """A copy of ``a`` mod-switched down to ``level``."""
        out = sealapi.Ciphertext()
        self.evaluator.mod_switch_to(a, self._parms[level], out)
        return out

    def _align(self, a: Any, b: Any) -> tuple[Any, Any]:
        la, lb = self.level(a), self.level(b)
        if la < lb:
            a = self._at(a, lb)
        elif lb < la:
            b = self._at(b, la)
        return a, b

    # --- owner ------------------------------------------------------------------------------------
    def encrypt(self, values: np.ndarray) -> Any:
        """Encrypt a float vector (``<= slots`` values, zero-padded) at the top level."""
        v = np.zeros(self.params.slots)
        v[: len(values)] = values
        pt = sealapi.Plaintext()
        self.encoder.encode(v.tolist(), self.scale, pt)
        ct = sealapi.Ciphertext()
        self.encryptor.encrypt(pt, ct)
        return ct

    def encrypt_bytes(self, values: np.ndarray | float) -> bytes:
        """Owner-side encryption straight to bytes: symmetric (secret key) when available.

        SEAL serialises a symmetric encryption with its second polynomial replaced by a PRNG seed, so the
        file is half the size and encryption ~2-3x faster than public-key encryption; the result loads as
        an ordinary ciphertext.  Falls back to public-key encryption without a secret key.

        Args:
            values: float vector (``<= slots``, zero-padded) or a scalar replicated in every slot.
        """
        pt = sealapi.Plaintext()
        if np.isscalar(values):
            self.encoder.encode(float(values), self.scale, pt)
        else:
            v = np.zeros(self.params.slots)
            v[: len(values)] = values
            self.encoder.encode(v.tolist(), self.scale, pt)
        if self.keys.secret_key is None:
            ct = sealapi.Ciphertext()
            self.encryptor.encrypt(pt, ct)
            return ciphertext_to_bytes(ct)
        if not hasattr(self, "_sym"):
            self._sym = sealapi.Encryptor(self.ctx, self.keys.secret_key)
        with tempfile.NamedTemporaryFile(suffix=".seal", dir=_CT_TMP) as fh:
            self._sym.encrypt_symmetric(pt).save(fh.name)
            return Path(fh.name).read_bytes()

    def encrypt_replicated(self, value: float) -> Any:
        """Encrypt a scalar replicated in every slot."""
        pt = sealapi.Plaintext()
        self.encoder.encode(float(value), self.scale, pt)
        ct = sealapi.Ciphertext()
        self.encryptor.encrypt(pt, ct)
        return ct

    def decrypt(self, a: Any) -> np.ndarray:
        """Slot values, float64 ``[slots]`` (owner only)."""
        if self.decryptor is None:
            raise PermissionError("this context has no secret key (server side)")
        pt = sealapi.Plaintext()
        self.decryptor.decrypt(a, pt)
        return np.asarray(self.encoder.decode_double(pt), dtype=np.float64)

    # --- server -----------------------------------------------------------------------------------
    def mul_lazy(self, a: Any, b: Any) -> Any:
        """ct-ct product, not relinearised or rescaled (3 polynomials)."""
        a, b = self._align(a, b)
        out = sealapi.Ciphertext()
        self.evaluator.multiply(a, b, out)
        return out

    def finish(self, a: Any) -> Any:
        """Relinearise and rescale (one level); the scale is reset to 2^s (TenSEAL's convention)."""
        if a.size() > 2:
            self.evaluator.relinearize_inplace(a, self.keys.relin_keys)
        self.evaluator.rescale_to_next_inplace(a)
        a.scale = self.scale
        return a

    def mul(self, a: Any, b: Any) -> Any:
        """ct-ct product, relinearised and rescaled."""
        return self.finish(self.mul_lazy(a, b))

    def square(self, a: Any) -> Any:
        """a^2, relinearised and rescaled."""
        out = sealapi.Ciphertext()
        self.evaluator.square(a, out)
        return self.finish(out)

    def mul_const(self, a: Any, c: float) -> Any:
        """Multiply by a scalar encoded at the dropped prime's scale, so the rescale is exact."""
        lv = self.level(a)
        pt = sealapi.Plaintext()
        self.encoder.encode(float(c), self._parms[lv], self._next_prime[lv], pt)
        out = sealapi.Ciphertext()
        self.evaluator.multiply_plain(a, pt, out)
        self.evaluator.rescale_to_next_inplace(out)
        out.scale = a.scale
        return out

    def add(self, a: Any, b: Any) -> Any:
        """a + b at the deeper level."""
        a, b = self._align(a, b)
        b.scale = a.scale
        out = sealapi.Ciphertext()
        self.evaluator.add(a, b, out)
        return out

    def add_const(self, a: Any, c: float) -> Any:
        """a + c in every slot."""
        pt = sealapi.Plaintext()
        self.encoder.encode(float(c), a.parms_id(), a.scale, pt)
        out = sealapi.Ciphertext()
        self.evaluator.add_plain(a, pt, out)
        return out

    def neg(self, a: Any) -> Any:
        """-a."""
        out = sealapi.Ciphertext()
        self.evaluator.negate(a, out)
        return out

    def sum_slots(self, a: Any) -> Any:
        """Rotate-and-add by 1, 2, ..., slots/2: the total in every slot (log2(slots) rotations)."""
        acc = self._at(a, self.level(a))
        tmp = sealapi.Ciphertext()
        step = 1
        while step < self.params.slots:
            self.evaluator.rotate_vector(acc, step, self.keys.galois_keys, tmp)
            self.evaluator.add_inplace(acc, tmp)
            step <<= 1
        return acc

"""Encrypted training (SEAL via tenseal.sealapi) against the plaintext reference; key separation; file checks."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from toolkit.encrypted import circuit as C
from toolkit.encrypted import he, protocol
from toolkit.encrypted.data import minibatch_indices, signed_features
from toolkit.encrypted.params import choose_params, validate_params
from toolkit.errors import InputError

COEFFS = C.SIGMOID_COEFFS["han16"]


def _toy(n=200, d=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, d))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    return signed_features(x, y)


@pytest.fixture(scope="module")
def low_depth_keys():
    return he.keygen(choose_params(3))


def _reference(z, batches, iterations, lr):
    w = np.zeros(z.shape[1])
    for k in range(iterations):
        w = C.poly_sigmoid_step(w, z[batches[k % len(batches)]], COEFFS, lr)
    return w


def _owner_files(tmp_path, keys, circuit, z, batches, iterations, lr, momentum=C.NO_MOMENTUM):
    """Owner side of a run: key files, encrypted data, initial weights and job; returns
    ``(owner context, public path, data path, weights path, job path, job)``."""
    sec, pub = tmp_path / "secret.zip", tmp_path / "public.zip"
    he.save_secret_context(keys, sec)
    he.save_public_context(keys, pub)
    owner = he.load_context(sec, "owner")
    job = {"circuit": circuit, "coeffs": list(COEFFS), "learning_rate": lr, "iterations": iterations,
           "momentum": momentum.to_dict()}
    data, w0, jobp = tmp_path / "data.zip", tmp_path / "w0.zip", tmp_path / "job.json"
    protocol.owner_encrypt(owner, z, batches, job, data, w0, jobp)
    return owner, pub, data, w0, jobp, job


def _run_files(tmp_path, keys, circuit, z, batches, iterations, lr, workers=1, momentum=C.NO_MOMENTUM):
    owner, pub, data, w0, jobp, job = _owner_files(tmp_path, keys, circuit, z, batches, iterations, lr, momentum)
    out = tmp_path / "w.zip"
    log: list = []
    state = protocol.server_train(pub, data, w0, protocol.read_job(jobp), out,
                                  protocol.local_refresher(owner, he.load_context(pub, "server"), log,
                                                           momentum.enabled),
                                  workers=workers)
    w, reached = protocol.owner_decrypt(owner, out, job)
    return w, reached, state


def test_low_depth_encrypted_matches_plaintext(tmp_path, low_depth_keys):
    z = _toy()
    batches = minibatch_indices(len(z), 100, 0)
    w, reached, state = _run_files(tmp_path, low_depth_keys, "low-depth", z, batches, 3, 2.0)
    assert reached == 3
    assert state["refreshes"] == 2  # 3 levels per refresh at N=8192 -> one iteration each
    assert [b - a for a, b in state["levels"]] == [3, 3, 3]
    ref = _reference(z, batches, 3, 2.0)
    assert np.abs(ref).max() > 0.05
    np.testing.assert_allclose(w, ref, atol=2e-3)


def _replaying_owner(monkeypatch, tmp_path):
    """Make the owner's refresh deterministic across runs: the first response per iteration is kept and
    handed out again later, so two server runs on the same files can be compared bit for bit (a fresh
    encryption draws new noise).  The owner still decrypts every request, so the log is the real one."""
    real, responses = protocol.owner_refresh, {}

    def refresh(owner, req, resp):
        scratch = tmp_path / f"scratch_{len(responses)}.zip"
        out = real(owner, req, scratch)
        responses.setdefault(out["iteration"], scratch.read_bytes())
        resp.write_bytes(responses[out["iteration"]])
        return out

    monkeypatch.setattr(protocol, "owner_refresh", refresh)


@pytest.mark.parametrize("momentum", [C.NO_MOMENTUM, C.Momentum(0.8, "nesterov")], ids=["plain", "nesterov"])
def test_two_worker_processes_give_the_same_result(tmp_path, low_depth_keys, monkeypatch, momentum):
    """1 and 2 workers on the same encrypted files, refreshes in between: identical requests to the owner
    (decrypted values equal bit for bit) and identical final weights."""
    _replaying_owner(monkeypatch, tmp_path)
    z = _toy(n=300, d=5)
    batches = minibatch_indices(len(z), 150, 0)
    owner, pub, data, w0, jobp, job = _owner_files(tmp_path, low_depth_keys, "low-depth", z, batches, 3, 2.0,
                                                   momentum)
    results = {}
    for workers in (1, 2):
        log: list = []
        out = tmp_path / f"w{workers}.zip"
        refresher = protocol.local_refresher(owner, he.load_context(pub, "server"), log, momentum.enabled)
        state = protocol.server_train(pub, data, w0, protocol.read_job(jobp), out, refresher, workers=workers)
        assert state["iteration"] == 3 and state["refreshes"] == 2 and state["refresh_iterations"] == [1, 2]
        assert [b - a for a, b in state["levels"]] == [3, 3, 3]
        w, reached = protocol.owner_decrypt(owner, out, job)
        assert reached == 3
        results[workers] = (log, w)
    (log1, w1), (log2, w2) = results[1], results[2]
    assert [k for k, _ in log1] == [k for k, _ in log2] == [1, 2]
    assert len(log2[0][1]) == z.shape[1] * (2 if momentum.enabled else 1)  # v' travels with w
    for (_, a), (_, b) in zip(log1, log2, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(w1, w2)
    ref = (_nesterov_reference(z, batches, 3, 2.0, momentum) if momentum.enabled
           else _reference(z, batches, 3, 2.0))
    np.testing.assert_allclose(w2, ref, atol=2e-3)


def test_baseline_encrypted_matches_plaintext(tmp_path):
    # TEST ONLY: 230 bits at N=8192 exceed the 128-bit table; flagged test_only (SEAL security check off)
    params = validate_params(8192, [40, 30, 30, 30, 30, 30, 40], 30, allow_insecure=True)
    assert params.test_only
    keys = he.keygen(params)
    z = _toy(n=120, d=3)
    batches = minibatch_indices(len(z), None, 0)
    w, reached, state = _run_files(tmp_path, keys, "baseline", z, batches, 1, 2.0)
    assert [b - a for a, b in state["levels"]] == [5]
    np.testing.assert_allclose(w, _reference(z, batches, 1, 2.0), atol=2e-3)


def test_keygen_makes_the_circuits_rotation_keys_or_only_those_asked_for(low_depth_keys):
    params = low_depth_keys.params
    expected = he.rotation_galois_elements(params.poly_modulus_degree)
    assert low_depth_keys.galois_keys.size() == len(expected)
    assert all(low_depth_keys.galois_keys.has_key(e) for e in expected)
    assert len(low_depth_keys.key_id) == 32  # derived from the public key
    one = he.keygen(params, galois_elements=[expected[0]], key_id="bench")
    assert one.galois_keys.size() == 1 and one.galois_keys.has_key(expected[0])
    assert not one.galois_keys.has_key(expected[1])
    assert one.key_id == "bench"


def test_public_context_has_no_secret_key(tmp_path, low_depth_keys):
    pub, sec = tmp_path / "public.zip", tmp_path / "secret.zip"
    he.save_public_context(low_depth_keys, pub)
    he.save_secret_context(low_depth_keys, sec)
    with zipfile.ZipFile(pub) as zf:
        assert "secret_key" not in zf.namelist()
    server = he.load_context(pub, "server")
    assert server.secret_key is None
    with pytest.raises(PermissionError):
        he.SealBackend(server).decrypt(he.SealBackend(server).encrypt_replicated(1.0))
    with zipfile.ZipFile(sec) as zf:
        sk = zf.read("secret_key")
    blob = pub.read_bytes()
    for start in range(0, len(sk) - 64, max(1, len(sk) // 16)):
        assert sk[start:start + 64] not in blob


def test_public_context_with_secret_key_refused(tmp_path, low_depth_keys):
    pub, sec = tmp_path / "public.zip", tmp_path / "secret.zip"
    he.save_public_context(low_depth_keys, pub)
    he.save_secret_context(low_depth_keys, sec)
    with zipfile.ZipFile(pub, "a") as zf, zipfile.ZipFile(sec) as s:
        zf.writestr("secret_key", s.read("secret_key"))
    with pytest.raises(InputError, match="must not contain a secret key"):
        he.load_context(pub, "server")


def test_ciphertexts_from_another_context_refused(tmp_path, low_depth_keys):
    other = he.keygen(choose_params(3))  # same parameters, other keys
    path = tmp_path / "w.zip"
    he.save_ciphertexts(path, other, protocol.WEIGHTS_KIND, {"w0": he.SealBackend(other).encrypt_replicated(1.0)})
    with pytest.raises(InputError, match="another context"):
        he.load_ciphertexts(path, low_depth_keys, protocol.WEIGHTS_KIND, "encrypted_weights")


def test_corrupt_ciphertext_refused(tmp_path, low_depth_keys):
    good = tmp_path / "w.zip"
    be = he.SealBackend(low_depth_keys)
    he.save_ciphertexts(good, low_depth_keys, protocol.WEIGHTS_KIND, {"w0": be.encrypt_replicated(1.0)})
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        dst.writestr("manifest.json", src.read("manifest.json"))
        blob = bytearray(src.read("ct/w0"))
        dst.writestr("ct/w0", bytes(blob[: len(blob) // 2]))  # truncated ciphertext
    with pytest.raises(InputError, match="not valid for this CKKS context"):
        he.load_ciphertexts(bad, low_depth_keys, protocol.WEIGHTS_KIND, "encrypted_weights")
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="zip"):
        he.load_ciphertexts(tmp_path / "junk.zip", low_depth_keys, protocol.WEIGHTS_KIND, "encrypted_weights")


def test_serialized_save_load_round_trip_validates_like_objects(tmp_path, low_depth_keys):
    """Bytes members are written as they are and read back unchanged (raw=True) after the same file checks
    as the object path: a file from another context or of another kind is refused either way."""
    be = he.SealBackend(low_depth_keys)
    objs = {"w0": be.encrypt_replicated(0.25), "w1": be.encrypt_replicated(-0.5)}
    blobs = {n: he.ciphertext_to_bytes(c) for n, c in objs.items()}
    obj_path, raw_path = tmp_path / "objects.zip", tmp_path / "bytes.zip"
    he.save_ciphertexts(obj_path, low_depth_keys, protocol.WEIGHTS_KIND, objs, {"iteration": 1})
    he.save_ciphertexts(raw_path, low_depth_keys, protocol.WEIGHTS_KIND, blobs, {"iteration": 1})
    with zipfile.ZipFile(obj_path) as a, zipfile.ZipFile(raw_path) as b:
        assert a.read("manifest.json") == b.read("manifest.json")
        assert all(b.read(f"ct/{n}") == blobs[n] for n in blobs)
    raw, meta = he.load_ciphertexts(raw_path, low_depth_keys, protocol.WEIGHTS_KIND, "w", raw=True)
    assert raw == blobs and list(raw) == ["w0", "w1"] and meta == {"iteration": 1}
    loaded, _ = he.load_ciphertexts(raw_path, low_depth_keys, protocol.WEIGHTS_KIND, "w")
    for name, value in (("w0", 0.25), ("w1", -0.5)):
        again = he.ciphertext_from_bytes(low_depth_keys.context, raw[name])
        np.testing.assert_array_equal(be.decrypt(again), be.decrypt(loaded[name]))
        np.testing.assert_allclose(be.decrypt(again), value, atol=1e-5)
    other = he.keygen(choose_params(3))  # same parameters, other keys
    foreign = tmp_path / "foreign.zip"
    he.save_ciphertexts(foreign, other, protocol.WEIGHTS_KIND,
                        {"w0": he.ciphertext_to_bytes(he.SealBackend(other).encrypt_replicated(1.0))})
    for raw_mode in (False, True):
        with pytest.raises(InputError, match="another context"):
            he.load_ciphertexts(foreign, low_depth_keys, protocol.WEIGHTS_KIND, "w", raw=raw_mode)
        with pytest.raises(InputError, match="holds 'weights' ciphertexts, expected 'training-data'"):
            he.load_ciphertexts(raw_path, low_depth_keys, protocol.DATA_KIND, "w", raw=raw_mode)
    # a member missing from the archive is refused in raw mode too
    holed = tmp_path / "holed.zip"
    with zipfile.ZipFile(raw_path) as src, zipfile.ZipFile(holed, "w") as dst:
        dst.writestr("manifest.json", src.read("manifest.json"))
        dst.writestr("ct/w0", src.read("ct/w0"))
    with pytest.raises(InputError, match="missing ciphertext w1"):
        he.load_ciphertexts(holed, low_depth_keys, protocol.WEIGHTS_KIND, "w", raw=True)
    # the SEAL checks raw mode defers: a truncated member or a ciphertext of the other key's context
    with pytest.raises(InputError, match="not valid for this CKKS context"):
        he.ciphertext_from_bytes(low_depth_keys.context, blobs["w0"][: len(blobs["w0"]) // 2])
    lazy = be.mul_lazy(objs["w0"], objs["w1"])  # 3 polynomials: never a stored ciphertext
    with pytest.raises(InputError, match="3 polynomials"):
        he.ciphertext_from_bytes(low_depth_keys.context, he.ciphertext_to_bytes(lazy))


def test_workers_refuse_invalid_serialized_state(low_depth_keys):
    """set_weight_bytes runs the file-load checks in the workers; a refused member is named and the
    workers keep their state."""
    from toolkit.encrypted.parallel import FeatureWorkers

    owner_be = he.SealBackend(low_depth_keys)
    ctx = low_depth_keys.context
    d = 3
    z = [[he.ciphertext_from_bytes(ctx, owner_be.encrypt_bytes(np.full(8, 0.1 * (j + 1))))] for j in range(d)]
    colsum = [he.ciphertext_from_bytes(ctx, owner_be.encrypt_bytes(0.8 * (j + 1))) for j in range(d)]
    w = [owner_be.encrypt_replicated(0.0) for _ in range(d)]
    pool = FeatureWorkers(owner_be, "low-depth", [C.Minibatch(z, 8, colsum=colsum)], w, COEFFS, 1.0, workers=2)
    try:
        assert pool.state_names() == ["w0", "w1", "w2"]
        blobs = pool.get_weight_bytes()
        assert len(blobs) == d and all(isinstance(b, bytes) for b in blobs)
        fresh = [owner_be.encrypt_bytes(0.5 * j) for j in range(d)]  # seeded, as the owner's response
        pool.set_weight_bytes(fresh)
        assert pool.level() == 0
        np.testing.assert_allclose([np.mean(owner_be.decrypt(c)) for c in pool.get_weights()], [0, 0.5, 1.0],
                                   atol=1e-5)
        bad = list(fresh)
        bad[2] = fresh[2][: len(fresh[2]) // 2]
        with pytest.raises(InputError, match="w2.*not valid for this CKKS context"):
            pool.set_weight_bytes(bad, "response.zip")
        with pytest.raises(ValueError, match="expected 3"):
            pool.set_weight_bytes(fresh[:2])
        np.testing.assert_allclose([np.mean(owner_be.decrypt(c)) for c in pool.get_weights()], [0, 0.5, 1.0],
                                   atol=1e-5)  # unchanged
    finally:
        pool.close()


# --- Nesterov momentum: the server keeps v as ciphertexts, refreshes carry it, depth unchanged ----------

def _nesterov_reference(z, batches, iterations, lr, momentum):
    w = np.zeros(z.shape[1])
    v = w.copy()
    for k in range(iterations):
        w, v = C.nesterov_step(w, v, z[batches[k % len(batches)]], COEFFS, lr, momentum.mu_at(k))
    return v


def test_low_depth_encrypted_with_momentum_matches_plaintext(tmp_path, low_depth_keys):
    z = _toy()
    batches = minibatch_indices(len(z), 100, 0)
    momentum = C.Momentum(0.8, "nesterov")  # mu_k = 0, 0.28, 0.43: the data-only copies are re-prepared
    w, reached, state = _run_files(tmp_path, low_depth_keys, "low-depth", z, batches, 3, 2.0, momentum=momentum)
    assert reached == 3 and state["refreshes"] == 2  # each refresh re-encrypts w and v
    assert [b - a for a, b in state["levels"]] == [3, 3, 3]
    with zipfile.ZipFile(tmp_path / "w.zip") as zf:
        names = {n for n in zf.namelist() if n.startswith("ct/")}
    assert names == {f"ct/w{j}" for j in range(5)} | {f"ct/v{j}" for j in range(5)}
    ref = _nesterov_reference(z, batches, 3, 2.0, momentum)
    assert np.abs(ref - _reference(z, batches, 3, 2.0)).max() > 0.01  # momentum matters here
    np.testing.assert_allclose(w, ref, atol=2e-3)


def test_baseline_encrypted_with_momentum_matches_plaintext(tmp_path):
    # TEST ONLY parameters as in test_baseline_encrypted_matches_plaintext
    keys = he.keygen(validate_params(8192, [40, 30, 30, 30, 30, 30, 40], 30, allow_insecure=True))
    z = _toy(n=120, d=3)
    batches = minibatch_indices(len(z), 60, 0)
    momentum = C.Momentum(0.5)
    w, reached, state = _run_files(tmp_path, keys, "baseline", z, batches, 2, 2.0, momentum=momentum)
    assert [b - a for a, b in state["levels"]] == [5, 5] and state["refreshes"] == 1
    np.testing.assert_allclose(w, _nesterov_reference(z, batches, 2, 2.0, momentum), atol=2e-3)


def test_momentum_refresh_as_separate_steps_continues(tmp_path, low_depth_keys):
    """Server stops when the chain is used up; the owner's file refresh re-encrypts w and v; training goes on."""
    z = _toy(n=160, d=3)
    batches = minibatch_indices(len(z), 80, 0)
    momentum = C.Momentum(0.6)
    owner, pub, data, wpath, jobp, job = _owner_files(tmp_path, low_depth_keys, "low-depth", z, batches, 2, 2.0,
                                                      momentum)
    job = protocol.read_job(jobp)
    levels = []
    for _ in range(3):
        out = tmp_path / "w_next.zip"
        state = protocol.server_train(pub, data, wpath, job, out)
        out.replace(wpath)
        levels += state["levels"]
        if not state["needs_refresh"]:
            break
        refreshed = protocol.owner_refresh(owner, wpath, tmp_path / "w_fresh.zip")
        assert len(refreshed["weights"]) == 2 * z.shape[1]  # w and v'
        (tmp_path / "w_fresh.zip").replace(wpath)
    assert state["iteration"] == 2 and [b - a for a, b in levels] == [3, 3]
    w, reached = protocol.owner_decrypt(owner, wpath, job)
    assert reached == 2
    np.testing.assert_allclose(w, _nesterov_reference(z, batches, 2, 2.0, momentum), atol=2e-3)
    # a weight file without the momentum state is refused for a momentum job
    plain_job = {**job, "momentum": None}
    protocol.owner_encrypt(owner, z, batches, plain_job, tmp_path / "d2.zip", tmp_path / "w_plain.zip",
                           tmp_path / "j2.json")
    with pytest.raises(InputError, match="momentum"):
        protocol.server_train(pub, data, tmp_path / "w_plain.zip", job, tmp_path / "never.zip")


def test_two_workers_with_momentum(tmp_path, low_depth_keys):
    z = _toy(n=300, d=5)
    batches = minibatch_indices(len(z), 150, 0)
    momentum = C.Momentum(0.9, "nesterov")
    w, reached, state = _run_files(tmp_path, low_depth_keys, "low-depth", z, batches, 2, 2.0, workers=2,
                                   momentum=momentum)
    assert reached == 2 and state["refreshes"] == 1 and [b - a for a, b in state["levels"]] == [3, 3]
    np.testing.assert_allclose(w, _nesterov_reference(z, batches, 2, 2.0, momentum), atol=2e-3)
